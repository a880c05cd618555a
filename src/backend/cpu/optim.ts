// CPU optimizer updates and the squared norm for clipping (native/cpu/optim.cc), f32.
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';

export const optimKernels = {
  adamwStep: (slots, o) => {
    for (const { param, m, v, grad, copy } of slots) {
      cpu.adamwStepF32(
        param.as('f32'),
        m.as('f32'),
        v.as('f32'),
        grad.as('f32'),
        o.lr,
        o.beta1,
        o.beta2,
        o.eps,
        o.weightDecay,
        o.step,
        param.size,
      );
      if (copy) cpu.f32ToBf16(copy.as('bf16'), param.as('f32'), param.size);
    }
  },
  sgdStep: (param, buf, grad, lr, weightDecay, momentum) =>
    cpu.sgdStepF32(
      param.as('f32'),
      buf?.as('f32') ?? null,
      grad.as('f32'),
      lr,
      weightDecay,
      momentum,
      param.size,
    ),
  // Each tensor's sum comes back as a double; the total is summed in double too.
  sumSquares: (xs) => xs.reduce((acc, x) => acc + cpu.sumSquaresF32(x.as('f32'), x.size), 0),
} satisfies Kernels;
