// DoRA (arXiv 2402.09353) as a LoRA variant: the weight split into a trained magnitude m [out] and a
// direction W + s·B·A, whose per-row norm is detached from the graph as PEFT does (DoRA paper §4.3).
import { deviceLabel } from '../backend/device.js';
import { hasKernel } from '../backend/kernels.js';
import { weightNorm } from '../ops/dora.js';
import { add, castTo, full, mul, scale } from '../ops/elementwise.js';
import type { Linear } from '../nn/linear.js';
import { weightToFloat32 } from '../quant/weight.js';
import { keep, type Tensor } from '../tensor/tensor.js';
import type { LoraParts, LoraVariant } from './lora.js';

export class DoraVariant implements LoraVariant {
  readonly fusable = false; // the output reads the base output: no fused op, no shared input

  private constructor(readonly magnitude: Tensor) {
    magnitude.requiresGrad = true;
  }

  /** m starts at ‖W + s·B·A‖ per row, so training starts from the base model exactly. */
  static create(base: Linear, A: Tensor, B: Tensor, s: number): DoraVariant {
    if (!hasKernel(A.device, 'weightNorm'))
      throw new Error(
        `lorakit: DoRA needs the weightNorm kernel, which the ${deviceLabel(A.device)} lacks; drop --use-dora or use --device cpu.`,
      );
    return new DoraVariant(keep(weightNorm(base.weight, A, B, s)));
  }

  parameters(): [string, Tensor][] {
    return [['lora_magnitude_vector', this.magnitude]];
  }

  // y = base(x) + (m/‖W + sBA‖ − 1) · x Wᵀ + (m/‖W + sBA‖) · s · dropout(x) Aᵀ Bᵀ (PEFT's form), with
  // x Wᵀ (no bias) on the dropped-out input when dropout is active (as PEFT).
  output({ xd, dropping, baseOut, lowRank, s, A, B }: LoraParts, base: Linear): Tensor {
    // 1/‖W + sBA‖ is formed on the device: no read back per layer (WebGPU cannot wait for one).
    const magScale = mul(this.magnitude, weightNorm(base.weight, A, B, s, true)); // [out] f32
    // The scale minus one is taken in f32: in bf16 a scale near 1 would round to 1, hiding small
    // changes of m from the forward pass; the gain itself keeps bf16's relative precision.
    const gain = add(magScale, full(magScale.shape, -1, magScale));
    let baseX: Tensor;
    if (dropping) baseX = base.matmulWeight(xd);
    else if (base.bias) baseX = add(baseOut, scale(base.bias, -1));
    else baseX = baseOut;
    const dt = baseOut.dtype; // bf16 activations on a GPU: the f32 factors meet them in bf16
    const adapted = add(baseOut, mul(baseX, castTo(gain, dt)));
    return add(adapted, mul(scale(lowRank, s), castTo(magScale, dt)));
  }

  // m/‖W+sBA‖ ⊙ (W+sBA) − W, written over ba = s·B·A.
  delta(ba: Tensor, { s, A, B }: Pick<LoraParts, 's' | 'A' | 'B'>, base: Linear): Tensor {
    const norm = weightNorm(base.weight, A, B, s).as('f32');
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
  }

  // m / ‖W + s·B·A‖ per output row, before the merge changes W.
  mergeRowFactor({ s, A, B }: Pick<LoraParts, 's' | 'A' | 'B'>, base: Linear): Float32Array {
    const norm = weightNorm(base.weight, A, B, s);
    const m = this.magnitude.as('f32');
    const f = Float32Array.from(norm.as('f32'), (v, i) => m[i] / v);
    norm.dispose();
    return f;
  }

  dispose(): void {
    this.magnitude.dispose();
  }
}
