// One forward pass over many sequences at once, each at its own length and with its own adapter
// ("ragged" continuous batching): the tokens of every sequence in the step — a whole prompt or a
// chunk of one, or the single newest token of a sequence that is decoding — are laid out as the rows
// of one [N, 1, D] batch, grouped by adapter. Every linear layer runs one base GEMM over all N rows
// (each weight is read once per step, whatever the mix of adapters), then each adapter's low-rank
// change on its own rows; only attention, which needs each sequence's own past, runs per sequence
// against that sequence's KV cache.
//
// Per token this computes what CausalLM.hidden + lmHead compute for that sequence alone (the same
// ops in the same order, the same LoRA arithmetic as Linear.forwardPerRow with LoraLinear); results
// can differ from a separate run only in the last bits, where the GEMM takes another route for
// another number of rows.
import { noGrad } from '../autograd/tape.js';
import { cpu } from '../backend/cpu/addon.js';
import { DecodeStep } from '../models/decode-step.js';
import type { KVCache } from '../models/kv-cache.js';
import type { CausalLM } from '../models/llama.js';
import type { ForwardContext, Linear } from '../nn/linear.js';
import { attention } from '../ops/attention.js';
import { add } from '../ops/elementwise.js';
import { embedding } from '../ops/embedding.js';
import { gemmInto, linear } from '../ops/matmul.js';
import { loraScale } from '../peft/config.js';
import { LoraLinear } from '../peft/lora.js';
import { rmsnorm } from '../ops/rmsnorm.js';
import { rope, ropeTables } from '../ops/rope.js';
import { swiglu } from '../ops/swiglu.js';
import { keep, Tensor, tidy } from '../tensor/tensor.js';

/** One sequence's part of a step. */
export interface Span {
  /** This sequence's cache; the tokens go at positions cache.length, cache.length + 1, … */
  cache: KVCache;
  tokens: readonly number[];
  adapter: string | null;
  /** Whether the step should return next-token logits after this span's last token. */
  wantLogits: boolean;
}

/** Rows [start, end) of a step that share one adapter. */
interface Run {
  start: number;
  end: number;
  adapter: string;
}

/** The runs of adjacent rows with the same adapter (rows of the base model alone are in none). */
function runsOf(rowAdapters: readonly (string | null)[]): Run[] {
  const runs: Run[] = [];
  rowAdapters.forEach((a, r) => {
    if (a === null) return;
    const last = runs.at(-1);
    if (last && last.adapter === a && last.end === r) last.end = r + 1;
    else runs.push({ start: r, end: r + 1, adapter: a });
  });
  return runs;
}

const INFERENCE: ForwardContext = { adapter: null, training: false, seed: 0 };

/**
 * L(x) for x [N, 1, in] where each run of rows has its own adapter: one base GEMM for all rows, then
 * per run the adapter's change. A plain LoRA adds s·(x Aᵀ) Bᵀ straight into the base output through
 * the GEMM's epilogue (alpha = s, beta = 1) — the same floats as LoraLinear.forward's
 * add(base, scale(lora, s)), without its temporaries; other adapters (DoRA) use their own forward.
 */
function project(L: Linear, x: Tensor, runs: readonly Run[], threads: number): Tensor {
  const y = L.forwardBase(x);
  const row = y.size / y.shape[0];
  for (const r of runs) {
    const adapter = L.adapters.get(r.adapter);
    if (!adapter) continue; // this adapter does not target L
    const xr = x.sliceRows(r.start, r.end);
    const yr = y.sliceRows(r.start, r.end);
    if (adapter instanceof LoraLinear && !adapter.magnitude) {
      // Rank-r products are far too small to pay for waking the thread team (thousands per step).
      cpu.setThreads(1);
      gemmInto(yr, linear(xr, adapter.A), adapter.B, {
        transB: true,
        alpha: loraScale(adapter.config),
        beta: 1,
      });
      cpu.setThreads(threads);
    } else y.as('f32').set(adapter.forward(xr, yr, L, INFERENCE, 0).as('f32'), r.start * row);
  }
  return y;
}

/** Query rows below which a sequence's attention runs on the calling thread alone. */
const SMALL_ATTENTION_ROWS = 8;

export class BatchForward {
  private cos: Tensor | null = null;
  private sin: Tensor | null = null;
  private ropeRows = 0;
  // The base model's one-token fast path (made on first use; null where it does not apply).
  private baseStep: DecodeStep | null | undefined = undefined;

  constructor(readonly model: CausalLM) {}

  // DecodeStep for one sequence's single new token, where it applies (see models/decode-step.ts).
  private decodeStep(adapter: string | null): DecodeStep | null {
    if (adapter !== null) return DecodeStep.for(this.model, adapter);
    if (this.baseStep === undefined) this.baseStep = DecodeStep.for(this.model, null);
    return this.baseStep;
  }

  // RoPE tables covering positions [0, n), grown by doubling (as CausalLM does).
  private tables(n: number): { cos: Tensor; sin: Tensor } {
    if (!this.cos || !this.sin || this.ropeRows < n) {
      let rows = Math.max(256, this.ropeRows);
      while (rows < n) rows *= 2;
      this.cos?.dispose();
      this.sin?.dispose();
      const t = ropeTables(this.model.rope, this.model.config.headDim, rows);
      this.cos = keep(t.cos);
      this.sin = keep(t.sin);
      this.ropeRows = rows;
    }
    return { cos: this.cos, sin: this.sin };
  }

  /**
   * Runs the spans through the model, appends their keys and values to their caches, and returns one
   * logits row [V] for each span with wantLogits (in span order).
   */
  run(spans: readonly Span[]): Float32Array[] {
    const m = this.model;
    const c = m.config;
    const N = spans.reduce((a, s) => a + s.tokens.length, 0);
    if (N === 0) return [];
    // One sequence decoding alone (a single client): its token goes through the native fast path.
    if (N === 1 && spans[0].cache.batch === 1) {
      const s = spans[0];
      const step = this.decodeStep(s.adapter);
      if (step) {
        const logits = step.logits(s.tokens[0], s.cache.length, s.cache);
        return s.wantLogits ? [logits.slice()] : [];
      }
    }
    const ids = new Int32Array(N);
    const pos = new Int32Array(N);
    const rowAdapters: (string | null)[] = new Array<string | null>(N);
    const offsets: number[] = [];
    let maxPos = 0;
    let o = 0;
    for (const s of spans) {
      if (s.tokens.length === 0) throw new Error('lorakit: a batch span has no tokens.');
      offsets.push(o);
      for (let i = 0; i < s.tokens.length; i++, o++) {
        ids[o] = s.tokens[i];
        pos[o] = s.cache.length + i;
        rowAdapters[o] = s.adapter;
      }
      maxPos = Math.max(maxPos, s.cache.length + s.tokens.length);
    }
    const { cos, sin } = this.tables(maxPos);
    const Hq = c.numHeads;
    const Hkv = c.numKvHeads;
    const Dh = c.headDim;
    const eps = c.rmsNormEps;
    // Spans arrive grouped by adapter, so each adapter covers a few runs of adjacent rows.
    const runs = runsOf(rowAdapters);
    const threads = cpu.getThreads();
    return noGrad(() => {
      const positions = keep(Tensor.from(pos, [N, 1], 'i32'));
      // Segment ids of each span's new positions (one sequence: all 1, as generate() uses).
      const segments = spans.map((s) =>
        keep(Tensor.from(new Int32Array(s.tokens.length).fill(1), [1, s.tokens.length], 'i32')),
      );
      let x = keep(tidy(() => embedding(m.embedTokens, Tensor.from(ids, [N, 1], 'i32'))));
      try {
        for (const L of m.layers) {
          // One layer per scope, so a long prefill holds one layer's activations at a time.
          const next = tidy(() => {
            const h = rmsnorm(x, L.inputNorm, eps);
            let q = project(L.q, h, runs, threads).reshape([N, 1, Hq, Dh]);
            let k = project(L.k, h, runs, threads).reshape([N, 1, Hkv, Dh]);
            const v = project(L.v, h, runs, threads).reshape([N, 1, Hkv, Dh]);
            if (L.qNorm && L.kNorm) {
              q = rmsnorm(q, L.qNorm, eps);
              k = rmsnorm(k, L.kNorm, eps);
            }
            q = rope(q, cos, sin, positions);
            k = rope(k, cos, sin, positions);
            const a = Tensor.empty([N, 1, Hq * Dh]);
            const ad = a.as('f32');
            spans.forEach((s, j) => {
              const n = s.tokens.length;
              // A few query rows are too little work to wake the thread team for (one parallel region
              // per sequence and layer would cost more than the attention itself).
              cpu.setThreads(n < SMALL_ATTENTION_ROWS ? 1 : threads);
              const at = offsets[j];
              const qs = q.sliceRows(at, at + n).reshape([1, n, Hq, Dh]);
              const ks = k.sliceRows(at, at + n).reshape([1, n, Hkv, Dh]);
              const vs = v.sliceRows(at, at + n).reshape([1, n, Hkv, Dh]);
              const past = s.cache.append(L.index, ks, vs, segments[j]);
              ad.set(attention(qs, past.k, past.v, past.segments).as('f32'), at * Hq * Dh);
            });
            cpu.setThreads(threads);
            const x1 = add(x, project(L.o, a, runs, threads));
            const h2 = rmsnorm(x1, L.postAttnNorm, eps);
            const mlp = swiglu(project(L.gate, h2, runs, threads), project(L.up, h2, runs, threads));
            return keep(add(x1, project(L.down, mlp, runs, threads)));
          });
          x.dispose();
          x = next;
        }
        spans.forEach((s) => s.cache.commit(s.tokens.length));
        // Next-token logits only where asked: the last row of those spans (norm and head are per row).
        const picked = spans
          .map((s, j) => (s.wantLogits ? offsets[j] + s.tokens.length - 1 : -1))
          .filter((r) => r >= 0);
        if (picked.length === 0) return [];
        const D = c.hiddenSize;
        const xd = x.as('f32');
        return tidy(() => {
          const last = Tensor.empty([picked.length, 1, D]);
          const ld = last.as('f32');
          picked.forEach((r, i) => ld.set(xd.subarray(r * D, (r + 1) * D), i * D));
          const h = rmsnorm(last, m.finalNorm, eps);
          const logits = project(m.lmHead, h, runsOf(picked.map((r) => rowAdapters[r])), threads);
          const V = logits.shape[2];
          const ldata = logits.as('f32');
          return picked.map((_, i) => ldata.slice(i * V, (i + 1) * V));
        });
      } finally {
        cpu.setThreads(threads);
        x.dispose();
        positions.dispose();
        segments.forEach((t) => t.dispose());
      }
    });
  }

  dispose(): void {
    this.cos?.dispose();
    this.sin?.dispose();
    this.cos = this.sin = null;
    this.ropeRows = 0;
    this.baseStep = undefined;
  }
}
