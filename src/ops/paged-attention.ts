// Paged KV cache for serving: keys and values kept in a pool of fixed-size blocks instead of one
// contiguous cache per sequence, each sequence owning the blocks its row of a block table lists, so
// sequences grow block by block and a finished sequence's blocks serve the next. Inference only: these
// ops record nothing for backward.
import { kernel } from '../backend/kernels.js';
import { needsRecord } from '../autograd/tape.js';
import { shapeString, type Tensor } from '../tensor/tensor.js';
import { emptyLike, expectDType, expectFloat, sameDevice } from './util.js';

function inferenceOnly(op: string, inputs: readonly Tensor[]): void {
  if (needsRecord(inputs))
    throw new Error(
      `lorakit: ${op} is inference only and has no backward; call it under noGrad() or on tensors that do not require grad.`,
    );
}

/** Checks a pool pair [numBlocks, blockSize, Hkv, D]; returns its shape. */
function checkPools(op: string, kPool: Tensor, vPool: Tensor): readonly number[] {
  if (kPool.shape.length !== 4 || kPool.shape.some((d) => d < 1))
    throw new Error(
      `lorakit: ${op}: kPool must be [numBlocks, blockSize, Hkv, D] with every size at least 1, got ${shapeString(kPool.shape)}.`,
    );
  if (vPool.shape.length !== 4 || vPool.shape.some((d, i) => d !== kPool.shape[i]))
    throw new Error(
      `lorakit: ${op}: vPool has shape ${shapeString(vPool.shape)}, expected kPool's shape ${shapeString(kPool.shape)}.`,
    );
  return kPool.shape;
}

/**
 * Writes rows of keys and values into the pools, in place: kPool, vPool [numBlocks, blockSize, Hkv,
 * D], seen as [numBlocks · blockSize, Hkv, D] slots; k, v [..., Hkv, D] (N rows, any leading shape);
 * slots [N] i32: row i goes to slot slots[i] (block slot / blockSize, offset slot % blockSize).
 * Slots are checked on the host; the GPU kernel does not check slots held in device memory.
 */
export function pagedKvWrite(kPool: Tensor, vPool: Tensor, k: Tensor, v: Tensor, slots: Tensor): void {
  const op = 'pagedKvWrite';
  sameDevice(op, kPool, vPool, k, v, slots);
  expectFloat(op, 'kPool', kPool);
  expectDType(op, 'vPool', vPool, kPool.dtype);
  expectDType(op, 'k', k, kPool.dtype);
  expectDType(op, 'v', v, kPool.dtype);
  expectDType(op, 'slots', slots, 'i32');
  inferenceOnly(op, [kPool, vPool, k, v]);
  const [numBlocks, blockSize, Hkv, D] = checkPools(op, kPool, vPool);
  const kd = k.shape;
  if (kd.length < 2 || kd[kd.length - 2] !== Hkv || kd[kd.length - 1] !== D)
    throw new Error(
      `lorakit: ${op}: k has shape ${shapeString(kd)}, expected [..., ${Hkv}, ${D}] (the pools' kv heads and head size).`,
    );
  if (v.shape.length !== kd.length || v.shape.some((d, i) => d !== kd[i]))
    throw new Error(
      `lorakit: ${op}: v has shape ${shapeString(v.shape)}, expected k's shape ${shapeString(kd)}.`,
    );
  const N = k.size / (Hkv * D);
  if (slots.shape.length !== 1 || slots.shape[0] !== N)
    throw new Error(
      `lorakit: ${op}: slots has shape ${shapeString(slots.shape)}, expected [${N}] (one per row of k).`,
    );
  const numSlots = numBlocks * blockSize;
  if (slots.onHost) {
    const s = slots.as('i32');
    for (let i = 0; i < s.length; i++)
      if (s[i] < 0 || s[i] >= numSlots)
        throw new Error(
          `lorakit: ${op}: slot ${s[i]} of row ${i} is outside the pools, which hold slots 0 to ${numSlots - 1}.`,
        );
  }
  if (N > 0) kernel(kPool.device, 'pagedKvWrite')(kPool, vPool, k, v, slots);
}

/** Checks the rows' sequences, positions and the block ids they reach (host tensors only). */
function checkIndices(
  blockTables: Tensor,
  rowSeq: Tensor,
  rowPos: Tensor,
  numBlocks: number,
  blockSize: number,
): void {
  const op = 'pagedAttention';
  if (!blockTables.onHost || !rowSeq.onHost || !rowPos.onHost) return; // device indices are not read back
  const [S, maxBlocks] = blockTables.shape;
  const tables = blockTables.as('i32');
  const seqs = rowSeq.as('i32');
  const positions = rowPos.as('i32');
  for (let i = 0; i < seqs.length; i++) {
    const s = seqs[i];
    const p = positions[i];
    if (s < 0 || s >= S)
      throw new Error(
        `lorakit: ${op}: rowSeq[${i}] is ${s}, outside the block table's sequences 0 to ${S - 1}.`,
      );
    if (p === -1) continue; // a row answered elsewhere: zeros
    if (p < 0 || p >= maxBlocks * blockSize)
      throw new Error(
        `lorakit: ${op}: rowPos[${i}] is ${p}, past the block table, which covers positions 0 to ${maxBlocks * blockSize - 1}.`,
      );
    for (let b = 0; b <= Math.floor(p / blockSize); b++) {
      const id = tables[s * maxBlocks + b];
      if (id < 0 || id >= numBlocks)
        throw new Error(
          `lorakit: ${op}: blockTables[${s}, ${b}] is block ${id}, outside the pools' blocks 0 to ${numBlocks - 1}.`,
        );
    }
  }
}

/**
 * Attention of query rows over a paged KV cache, softmax(q·kᵀ·scale)·v with fp32 accumulation.
 *
 * q [N, Hq, D]; kPool, vPool [numBlocks, blockSize, Hkv, D] (Hq a multiple of Hkv: query head h reads
 * kv head h / (Hq / Hkv)); blockTables [S, maxBlocks] i32, one row of block ids per sequence; rowSeq
 * [N] i32, the sequence (block-table row) of each query row; rowPos [N] i32: row i attends over
 * positions 0..rowPos[i] of its sequence, position p at slot blockTables[rowSeq[i], p / blockSize] ·
 * blockSize + p % blockSize; rowPos[i] = −1: row i attends to nothing and is zeros (a row another
 * kernel answers). Causal by construction: a step writes its rows' keys and values with
 * pagedKvWrite first, so each row sees its own position and the same step's earlier ones. Indices
 * held on the host are checked; the GPU kernel does not check indices in device memory. Returns
 * [N, Hq, D]. Inference only: throws while gradients would be recorded.
 */
export function pagedAttention(
  q: Tensor,
  kPool: Tensor,
  vPool: Tensor,
  blockTables: Tensor,
  rowSeq: Tensor,
  rowPos: Tensor,
  scale: number,
): Tensor {
  const op = 'pagedAttention';
  sameDevice(op, q, kPool, vPool, blockTables, rowSeq, rowPos);
  expectFloat(op, 'q', q);
  expectDType(op, 'kPool', kPool, q.dtype);
  expectDType(op, 'vPool', vPool, q.dtype);
  expectDType(op, 'blockTables', blockTables, 'i32');
  expectDType(op, 'rowSeq', rowSeq, 'i32');
  expectDType(op, 'rowPos', rowPos, 'i32');
  inferenceOnly(op, [q, kPool, vPool]);
  const [numBlocks, blockSize, Hkv, D] = checkPools(op, kPool, vPool);
  if (q.shape.length !== 3 || q.shape[2] !== D)
    throw new Error(
      `lorakit: ${op}: q must be [N, Hq, ${D}] (the pools' head size), got ${shapeString(q.shape)}.`,
    );
  const [N, Hq] = q.shape;
  if (Hq === 0 || Hq % Hkv !== 0)
    throw new Error(
      `lorakit: ${op}: query heads (${Hq}) must be a positive multiple of the pools' kv heads (${Hkv}).`,
    );
  if (blockTables.shape.length !== 2 || blockTables.shape[0] < 1 || blockTables.shape[1] < 1)
    throw new Error(
      `lorakit: ${op}: blockTables must be [sequences, maxBlocks] with both at least 1, got ${shapeString(blockTables.shape)}.`,
    );
  for (const [name, t] of [
    ['rowSeq', rowSeq],
    ['rowPos', rowPos],
  ] as const)
    if (t.shape.length !== 1 || t.shape[0] !== N)
      throw new Error(
        `lorakit: ${op}: ${name} has shape ${shapeString(t.shape)}, expected [${N}] (one per row of q).`,
      );
  if (!Number.isFinite(scale))
    throw new Error(`lorakit: ${op}: scale must be a finite number, got ${scale}.`);
  checkIndices(blockTables, rowSeq, rowPos, numBlocks, blockSize);
  const out = emptyLike(q);
  if (N > 0)
    kernel(q.device, 'pagedAttention')(out, q, kPool, vPool, blockTables, rowSeq, rowPos, scale, blockSize);
  return out;
}
