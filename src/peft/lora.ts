// The LoRA layer: build from a base linear, forward, merge. What a variant of LoRA changes (DoRA:
// peft/dora.ts) is an object the layer holds and calls, as PEFT's LoraVariant.
import { computeValues, noGrad } from '../autograd/tape.js';
import { dropout } from '../ops/dropout.js';
import { add, scale } from '../ops/elementwise.js';
import { linear, matmul } from '../ops/matmul.js';
import { loraLinear, type LoraFactors } from '../ops/lora-linear.js';
import type { ForwardContext, Linear, LinearAdapter } from '../nn/linear.js';
import { keep, Tensor, tidy } from '../tensor/tensor.js';
import { loraScale, type LoraConfig } from './lora-config.js';
import { DoraVariant } from './dora.js';

/** A seeded uniform generator for initialisation (splitmix32). */
export function seededUniform(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
}

/** What a variant's output is made from: the layer's input (and dropped-out input), outputs and factors. */
export interface LoraParts {
  x: Tensor;
  /** dropout(x), or x when dropout is off. */
  xd: Tensor;
  dropping: boolean;
  /** The base layer's output, bias included. */
  baseOut: Tensor;
  /** xd · Aᵀ · Bᵀ, not yet scaled. */
  lowRank: Tensor;
  s: number;
  A: Tensor;
  B: Tensor;
}

/** How a LoRA layer's output, merge and trainable tensors differ from plain LoRA's (PEFT's LoraVariant). */
export interface LoraVariant {
  /** Whether the layer may run as one fused op with its base (and share an input with its neighbours). */
  readonly fusable: boolean;
  /** DoRA's magnitude vector, or null. */
  readonly magnitude: Tensor | null;
  /** The variant's own trainable tensors, by PEFT key. */
  parameters(): [string, Tensor][];
  /** The layer's output. */
  output(parts: LoraParts, base: Linear): Tensor;
  /** ΔW, the change merging makes to W [out, in], from ba = s·B·A (which it may write over). */
  delta(ba: Tensor, parts: Pick<LoraParts, 's' | 'A' | 'B'>, base: Linear): Tensor;
  /** The factor merging multiplies each output row by, taken before the merge changes W; null: none. */
  mergeRowFactor(parts: Pick<LoraParts, 's' | 'A' | 'B'>, base: Linear): Float32Array | null;
  dispose(): void;
}

/** Plain LoRA: y = base(x) + s · dropout(x) Aᵀ Bᵀ; merging adds s·B·A. */
const PLAIN: LoraVariant = {
  fusable: true,
  magnitude: null,
  parameters: () => [],
  output: ({ baseOut, lowRank, s }) => add(baseOut, scale(lowRank, s)),
  delta: (ba) => ba,
  mergeRowFactor: () => null,
  dispose: () => {},
};

/** A LoRA adapter on one linear layer: A [r, in], B [out, r], and its variant (plain or DoRA). */
export class LoraLinear implements LinearAdapter {
  constructor(
    readonly config: LoraConfig,
    readonly A: Tensor,
    readonly B: Tensor,
    readonly variant: LoraVariant = PLAIN,
  ) {
    A.requiresGrad = true;
    B.requiresGrad = true;
  }

  /** DoRA's magnitude vector, or null. */
  get magnitude(): Tensor | null {
    return this.variant.magnitude;
  }

  /** PEFT's default init: A Kaiming-uniform (a=√5, i.e. U(±1/√in)), or N(0, 1/r) for 'gaussian'; B zero. */
  static create(base: Linear, config: LoraConfig, seed: number): LoraLinear {
    const { r } = config;
    const inF = base.inFeatures;
    const next = seededUniform(seed);
    const a = new Float32Array(r * inF);
    if (config.init === 'gaussian') {
      for (let i = 0; i < a.length; i++) {
        const u = Math.max(next(), 1e-12);
        a[i] = (Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next())) / r;
      }
    } else {
      const bound = 1 / Math.sqrt(inF);
      for (let i = 0; i < a.length; i++) a[i] = (2 * next() - 1) * bound;
    }
    const device = base.weight.device;
    const A = keep(Tensor.from(a, [r, inF], 'f32', device));
    const B = keep(Tensor.zeros([base.outFeatures, r], 'f32', device));
    try {
      const variant = config.useDora ? DoraVariant.create(base, A, B, loraScale(config)) : PLAIN;
      return new LoraLinear(config, A, B, variant);
    } catch (e) {
      A.dispose();
      B.dispose();
      throw e;
    }
  }

  // x [..., in], baseOut [..., out] -> [..., out]
  forward(x: Tensor, baseOut: Tensor, base: Linear, ctx: ForwardContext, seed: number): Tensor {
    const s = loraScale(this.config);
    const dropping = ctx.training && this.config.dropout > 0;
    const xd = dropping ? dropout(x, this.config.dropout, seed) : x;
    const lowRank = linear(linear(xd, this.A), this.B);
    return this.variant.output({ x, xd, dropping, baseOut, lowRank, s, A: this.A, B: this.B }, base);
  }

  /**
   * The whole layer, base included, as one fused op (loraLinear: three GEMMs forward, at most five
   * backward). A variant that reads the base output (DoRA) keeps the base-then-adapter path of `forward`.
   */
  forwardFused(x: Tensor, base: Linear, ctx: ForwardContext, seed: number): Tensor {
    if (!this.variant.fusable)
      return computeValues(() => this.forward(x, base.forwardBase(x), base, ctx, seed));
    const s = loraScale(this.config);
    const xd = ctx.training && this.config.dropout > 0 ? dropout(x, this.config.dropout, seed) : null;
    return loraLinear(x, base.weight, base.bias, this.A, this.B, s, xd);
  }

  /** Shares an input with its neighbours (forwardShared) unless the variant or dropout needs this layer alone. */
  sharedFactors(ctx: ForwardContext): LoraFactors | null {
    if (!this.variant.fusable || (ctx.training && this.config.dropout > 0)) return null;
    return { A: this.A, B: this.B, s: loraScale(this.config) };
  }

  parameters(): [string, Tensor][] {
    return [['lora_A.weight', this.A], ['lora_B.weight', this.B], ...this.variant.parameters()];
  }

  /** ΔW = the change merging makes to W [out, in]: s·B·A, or for DoRA m/‖W+sBA‖ ⊙ (W+sBA) − W. */
  delta(base: Linear): Tensor {
    const s = loraScale(this.config);
    return noGrad(() =>
      tidy(() => this.variant.delta(scale(matmul(this.B, this.A), s), { s, A: this.A, B: this.B }, base)),
    );
  }

  /** The factor merging multiplies each output row by (DoRA's m/‖W+sBA‖), before W changes; or null. */
  mergeRowFactor(base: Linear): Float32Array | null {
    return noGrad(() =>
      this.variant.mergeRowFactor({ s: loraScale(this.config), A: this.A, B: this.B }, base),
    );
  }

  dispose(): void {
    this.A.dispose();
    this.B.dispose();
    this.variant.dispose();
  }
}
