import { computeValues, isGradEnabled } from '../autograd/tape.js';
import { linear } from '../ops/matmul.js';
import { loraLinears, type LoraFactors, type SharedInputLayer } from '../ops/lora-linear.js';
import { quantizedLinear } from '../ops/quant-linear.js';
import { QuantizedWeight } from '../quant/weight.js';
import { Tensor } from '../tensor/tensor.js';
import { loraSegments, type LoraSegment } from '../ops/lora-segments.js';

/** Per-forward settings that reach every layer. */
export interface ForwardContext {
  /** The adapter to apply (null: the base model alone). */
  adapter: string | null;
  /** Training mode: dropout on. */
  training: boolean;
  /** Seed for this forward's dropout masks; layers derive their own from it. */
  seed: number;
  /**
   * Serving several adapters in one batch: the adapter of each batch row (first dimension of the
   * input), overriding `adapter`. Inference only (not recorded).
   */
  rowAdapters?: readonly (string | null)[];
}

/**
 * Something that adds to a frozen linear layer's output: a LoRA (or DoRA) adapter. It receives the
 * layer input, the base output and the layer, and returns the layer's new output.
 */
export interface LinearAdapter {
  forward(x: Tensor, baseOut: Tensor, base: Linear, ctx: ForwardContext, layerSeed: number): Tensor;
  /**
   * The whole layer's output (base and adapter together) from its input, for adapters that compute
   * the base product themselves (a fused LoRA op). Linear.forward prefers it to `forward`, except for
   * per-row adapters (serving), which keep the base-then-adapter path.
   */
  forwardFused?(x: Tensor, base: Linear, ctx: ForwardContext, layerSeed: number): Tensor;
  /**
   * The LoRA factors when this adapter can run in one op with the other layers that read the same
   * input (forwardShared); null when it cannot in this forward (DoRA, or dropout: a mask per layer).
   */
  sharedFactors?(ctx: ForwardContext): LoraFactors | null;
  parameters(): [string, Tensor][];
  dispose(): void;
}

/**
 * Layers that read one input (q, k, v; gate, up): their outputs, as one op (loraLinears) when every
 * layer is plain or has an adapter that can share it: one product with the stacked A factors forward
 * and one input gradient that every layer accumulates into backward. Otherwise each layer on its own.
 */
export function forwardShared(layers: readonly Linear[], x: Tensor, ctx: ForwardContext): Tensor[] {
  const group = sharedGroup(layers, ctx);
  return group ? loraLinears(x, group) : layers.map((l) => l.forward(x, ctx));
}

// The layers as one loraLinears group, or null when an adapter cannot share or none is active.
function sharedGroup(layers: readonly Linear[], ctx: ForwardContext): SharedInputLayer[] | null {
  const name = ctx.adapter;
  if (name === null || ctx.rowAdapters) return null;
  const group: SharedInputLayer[] = [];
  for (const layer of layers) {
    const adapter = layer.adapters.get(name);
    const lora = adapter ? (adapter.sharedFactors?.(ctx) ?? null) : null;
    if (adapter && !lora) return null;
    group.push({ w: layer.weight, bias: layer.bias, lora });
  }
  return group.some((l) => l.lora) ? group : null;
}

/** FNV-1a of a string: a stable per-layer salt (same layer, same masks, in any process or model copy). */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * y = x Wᵀ (+ b), W [out, in] f32, bf16 or quantized (NF4/FP4/int8, frozen), plus any named adapters
 * attached to it. `W` narrows the weight's type where it is known (the output head is never quantized).
 */
export class Linear<W extends Tensor | QuantizedWeight = Tensor | QuantizedWeight> {
  readonly adapters = new Map<string, LinearAdapter>();
  /** Distinct per layer so dropout masks differ between layers. */
  readonly seedSalt: number;

  constructor(
    /** The module path in Hugging Face naming, e.g. model.layers.0.self_attn.q_proj. */
    readonly path: string,
    public weight: W,
    public bias: Tensor | null = null,
  ) {
    this.seedSalt = hashString(path);
  }

  get inFeatures(): number {
    return this.weight.shape[1];
  }

  get outFeatures(): number {
    return this.weight.shape[0];
  }

  /** The last segment of the path: q_proj, down_proj, lm_head, … */
  get name(): string {
    return this.path.slice(this.path.lastIndexOf('.') + 1);
  }

  /** Whether the base weight is stored quantized (QLoRA). */
  get quantized(): boolean {
    return this.weight instanceof QuantizedWeight;
  }

  /**
   * The layer's output. Inside checkpointOutput's recompute the products are recorded for backward but
   * not computed, where the op allows: the plain and fused paths. A base-then-adapter path (DoRA)
   * computes as usual, since the adapter reads the base output.
   */
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    if (ctx.rowAdapters) return this.forwardPerRow(x, ctx, ctx.rowAdapters);
    const adapter = ctx.adapter === null ? undefined : this.adapters.get(ctx.adapter);
    if (!adapter) return this.forwardBase(x);
    const seed = (ctx.seed ^ this.seedSalt) >>> 0;
    // A fused adapter runs the base product itself (one op for the whole layer).
    if (adapter.forwardFused) return adapter.forwardFused(x, this, ctx, seed);
    return computeValues(() => adapter.forward(x, this.forwardBase(x), this, ctx, seed));
  }

  // Each row b of x [B, ...] goes through its own adapter; the base GEMM runs once for all rows. The
  // plain LoRA adapters of every run of adjacent rows with one adapter add their terms in one
  // loraSegments op (into the base output); other adapters (DoRA) run on their rows' slice.
  private forwardPerRow(x: Tensor, ctx: ForwardContext, rows: readonly (string | null)[]): Tensor {
    if (isGradEnabled()) throw new Error('lorakit: per-row adapters are for inference (run under noGrad).');
    if (rows.length !== x.shape[0])
      throw new Error(`lorakit: ${rows.length} row adapters for a batch of ${x.shape[0]}.`);
    const base = this.forwardBase(x);
    const inF = this.inFeatures;
    const outF = this.outFeatures;
    const n = x.size / inF; // rows of the [n, in] view
    const per = n / rows.length; // of them in each batch row
    const sub: ForwardContext = { ...ctx, rowAdapters: undefined, training: false };
    const segments: LoraSegment[] = [];
    const x2 = x.reshape([n, inF]);
    const y2 = base.reshape([n, outF]);
    try {
      for (let b = 0; b < rows.length;) {
        const name = rows[b];
        let e = b + 1;
        while (e < rows.length && rows[e] === name) e++;
        const adapter = name === null ? undefined : this.adapters.get(name);
        const lora = adapter?.sharedFactors?.(sub);
        if (lora) segments.push({ start: b * per, end: e * per, ...lora });
        else if (adapter) {
          const xg = x2.sliceRows(b * per, e * per);
          const og = y2.sliceRows(b * per, e * per);
          const yg = adapter.forward(xg, og, this, sub, 0);
          Tensor.copyElements(base, b * per * outF, yg, 0, yg.size);
          for (const t of [xg, og, yg]) t.dispose();
        }
        b = e;
      }
      if (segments.length > 0) loraSegments(y2, x2, segments);
    } finally {
      x2.dispose();
      y2.dispose();
    }
    return base;
  }

  /** Base output only (merged weights, or when the adapter is handled elsewhere). */
  forwardBase(x: Tensor): Tensor {
    const w: Tensor | QuantizedWeight = this.weight;
    return w instanceof QuantizedWeight ? quantizedLinear(x, w, this.bias) : linear(x, w, this.bias);
  }

  /** x Wᵀ without the bias (DoRA needs it on a dropped-out input). */
  matmulWeight(x: Tensor): Tensor {
    const w: Tensor | QuantizedWeight = this.weight;
    return w instanceof QuantizedWeight ? quantizedLinear(x, w) : linear(x, w);
  }

  dispose(): void {
    this.weight.dispose();
    this.bias?.dispose();
    for (const a of this.adapters.values()) a.dispose();
    this.adapters.clear();
  }
}
