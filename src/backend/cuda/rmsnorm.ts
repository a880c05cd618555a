// CUDA RMSNorm (native/cuda/rmsnorm.cu).
import type { Kernels } from '../kernels.js';
import type { CudaAddon } from './addon.js';
import { ptr } from './device.js';
import { expect, floatType, opt } from './util.js';

export const rmsnormKernels = (cu: CudaAddon) =>
  ({
    rmsnormForward: (y, rstd, x, weight, eps) => {
      const t = floatType('rmsnorm', { y, x, weight });
      cu.rmsnormForward(ptr(y), ptr(rstd), ptr(x), ptr(weight), t, rstd.size, weight.size, eps);
    },
    rmsnormBackward: (dx, dweight, dy, x, weight, rstd) => {
      if (dweight) expect(dweight, 'f32', 'rmsnorm backward', 'dweight');
      const t = floatType('rmsnorm backward', { dx, dy, x, weight });
      cu.rmsnormBackward(
        opt(dx),
        opt(dweight),
        ptr(dy),
        ptr(x),
        ptr(weight),
        t,
        ptr(rstd),
        rstd.size,
        weight.size,
      );
    },
  }) satisfies Kernels;
