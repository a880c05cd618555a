import { isGradEnabled } from '../autograd/tape.js';
import { linear } from '../ops/matmul.js';
import type { Tensor } from '../tensor/tensor.js';

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
  parameters(): [string, Tensor][];
  dispose(): void;
}

/** FNV-1a of a string: a stable per-layer salt (same layer, same masks, in any process or model copy). */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** y = x Wᵀ (+ b), W [out, in] f32 or bf16, plus any named adapters attached to it. */
export class Linear {
  readonly adapters = new Map<string, LinearAdapter>();
  /** Distinct per layer so dropout masks differ between layers. */
  readonly seedSalt: number;

  constructor(
    /** The module path in Hugging Face naming, e.g. model.layers.0.self_attn.q_proj. */
    readonly path: string,
    public weight: Tensor,
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

  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const base = linear(x, this.weight, this.bias);
    if (ctx.rowAdapters) return this.forwardPerRow(x, base, ctx, ctx.rowAdapters);
    const adapter = ctx.adapter === null ? undefined : this.adapters.get(ctx.adapter);
    if (!adapter) return base;
    return adapter.forward(x, base, this, ctx, (ctx.seed ^ this.seedSalt) >>> 0);
  }

  // Each row b of x [B, ...] goes through its own adapter; the base GEMM ran once for all rows.
  private forwardPerRow(x: Tensor, base: Tensor, ctx: ForwardContext, rows: readonly (string | null)[]): Tensor {
    if (isGradEnabled()) throw new Error('lorakit: per-row adapters are for inference (run under noGrad).');
    if (rows.length !== x.shape[0]) throw new Error(`lorakit: ${rows.length} row adapters for a batch of ${x.shape[0]}.`);
    for (let b = 0; b < rows.length; b++) {
      const name = rows[b];
      const adapter = name === null ? undefined : this.adapters.get(name);
      if (!adapter) continue;
      const xb = x.sliceRows(b, b + 1);
      const ob = base.sliceRows(b, b + 1);
      const yb = adapter.forward(xb, ob, this, { ...ctx, rowAdapters: undefined, training: false }, 0);
      ob.as('f32').set(yb.as('f32'));
      for (const t of [xb, ob, yb]) t.dispose();
    }
    return base;
  }

  /** Base output only (merged weights, or when the adapter is handled elsewhere). */
  forwardBase(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }

  dispose(): void {
    this.weight.dispose();
    this.bias?.dispose();
    for (const a of this.adapters.values()) a.dispose();
    this.adapters.clear();
  }
}
