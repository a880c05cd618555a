// CPU kernels of the paged KV cache (native/cpu/paged_attention.cc), f32.
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';
import { f32 } from './arrays.js';

export const pagedAttentionKernels = {
  // kPool, vPool [numBlocks, blockSize, Hkv, D]; k, v [..., Hkv, D]; slots [N].
  pagedKvWrite: (kPool, vPool, k, v, slots) => {
    const [numBlocks, blockSize, Hkv, D] = kPool.shape;
    const slotIds = slots.as('i32');
    cpu.pagedKvWriteF32(
      f32(kPool),
      f32(vPool),
      f32(k),
      f32(v),
      slotIds,
      slots.size,
      Hkv,
      D,
      numBlocks * blockSize,
    );
  },
  // out, q [N, Hq, D]; blockTables [S, maxBlocks]; rowSeq, rowPos [N].
  pagedAttention: (out, q, kPool, vPool, blockTables, rowSeq, rowPos, scale, blockSize) => {
    const [N, Hq, D] = q.shape;
    const [numBlocks, , Hkv] = kPool.shape;
    const [S, maxBlocks] = blockTables.shape;
    const [tables, seqs, positions] = [blockTables, rowSeq, rowPos].map((t) => t.as('i32'));
    const sizes = [N, Hq, Hkv, D, numBlocks, blockSize, S, maxBlocks] as const;
    cpu.pagedAttentionF32(f32(out), f32(q), f32(kPool), f32(vPool), tables, seqs, positions, ...sizes, scale);
  },
} satisfies Kernels;
