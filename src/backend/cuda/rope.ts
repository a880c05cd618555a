// CUDA rotary embeddings (native/cuda/rope.cu).
import type { Kernels } from '../kernels.js';
import type { CudaAddon } from './addon.js';
import { ptr } from './device.js';
import { floatType } from './util.js';

export const ropeKernels = (cu: CudaAddon) =>
  ({
    ropeForward: (out, x, cos, sin, positions) => {
      const [B, T, H, D] = x.shape;
      const t = floatType('rope', { out, x });
      cu.ropeForward(ptr(out), ptr(x), t, ptr(cos), ptr(sin), ptr(positions), B * T, H, D, cos.shape[1]);
    },
    ropeBackward: (dx, dy, cos, sin, positions) => {
      const [B, T, H, D] = dy.shape;
      const t = floatType('rope backward', { dx, dy });
      cu.ropeBackward(ptr(dx), ptr(dy), t, ptr(cos), ptr(sin), ptr(positions), B * T, H, D, cos.shape[1]);
    },
  }) satisfies Kernels;
