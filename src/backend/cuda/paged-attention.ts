// CUDA kernels of the paged KV cache (native/cuda/paged_attention.cu): one block per (row, kv head)
// serving its group of query heads, positions split over several blocks (flash-decoding) when rows
// are few and contexts long. Indices are not checked on the device (src/ops/paged-attention.ts checks
// those on the host).
import { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import type { CudaAddon } from './addon.js';
import { ptr } from './device.js';
import { floatType, NULL } from './util.js';

export const pagedAttentionKernels = (cu: CudaAddon) =>
  ({
    pagedKvWrite: (kPool, vPool, k, v, slots) => {
      const t = floatType('pagedKvWrite', { kPool, vPool, k, v });
      const [, , Hkv, D] = kPool.shape;
      cu.pagedKvWrite(ptr(kPool), ptr(vPool), ptr(k), ptr(v), t, ptr(slots), slots.size, Hkv, D);
    },
    pagedAttention: (out, q, kPool, vPool, blockTables, rowSeq, rowPos, scale, blockSize) => {
      const t = floatType('pagedAttention', { out, q, kPool, vPool });
      const [N, Hq, D] = q.shape;
      const Hkv = kPool.shape[2];
      const sizes = [N, Hq, Hkv, D, blockSize, blockTables.shape[1]] as const;
      const bytes = cu.pagedAttentionWorkspace(...sizes);
      const ws = bytes > 0 ? Tensor.empty([bytes], 'u8', 'cuda') : null;
      const [o, qp, kp, vp, tp, sp, pp] = [out, q, kPool, vPool, blockTables, rowSeq, rowPos].map(ptr);
      cu.pagedAttention(o, qp, kp, vp, t, tp, sp, pp, ...sizes, scale, ws ? ptr(ws) : NULL);
      ws?.dispose();
    },
  }) satisfies Kernels;
