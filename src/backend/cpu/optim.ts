// CPU optimizer updates and the squared norm for clipping (native/cpu/optim.cc), f32.
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';
import { f32, optF32 } from './arrays.js';

export const optimKernels = {
  adamwStep: (slots, o) => {
    for (const { param, m, v, grad, copy } of slots) {
      const hyper = [o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, o.step] as const;
      cpu.adamwStepF32(f32(param), f32(m), f32(v), f32(grad), ...hyper, param.size);
      if (copy) cpu.f32ToBf16(copy.as('bf16'), f32(param), param.size);
    }
  },
  sgdStep: (param, buf, grad, lr, weightDecay, momentum) =>
    cpu.sgdStepF32(f32(param), optF32(buf), f32(grad), lr, weightDecay, momentum, param.size),
  // Each tensor's sum comes back as a double; the total is summed in double too.
  sumSquares: (xs) => xs.reduce((acc, x) => acc + cpu.sumSquaresF32(f32(x), x.size), 0),
} satisfies Kernels;
