// A block ("paged") KV cache for serving many sequences at once: every layer's keys and values live in
// one pool of fixed-size blocks [numBlocks, blockSize, Hkv, Dh], and each sequence holds a list of
// blocks that grows as it does, so memory is taken a block at a time instead of reserved per request
// at its largest length (vLLM's PagedAttention). The number of sequences that fit is the number of
// free blocks, whatever their lengths.
//
// PagedBatch is one forward step over rows of several sequences (a prompt chunk, or the newest token
// of a decoding sequence) laid out as one [1, N] batch: each layer writes its new keys and values into
// the rows' slots, then each row attends over its own sequence up to its own position.
import { activationDType } from '../backend/device.js';
import { attention } from '../ops/attention.js';
import { add } from '../ops/elementwise.js';
import { pagedAttention, pagedKvWrite } from '../ops/paged-attention.js';
import { DTYPE_BYTES, type DType } from '../tensor/dtype.js';
import { keep, Tensor, type Device } from '../tensor/tensor.js';
import type { ModelConfig } from './config.js';
import type { KVStore } from './kv-cache.js';

/** One sequence's place in the pool: its blocks in position order, and the positions cached so far. */
export class PagedSequence {
  readonly blocks: number[] = [];
  length = 0;
}

export class PagedKVCache {
  /** Per layer [numBlocks, blockSize, Hkv, Dh], the activation dtype. */
  readonly keys: Tensor[];
  readonly values: Tensor[];
  private readonly free: number[];

  constructor(
    readonly config: ModelConfig,
    readonly numBlocks: number,
    readonly blockSize: number,
    readonly device: Device = 'cpu',
    readonly dtype: DType = activationDType(device),
  ) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1)
      throw new Error(`lorakit: a paged KV cache needs at least one block, got ${numBlocks}.`);
    if (!Number.isInteger(blockSize) || blockSize < 1)
      throw new Error(`lorakit: the KV cache block size must be a positive integer, got ${blockSize}.`);
    const shape = [numBlocks, blockSize, config.numKvHeads, config.headDim];
    this.keys = Array.from({ length: config.numLayers }, () => keep(Tensor.empty(shape, dtype, device)));
    this.values = Array.from({ length: config.numLayers }, () => keep(Tensor.empty(shape, dtype, device)));
    // Popped from the end: block 0 goes first.
    this.free = Array.from({ length: numBlocks }, (_, i) => numBlocks - 1 - i);
  }

  /** Bytes of one block over every layer, keys and values. */
  static bytesPerBlock(config: ModelConfig, blockSize: number, dtype: DType): number {
    return 2 * config.numLayers * blockSize * config.numKvHeads * config.headDim * DTYPE_BYTES[dtype];
  }

  get freeBlocks(): number {
    return this.free.length;
  }

  /** Blocks that `positions` positions take. */
  blocksFor(positions: number): number {
    return Math.ceil(positions / this.blockSize);
  }

  /** Grows `seq` to hold `positions` positions; false, taking nothing, when the pool is short. */
  reserve(seq: PagedSequence, positions: number): boolean {
    const need = this.blocksFor(positions) - seq.blocks.length;
    if (need <= 0) return true;
    if (need > this.free.length) return false;
    for (let i = 0; i < need; i++) seq.blocks.push(this.free.pop()!);
    return true;
  }

  /** Returns the sequence's blocks to the pool; it is empty afterwards. */
  release(seq: PagedSequence): void {
    this.free.push(...seq.blocks.splice(0));
    seq.length = 0;
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
  }
}

/** A sequence's part of one step: `tokens` new positions from seq.length on. */
export interface PagedSpan {
  seq: PagedSequence;
  tokens: number;
}

/**
 * One step's rows over the pool, in span order (span j's rows are contiguous). Every span's sequence
 * must already hold blocks for its new positions (PagedKVCache.reserve). Dispose after the forward.
 */
export class PagedBatch implements KVStore {
  /** Per row: its slot in the pool, its sequence's row of the block table, its position. [N] i32 each. */
  private readonly slots: Tensor;
  private readonly rowSeq: Tensor;
  private readonly rowPos: Tensor;
  /** [S, maxBlocks] i32: span j's blocks (unused entries 0). */
  private readonly blockTables: Tensor;
  /**
   * Prompts that start in this step (a whole prompt or its first chunk, on a GPU) go through the
   * flash-style attention kernel as packed sequences instead of one paged row each: segments [1, N]
   * (span j's rows j + 1, other rows 0, which it answers with zeros), and the rows' positions for the
   * paged kernel with those rows at −1 (zeros there); `paged` false when every row is such a prompt.
   * Off by default on the CPU, whose serving numbers (bench/serve.ts) were measured with every row
   * paged; the engine tests run both ways there.
   */
  private readonly prefill: { segments: Tensor; rowPos: Tensor; paged: boolean } | null = null;

  constructor(
    readonly cache: PagedKVCache,
    readonly spans: readonly PagedSpan[],
    flashPrefill = cache.device !== 'cpu',
  ) {
    const bs = cache.blockSize;
    const N = spans.reduce((a, s) => a + s.tokens, 0);
    const maxBlocks = Math.max(1, ...spans.map((s) => s.seq.blocks.length));
    const slots = new Int32Array(N);
    const rowSeq = new Int32Array(N);
    const rowPos = new Int32Array(N);
    const tables = new Int32Array(spans.length * maxBlocks);
    let r = 0;
    spans.forEach(({ seq, tokens }, j) => {
      if (cache.blocksFor(seq.length + tokens) > seq.blocks.length)
        throw new Error(
          `lorakit: a sequence of ${seq.blocks.length} KV blocks cannot take ${tokens} more positions after ${seq.length}.`,
        );
      tables.set(seq.blocks, j * maxBlocks);
      for (let i = 0; i < tokens; i++, r++) {
        const p = seq.length + i;
        slots[r] = seq.blocks[Math.floor(p / bs)] * bs + (p % bs);
        rowSeq[r] = j;
        rowPos[r] = p;
      }
    });
    const device = cache.device;
    const up = (a: Int32Array, shape: number[]): Tensor => {
      const host = keep(Tensor.from(a, shape, 'i32'));
      if (device === 'cpu') return host;
      const moved = keep(host.toDevice(device));
      host.dispose();
      return moved;
    };
    this.slots = up(slots, [N]);
    this.rowSeq = up(rowSeq, [N]);
    this.rowPos = up(rowPos, [N]);
    this.blockTables = up(tables, [spans.length, maxBlocks]);
    const starts = spans.map((s) => s.seq.length === 0 && s.tokens > 1);
    if (flashPrefill && starts.some(Boolean)) {
      const segments = new Int32Array(N);
      const pagedPos = rowPos.slice();
      let row = 0;
      spans.forEach(({ tokens }, j) => {
        if (starts[j]) (segments.fill(j + 1, row, row + tokens), pagedPos.fill(-1, row, row + tokens));
        row += tokens;
      });
      this.prefill = {
        segments: up(segments, [1, N]),
        rowPos: up(pagedPos, [N]),
        paged: !starts.every(Boolean),
      };
    }
  }

  // q [N, 1, Hq, Dh], k, v [N, 1, Hkv, Dh] (one row per batch entry) -> [N, 1, Hq, Dh]
  attend(layer: number, q: Tensor, k: Tensor, v: Tensor): Tensor {
    const [B, T, Hq, Dh] = q.shape;
    pagedKvWrite(this.cache.keys[layer], this.cache.values[layer], k, v, this.slots);
    const paged = (rowPos: Tensor): Tensor => {
      const q3 = q.reshape([B * T, Hq, Dh]);
      const out = pagedAttention(
        q3,
        this.cache.keys[layer],
        this.cache.values[layer],
        this.blockTables,
        this.rowSeq,
        rowPos,
        1 / Math.sqrt(Dh),
      );
      q3.dispose();
      return out.reshape([B, T, Hq, Dh]);
    };
    if (!this.prefill) return paged(this.rowPos);
    // The starting prompts' rows from the flash kernel, every other row from the paged one; each
    // leaves zeros in the other's rows, so the sum is exact.
    const packed = (t: Tensor): Tensor => t.reshape([1, B * T, t.shape[2], Dh]);
    const flash = attention(packed(q), packed(k), packed(v), this.prefill.segments).reshape(q.shape);
    return this.prefill.paged ? add(flash, paged(this.prefill.rowPos)) : flash;
  }

  commit(): void {
    for (const s of this.spans) s.seq.length += s.tokens;
  }

  dispose(): void {
    for (const t of [this.slots, this.rowSeq, this.rowPos, this.blockTables]) t.dispose();
    this.prefill?.segments.dispose();
    this.prefill?.rowPos.dispose();
  }
}
