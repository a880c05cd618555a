// CUDA greedy pick (native/cuda/argmax.cu).
import type { Kernels } from '../kernels.js';
import type { CudaAddon } from './addon.js';
import { ptr } from './device.js';
import { floatType } from './util.js';

export const argmaxKernels = (cu: CudaAddon) =>
  ({
    argmaxRows: (out, x) => {
      const t = floatType('argmaxRows', { x });
      const V = x.shape.at(-1)!;
      cu.argmaxRows(ptr(out), ptr(x), t, x.size / V, V);
    },
  }) satisfies Kernels;
