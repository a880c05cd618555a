// Paged KV cache for serving (inference only): keys and values in a pool of fixed-size blocks that
// sequences own through a block table, and attention of each query row over its sequence's blocks.
import { cuda, cudaSize, host, op, type OpGroup } from './dsl.js';

const pagedSizes = 'N:dim Hq:dim Hkv:dim D:dim blockSize:dim maxBlocks:dim';
const indices = 'blockTables:int32_t* rowSeq:int32_t* rowPos:int32_t*';

export const paged = {
  ops: {
    /**
     * kPool, vPool [numBlocks, blockSize, Hkv, D] (written in place) <- k, v [N, Hkv, D] at slots [N]
     * i32: row i goes to slot slots[i] of the pools seen as [numBlocks · blockSize, Hkv, D].
     */
    pagedKvWrite: op('kPool:float vPool:float = k:float v:float slots:i32'),
    /**
     * out [N, Hq, D] = softmax(q·kᵀ·scale)·v of q [N, Hq, D] over positions 0..rowPos[i] of sequence
     * rowSeq[i] (i32 [N]), position p at slot blockTables[rowSeq[i], p / blockSize] · blockSize +
     * p % blockSize (blockTables [S, maxBlocks] i32); query head h reads kv head h / (Hq / Hkv).
     */
    pagedAttention: op(
      'out:float = q:float kPool:float vPool:float blockTables:i32 rowSeq:i32 rowPos:i32 scale blockSize',
    ),
  },
  cpu: {
    pagedKvWriteF32: host('kPool:f32 vPool:f32 k:f32 v:f32 slots:i32 rows Hkv D numSlots'),
    pagedAttentionF32: host(
      'out:f32 q:f32 kPool:f32 vPool:f32 blockTables:i32 rowSeq:i32 rowPos:i32 N Hq Hkv D numBlocks blockSize S maxBlocks scale',
    ),
  },
  cuda: {
    /** kPool, vPool [numSlots, Hkv, D] and k, v [rows, Hkv, D] of dtype t; i32 slots [rows] (not checked). */
    pagedKvWrite: cuda(
      'lkc::paged_kv_write',
      'kPool:ptr vPool:ptr k:ptr v:ptr t:floatType slots:int32_t* rows:count Hkv:dim D:dim',
    ),
    /** Bytes of the flash-decoding partials pagedAttention needs for these sizes (0: it does not split). */
    pagedAttentionWorkspace: cudaSize('lkc::paged_attention_workspace', pagedSizes),
    /**
     * out, q [N, Hq, D] and kPool, vPool [numBlocks · blockSize, Hkv, D] of dtype t; i32 blockTables
     * [S, maxBlocks], rowSeq, rowPos [N] (not checked); workspace of pagedAttentionWorkspace bytes.
     */
    pagedAttention: cuda(
      'lkc::paged_attention',
      `out:ptr q:ptr kPool:ptr vPool:ptr t:floatType ${indices} ${pagedSizes} scale:f32 workspace?:ptr`,
      { of: ['N', 'Hq'], perBlock: 1, what: 'paged attention' },
    ),
  },
} as const satisfies OpGroup;
