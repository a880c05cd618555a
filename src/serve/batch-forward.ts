// One forward pass over many sequences at once, each at its own length and with its own adapter
// ("ragged" continuous batching), through the model's own forward (CausalLM.hidden, the code training
// and generate run): the tokens of every sequence in the step — a whole prompt or a chunk of one, or
// the single newest token of a sequence that is decoding — are the rows of one [N, 1] batch. Every
// linear layer runs one base GEMM over all N rows and adds the LoRA terms of every adapter in the
// batch in one op (Linear's per-row adapters, loraSegments); attention reads each row's own sequence
// from the paged KV cache (PagedBatch).
//
// Per token this computes what the model computes for that sequence alone, up to the order of fp32
// sums where the GEMM takes another route for another number of rows.
import { noGrad } from '../autograd/tape.js';
import { DecodeStep } from '../models/decode-step.js';
import type { CausalLM } from '../models/llama.js';
import { PagedBatch, type PagedKVCache, type PagedSequence } from '../models/paged-kv-cache.js';
import { argmaxFirst } from '../infer/sampling.js';
import { argmaxRows } from '../ops/argmax.js';
import { Tensor, tidy } from '../tensor/tensor.js';

/** One sequence's part of a step. */
export interface Span {
  /** This sequence's blocks; the tokens go at positions seq.length, seq.length + 1, … (reserved). */
  seq: PagedSequence;
  tokens: readonly number[];
  adapter: string | null;
  /** Whether the step should return the next token's logits (or pick) after this span's last token. */
  wantLogits: boolean;
  /** The pick is the argmax (greedy sampling): the step returns the token id, made on the device. */
  greedy?: boolean;
}

/** Per span that wanted logits: the logits row [V], or the greedy pick for a greedy span. */
export type StepOutput = Float32Array | number;

export class BatchForward {
  // The one-token native fast path per adapter (CPU; made on first use; null where it does not apply).
  private readonly steps = new Map<string | null, DecodeStep | null>();

  constructor(
    readonly model: CausalLM,
    readonly cache: PagedKVCache,
    /** Starting prompts through flash attention (PagedBatch; default: off on the CPU only). */
    readonly flashPrefill?: boolean,
  ) {}

  private decodeStep(adapter: string | null): DecodeStep | null {
    // Adapters load and unload while serving: a cached step for a name is only reused while its
    // model state is the same, so it is remade for adapters (cheap) and kept for the base model.
    if (adapter !== null) return DecodeStep.for(this.model, adapter);
    if (!this.steps.has(null)) this.steps.set(null, DecodeStep.for(this.model, null));
    return this.steps.get(null)!;
  }

  /**
   * Runs the spans through the model, writes their keys and values into their sequences' blocks
   * (advancing seq.length), and returns for each span with wantLogits (span order) its logits row
   * [V], or its token id when the span is greedy. When every such span is greedy the picks are made
   * on the device (argmaxRows) and only the ids come back, not P rows of the vocabulary.
   */
  run(spans: readonly Span[]): StepOutput[] {
    const m = this.model;
    const N = spans.reduce((a, s) => a + s.tokens.length, 0);
    if (N === 0) return [];
    // One sequence decoding alone (a single client): its token goes through the native fast path.
    if (N === 1) {
      const s = spans[0];
      const step = this.decodeStep(s.adapter);
      if (step) {
        const logits = step.pagedLogits(s.tokens[0], s.seq, this.cache);
        if (!s.wantLogits) return [];
        return [s.greedy ? argmaxFirst(logits) : logits.slice()];
      }
    }
    const ids = new Int32Array(N);
    const pos = new Int32Array(N);
    const rowAdapters = new Array<string | null>(N);
    let o = 0;
    for (const s of spans) {
      if (s.tokens.length === 0) throw new Error('lorakit: a batch span has no tokens.');
      for (let i = 0; i < s.tokens.length; i++, o++) {
        ids[o] = s.tokens[i];
        pos[o] = s.seq.length + i;
        rowAdapters[o] = s.adapter;
      }
    }
    // Next-token logits only where asked: the last row of those spans.
    const picked: number[] = [];
    let allGreedy = true;
    o = 0;
    for (const s of spans) {
      o += s.tokens.length;
      if (!s.wantLogits) continue;
      picked.push(o - 1);
      allGreedy &&= s.greedy === true;
    }
    const paged = new PagedBatch(
      this.cache,
      spans.map((s) => ({ seq: s.seq, tokens: s.tokens.length })),
      this.flashPrefill,
    );
    try {
      return noGrad(() =>
        tidy(() => {
          const batch = {
            ids: Tensor.from(ids, [N, 1], 'i32'),
            positions: Tensor.from(pos, [N, 1], 'i32'),
            segments: Tensor.from(new Int32Array(N).fill(1), [N, 1], 'i32'),
          };
          const mixed = rowAdapters.some((a) => a !== null);
          const ctx = { adapter: null, rowAdapters: mixed ? rowAdapters : undefined };
          const h = m.hidden(batch, { ctx, cache: paged }); // [N, 1, D]
          if (picked.length === 0) return [];
          const D = m.config.hiddenSize;
          const last = Tensor.empty([picked.length, 1, D], h.dtype, h.device);
          picked.forEach((r, i) => Tensor.copyElements(last, i * D, h, r * D, D));
          const head = picked.map((r) => rowAdapters[r]);
          const logits = m.lmHead.forward(last, {
            adapter: null,
            training: false,
            seed: 0,
            rowAdapters: mixed ? head : undefined,
          });
          const V = logits.shape[2];
          if (allGreedy) return Array.from(argmaxRows(logits.reshape([picked.length, V])).toFloat32());
          const host = logits.toFloat32();
          const wanting = spans.filter((s) => s.wantLogits);
          return picked.map((_, i): StepOutput => {
            const row = host.subarray(i * V, (i + 1) * V);
            return wanting[i].greedy ? argmaxFirst(row) : row.slice();
          });
        }),
      );
    } finally {
      paged.dispose();
    }
  }

  dispose(): void {
    this.steps.clear();
  }
}
