import { seededUniform } from '../peft/lora.js';

export interface SamplingOptions {
  /** 0 = greedy. */
  temperature: number;
  /** Keep the k most likely tokens (0 = all). */
  topK: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = all). */
  topP: number;
  seed: number;
}

export const GREEDY: SamplingOptions = { temperature: 0, topK: 0, topP: 1, seed: 0 };

// Sorting the vocabulary is a 4-pass LSD radix sort over the float bits rather than a comparator sort:
// ~1 ms instead of ~15 ms for a 50K vocabulary, which matters when every batch row samples every step.
// Scratch shared by all samplers (sampling is synchronous, one row at a time).
let keys = new Uint32Array(0);
let keysTmp = new Uint32Array(0);
let order = new Uint32Array(0);
let orderTmp = new Uint32Array(0);
const counts = new Uint32Array(256);
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function grow(n: number): void {
  if (keys.length >= n) return;
  keys = new Uint32Array(n);
  keysTmp = new Uint32Array(n);
  order = new Uint32Array(n);
  orderTmp = new Uint32Array(n);
}

/**
 * Indices of `logits` sorted by value, largest first, ties in index order (what a stable comparator
 * sort `(a, b) => l[b] - l[a]` gives). Returns a view of shared scratch valid until the next call.
 */
export function sortDescending(logits: Float32Array): Uint32Array {
  const n = logits.length;
  grow(n);
  for (let i = 0; i < n; i++) {
    f32[0] = logits[i] === 0 ? 0 : logits[i]; // -0 and +0 compare equal
    const b = u32[0];
    // Order-preserving map of float bits to unsigned ints, then inverted so larger floats come first.
    const asc = b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
    keys[i] = ~asc >>> 0;
    order[i] = i;
  }
  let k = keys;
  let kt = keysTmp;
  let o = order;
  let ot = orderTmp;
  for (let shift = 0; shift < 32; shift += 8) {
    counts.fill(0);
    for (let i = 0; i < n; i++) counts[(k[i] >>> shift) & 255]++;
    let sum = 0;
    for (let d = 0; d < 256; d++) {
      const c = counts[d];
      counts[d] = sum;
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const dst = counts[(k[i] >>> shift) & 255]++;
      kt[dst] = k[i];
      ot[dst] = o[i];
    }
    [k, kt] = [kt, k];
    [o, ot] = [ot, o];
  }
  // Four passes: the sorted data is back in the original buffers.
  return o.subarray(0, n);
}

/**
 * The greedy pick: the first index of the largest value (NaN never picked, except that a row starting
 * with NaN gives 0). The argmaxRows kernels compute exactly this on a device.
 */
export function argmaxFirst(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** Picks the next token from one row of logits. */
export class Sampler {
  private readonly rand: () => number;

  /** Whether the pick is the argmax (temperature 0): a device can then make it (argmaxRows). */
  get greedy(): boolean {
    return this.opts.temperature <= 0;
  }

  constructor(readonly opts: SamplingOptions) {
    this.rand = seededUniform(opts.seed);
  }

  next(logits: Float32Array): number {
    if (this.greedy) return argmaxFirst(logits);
    const t = this.opts.temperature;
    const sorted = sortDescending(logits);
    let count = this.opts.topK > 0 ? Math.min(this.opts.topK, sorted.length) : sorted.length;
    const max = logits[sorted[0]];
    const probs = new Float64Array(count);
    let total = 0;
    for (let k = 0; k < count; k++) {
      probs[k] = Math.exp((logits[sorted[k]] - max) / t);
      total += probs[k];
    }
    if (this.opts.topP < 1) {
      let acc = 0;
      let keep = 0;
      while (keep < count && acc < this.opts.topP * total) acc += probs[keep++];
      count = Math.max(1, keep);
      total = 0;
      for (let k = 0; k < count; k++) total += probs[k];
    }
    let u = this.rand() * total;
    for (let k = 0; k < count; k++) {
      u -= probs[k];
      if (u <= 0) return sorted[k];
    }
    return sorted[count - 1];
  }
}
