// CUDA embedding lookup and its gradient (native/cuda/embedding.cu).
import type { Kernels } from '../kernels.js';
import { CUDA_DTYPE, type CudaAddon } from './addon.js';
import { dt, ptr } from './device.js';
import { expect, floatType } from './util.js';

export const embeddingKernels = (cu: CudaAddon) =>
  ({
    // A bf16 table gives bf16 rows; an f32 one f32 rows (exact) or bf16 rows (rounded); the addon says
    // when a pair is not one of these.
    embeddingForward: (out, table, ids) => {
      const [V, D] = table.shape;
      cu.embeddingForward(ptr(out), dt(out), ptr(ids), ptr(table), dt(table), ids.size, D, V);
    },
    embeddingBackward: (dtable, dy, ids) => {
      const [V, D] = dtable.shape;
      expect(dtable, 'f32', 'embedding backward', 'dtable');
      const t = floatType('embedding backward', { dy });
      cu.fill(ptr(dtable), CUDA_DTYPE.f32, 0, dtable.size);
      cu.embeddingBackward(ptr(dtable), ptr(dy), t, ptr(ids), ids.size, D, V);
    },
  }) satisfies Kernels;
