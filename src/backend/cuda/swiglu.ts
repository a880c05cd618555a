// CUDA SwiGLU (native/cuda/swiglu.cu).
import type { Kernels } from '../kernels.js';
import type { CudaAddon } from './addon.js';
import { ptr } from './device.js';
import { floatType, opt } from './util.js';

export const swigluKernels = (cu: CudaAddon) =>
  ({
    swigluForward: (out, gate, up) => {
      const t = floatType('swiglu', { out, gate, up });
      cu.swigluForward(ptr(out), ptr(gate), ptr(up), t, out.size);
    },
    swigluBackward: (dgate, dup, dy, gate, up) => {
      const t = floatType('swiglu backward', { dgate, dup, dy, gate, up });
      cu.swigluBackward(opt(dgate), opt(dup), ptr(dy), ptr(gate), ptr(up), t, dy.size);
    },
  }) satisfies Kernels;
