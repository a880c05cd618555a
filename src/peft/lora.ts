// The LoRA layer (and its DoRA add-on): build from a base linear, forward, merge.
import { computeValues, noGrad } from '../autograd/tape.js';
import { deviceLabel } from '../backend/device.js';
import { hasKernel } from '../backend/kernels.js';
import { weightNorm } from '../ops/dora.js';
import { dropout } from '../ops/dropout.js';
import { add, mul, scale } from '../ops/elementwise.js';
import { linear, matmul } from '../ops/matmul.js';
import { loraLinear, type LoraFactors } from '../ops/lora-linear.js';
import type { ForwardContext, Linear, LinearAdapter } from '../nn/linear.js';
import { keep, Tensor, tidy } from '../tensor/tensor.js';
import { weightToFloat32 } from '../quant/weight.js';
import { loraScale, type LoraConfig } from './config.js';

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

/**
 * y = base(x) + s · dropout(x) Aᵀ Bᵀ, A [r, in], B [out, r]. With DoRA (magnitude m [out]):
 * y = base(x) + (m/‖W + sBA‖ − 1) · x Wᵀ + (m/‖W + sBA‖) · s · dropout(x) Aᵀ Bᵀ, the norm taken per
 * output row and detached from the graph, as PEFT does (DoRA paper §4.3).
 */
export class LoraLinear implements LinearAdapter {
  constructor(
    readonly config: LoraConfig,
    readonly A: Tensor,
    readonly B: Tensor,
    readonly magnitude: Tensor | null,
  ) {
    for (const t of [A, B, magnitude]) if (t) t.requiresGrad = true;
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
    if (config.useDora && !hasKernel(device, 'weightNorm'))
      throw new Error(
        `lorakit: DoRA runs on the CPU only for now (the ${deviceLabel(device)} has no weightNorm kernel); drop --use-dora or use --device cpu.`,
      );
    const A = keep(Tensor.from(a, [r, inF], 'f32', device));
    const B = keep(Tensor.zeros([base.outFeatures, r], 'f32', device));
    const m = config.useDora ? keep(LoraLinear.weightNorm(base, A, B, loraScale(config))) : null;
    return new LoraLinear(config, A, B, m);
  }

  /** ‖W + s·B·A‖ per output row [out] (no gradient). */
  static weightNorm(base: Linear, A: Tensor, B: Tensor, s: number): Tensor {
    return weightNorm(base.weight, A, B, s);
  }

  // x [..., in], baseOut [..., out] -> [..., out]
  forward(x: Tensor, baseOut: Tensor, base: Linear, ctx: ForwardContext, seed: number): Tensor {
    const s = loraScale(this.config);
    const dropping = ctx.training && this.config.dropout > 0;
    const xd = dropping ? dropout(x, this.config.dropout, seed) : x;
    const lora = linear(linear(xd, this.A), this.B);
    if (!this.magnitude) return add(baseOut, scale(lora, s));
    // DoRA. baseX = x Wᵀ without bias, on the dropped-out input when dropout is active (as PEFT).
    const norm = LoraLinear.weightNorm(base, this.A, this.B, s);
    const inv = Tensor.from(
      Array.from(norm.as('f32'), (v) => 1 / v),
      norm.shape,
    );
    const magScale = mul(this.magnitude, inv); // [out]
    let baseX: Tensor;
    if (dropping) baseX = base.matmulWeight(xd);
    else if (base.bias) baseX = add(baseOut, scale(base.bias, -1));
    else baseX = baseOut;
    const scaled = mul(add(baseX, scale(lora, s)), magScale);
    return add(add(baseOut, scale(baseX, -1)), scaled);
  }

  /**
   * The whole layer, base included, as one fused op (loraLinear: three GEMMs forward, at most five
   * backward). DoRA keeps the base-then-adapter path of `forward`.
   */
  forwardFused(x: Tensor, base: Linear, ctx: ForwardContext, seed: number): Tensor {
    if (this.magnitude) return computeValues(() => this.forward(x, base.forwardBase(x), base, ctx, seed));
    const s = loraScale(this.config);
    const xd = ctx.training && this.config.dropout > 0 ? dropout(x, this.config.dropout, seed) : null;
    return loraLinear(x, base.weight, base.bias, this.A, this.B, s, xd);
  }

  /** Shares an input with its neighbours (forwardShared) unless DoRA or dropout needs this layer alone. */
  sharedFactors(ctx: ForwardContext): LoraFactors | null {
    if (this.magnitude || (ctx.training && this.config.dropout > 0)) return null;
    return { A: this.A, B: this.B, s: loraScale(this.config) };
  }

  parameters(): [string, Tensor][] {
    const p: [string, Tensor][] = [
      ['lora_A.weight', this.A],
      ['lora_B.weight', this.B],
    ];
    if (this.magnitude) p.push(['lora_magnitude_vector', this.magnitude]);
    return p;
  }

  /** ΔW = the change merging makes to W [out, in]: s·B·A, or for DoRA m/‖W+sBA‖ ⊙ (W+sBA) − W. */
  delta(base: Linear): Tensor {
    const s = loraScale(this.config);
    return noGrad(() =>
      tidy(() => {
        const ba = scale(matmul(this.B, this.A), s);
        if (!this.magnitude) return ba;
        const norm = LoraLinear.weightNorm(base, this.A, this.B, s).as('f32');
        const w = weightToFloat32(base.weight); // dense copy (dequantized for a QLoRA base)
        const d = ba.as('f32');
        const m = this.magnitude.as('f32');
        const inF = base.inFeatures;
        for (let o = 0; o < base.outFeatures; o++) {
          const f = m[o] / norm[o];
          for (let i = 0; i < inF; i++) {
            const k = o * inF + i;
            d[k] = f * (w[k] + d[k]) - w[k];
          }
        }
        return ba;
      }),
    );
  }

  dispose(): void {
    this.A.dispose();
    this.B.dispose();
    this.magnitude?.dispose();
  }
}
