import { keep, Tensor, type Device } from '../tensor/tensor.js';
import { activationDType } from '../backend/device.js';
import { attention } from '../ops/attention.js';
import type { DType } from '../tensor/dtype.js';

/**
 * Where a forward with past tokens keeps keys and values: the decoder layer hands each layer's new
 * q, k, v to attend(), which stores k and v and returns attention of q over the past and the new
 * positions; the model calls commit() once after the last layer. KVCache (one contiguous cache per
 * batch, generate) and PagedBatch (rows of many sequences over a block pool, serving) implement it.
 */
export interface KVStore {
  /** q [B, T, Hq, Dh], k, v [B, T, Hkv, Dh] (already normed and rotated), segments [B, T] -> [B, T, Hq, Dh]. */
  attend(layer: number, q: Tensor, k: Tensor, v: Tensor, segments: Tensor): Tensor;
  commit(tokens: number): void;
}

/**
 * Keys and values of past tokens, per layer, for generation: [B, capacity, Hkv, Dh] each, plus the
 * segment ids of the cached positions [B, capacity]. A forward with the cache appends its new
 * positions in every layer, then commit() advances the length once.
 */
export class KVCache implements KVStore {
  private readonly keys: Tensor[];
  private readonly values: Tensor[];
  private readonly segments: Tensor;
  length = 0;

  constructor(
    readonly batch: number,
    readonly capacity: number,
    readonly numLayers: number,
    readonly numKvHeads: number,
    readonly headDim: number,
    readonly device: Device = 'cpu',
    /** The model's activation dtype (CausalLM.activationDType). */
    dtype: DType = activationDType(device),
  ) {
    const shape = [batch, capacity, numKvHeads, headDim];
    this.keys = Array.from({ length: numLayers }, () => keep(Tensor.empty(shape, dtype, device)));
    this.values = Array.from({ length: numLayers }, () => keep(Tensor.empty(shape, dtype, device)));
    this.segments = keep(Tensor.zeros([batch, capacity], 'i32', device));
  }

  /** Writes k, v [B, Tn, Hkv, Dh] at the current length; returns all cached k, v, segments so far. */
  append(layer: number, k: Tensor, v: Tensor, segments: Tensor): { k: Tensor; v: Tensor; segments: Tensor } {
    const [B, Tn] = k.shape;
    const L = this.length + Tn;
    if (L > this.capacity)
      throw new Error(`lorakit: the KV cache holds ${this.capacity} positions; ${L} were needed.`);
    const row = this.numKvHeads * this.headDim;
    const write = (dst: Tensor, src: Tensor, row: number) => {
      for (let b = 0; b < B; b++)
        Tensor.copyElements(dst, (b * this.capacity + this.length) * row, src, b * Tn * row, Tn * row);
    };
    write(this.keys[layer], k, row);
    write(this.values[layer], v, row);
    if (layer === 0) write(this.segments, segments, 1);
    return {
      k: this.prefix(this.keys[layer], L, row),
      v: this.prefix(this.values[layer], L, row),
      segments: this.prefix(this.segments, L, 1),
    };
  }

  attend(layer: number, q: Tensor, k: Tensor, v: Tensor, segments: Tensor): Tensor {
    const past = this.append(layer, k, v, segments);
    return attention(q, past.k, past.v, past.segments);
  }

  // The first L positions of every row as a contiguous [B, L, ...] tensor (a view when B = 1).
  private prefix(t: Tensor, L: number, row: number): Tensor {
    const shape = [this.batch, L, ...t.shape.slice(2)];
    if (this.batch === 1) {
      const flat = t.reshape([this.capacity, ...t.shape.slice(2)]);
      const head = flat.sliceRows(0, L);
      const view = head.reshape(shape);
      flat.dispose();
      head.dispose();
      return view;
    }
    const out = Tensor.empty(shape, t.dtype, t.device);
    for (let b = 0; b < this.batch; b++)
      Tensor.copyElements(out, b * L * row, t, b * this.capacity * row, L * row);
    return out;
  }

  /**
   * The fp32 storage of one layer's keys and values, [capacity, Hkv, Dh] each, of a one-sequence CPU
   * cache: DecodeStep writes its new position there itself, then calls appended().
   */
  hostLayer(layer: number): { k: Float32Array; v: Float32Array } {
    if (this.batch !== 1) throw new Error('lorakit: KVCache.hostLayer needs a one-sequence cache.');
    return { k: this.keys[layer].as('f32'), v: this.values[layer].as('f32') };
  }

  /**
   * Commits `tokens` positions written through hostLayer: they join the sequence already cached (its
   * segment id, 1 for an empty cache, as generate() gives).
   */
  appended(tokens: number): void {
    const seg = this.segments.as('i32');
    seg.fill(this.length > 0 ? seg[0] : 1, this.length, this.length + tokens);
    this.commit(tokens);
  }

  commit(tokens: number): void {
    this.length += tokens;
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values, this.segments]) t.dispose();
  }
}
