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

/** Picks the next token from one row of logits. */
export class Sampler {
  private readonly rand: () => number;

  constructor(readonly opts: SamplingOptions) {
    this.rand = seededUniform(opts.seed);
  }

  next(logits: Float32Array): number {
    if (this.opts.temperature <= 0) {
      let best = 0;
      for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
      return best;
    }
    const t = this.opts.temperature;
    let idx = Array.from(logits.keys());
    idx.sort((a, b) => logits[b] - logits[a]);
    if (this.opts.topK > 0) idx = idx.slice(0, this.opts.topK);
    const max = logits[idx[0]];
    let probs = idx.map((i) => Math.exp((logits[i] - max) / t));
    let total = probs.reduce((a, b) => a + b, 0);
    if (this.opts.topP < 1) {
      let acc = 0;
      let keep = 0;
      while (keep < probs.length && acc < this.opts.topP * total) acc += probs[keep++];
      idx = idx.slice(0, Math.max(1, keep));
      probs = probs.slice(0, Math.max(1, keep));
      total = probs.reduce((a, b) => a + b, 0);
    }
    let u = this.rand() * total;
    for (let k = 0; k < idx.length; k++) {
      u -= probs[k];
      if (u <= 0) return idx[k];
    }
    return idx[idx.length - 1];
  }
}
