// CUDA dropout (native/cuda/dropout.cu): the CPU backend's mask bit for bit.
import type { Kernels } from '../kernels.js';
import type { CudaAddon } from './addon.js';
import { dt, ptr } from './device.js';

export const dropoutKernels = (cu: CudaAddon) =>
  ({
    dropout: (out, x, p, seed) => cu.dropout(ptr(out), ptr(x), dt(x), p, seed, x.size),
  }) satisfies Kernels;
