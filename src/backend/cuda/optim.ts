// CUDA optimizer updates and the squared norm for clipping (native/cuda/adamw.cu, sgd.cu).
import { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import type { CudaAddon } from './addon.js';
import { dt, ptr } from './device.js';
import { NULL, opt } from './util.js';

export const optimKernels = (cu: CudaAddon) =>
  ({
    // All of a model's tensors in one call (the addon launches once per 64); each slot's bf16 compute
    // copy is rewritten in the same pass, so the next forward needs no cast.
    adamwStep: (slots, o) => {
      const table = new Float64Array(slots.length * 6);
      slots.forEach(({ param, m, v, grad, copy }, i) =>
        table.set([ptr(param), ptr(m), ptr(v), opt(copy), ptr(grad), param.size], i * 6),
      );
      cu.adamwStep(table, NULL, o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, o.step);
    },
    sgdStep: (param, buf, grad, lr, weightDecay, momentum) =>
      cu.sgdStep(ptr(param), opt(buf), ptr(grad), param.size, lr, weightDecay, momentum),
    // Every tensor's Σ x² accumulates on the device into one f32, read back once.
    sumSquares: (xs) => {
      const acc = Tensor.zeros([1], 'f32', 'cuda');
      for (const x of xs) cu.sumSquares(ptr(acc), ptr(x), dt(x), x.size);
      const total = acc.item();
      acc.dispose();
      return total;
    },
  }) satisfies Kernels;
