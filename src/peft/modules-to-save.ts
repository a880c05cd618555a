// PEFT's modules_to_save: whole modules trained in full for one adapter, alongside its LoRA layers.
// Supported: the output head (lm_head) and the token embeddings (embed_tokens). Each adapter gets its
// own fp32 copy; the base stays untouched, so switching adapters switches copies.
import { linear } from '../ops/matmul.js';
import type { ForwardContext, Linear, LinearAdapter } from '../nn/linear.js';
import { keep, Tensor } from '../tensor/tensor.js';
import { weightToFloat32 } from '../quant/weight.js';

export const SAVABLE_MODULES = ['lm_head', 'embed_tokens'] as const;

/** A trainable fp32 copy of a linear layer's weight (and bias) that replaces it for one adapter. */
export class FullLinearCopy implements LinearAdapter {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(base: Linear) {
    const device = base.weight.device;
    this.weight = keep(
      Tensor.from(weightToFloat32(base.weight), [base.outFeatures, base.inFeatures], 'f32', device),
    );
    this.bias = base.bias ? keep(Tensor.from(base.bias.toFloat32(), base.bias.shape, 'f32', device)) : null;
    this.weight.requiresGrad = true;
    if (this.bias) this.bias.requiresGrad = true;
  }

  // The base output is not used: this module's own weights replace the base layer.
  forward(x: Tensor, _baseOut: Tensor, _base: Linear, _ctx: ForwardContext, _seed: number): Tensor {
    return linear(x, this.weight, this.bias);
  }

  parameters(): [string, Tensor][] {
    const p: [string, Tensor][] = [['weight', this.weight]];
    if (this.bias) p.push(['bias', this.bias]);
    return p;
  }

  dispose(): void {
    this.weight.dispose();
    this.bias?.dispose();
  }
}

/** A trainable fp32 copy of an embedding table. */
export function embeddingCopy(table: Tensor): Tensor {
  const t = keep(Tensor.from(table.toFloat32(), table.shape, 'f32', table.device));
  t.requiresGrad = true;
  return t;
}
