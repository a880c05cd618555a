// PEFT's modules_to_save: whole modules trained in full for one adapter, alongside its LoRA layers.
// Supported: the output head (lm_head) and the token embeddings (embed_tokens). Each adapter gets its
// own fp32 copy, made on the model's device; the base stays untouched, so switching adapters switches
// copies.
import { cast } from '../ops/elementwise.js';
import { linear } from '../ops/matmul.js';
import type { ForwardContext, Linear, LinearAdapter } from '../nn/linear.js';
import { keep, Tensor } from '../tensor/tensor.js';
import { QuantizedWeight, weightToFloat32 } from '../quant/weight.js';

export const SAVABLE_MODULES = ['lm_head', 'embed_tokens'] as const;

/** A trainable fp32 copy of a linear layer's weight (and bias) that replaces it for one adapter. */
export class FullLinearCopy implements LinearAdapter {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(base: Linear) {
    this.weight = trainableCopy(base.weight);
    this.bias = base.bias ? trainableCopy(base.bias) : null;
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
  return trainableCopy(table);
}

/**
 * A trainable fp32 copy of a weight, cast on its device: a GPU's values are never read back (a WebGPU
 * device cannot wait for a read). A quantized weight (never an output head or embedding lorakit
 * loads) is dequantized on the host.
 */
function trainableCopy(w: Tensor | QuantizedWeight): Tensor {
  const t = keep(
    w instanceof QuantizedWeight ? Tensor.from(weightToFloat32(w), w.shape, 'f32', w.device) : cast(w, 'f32'),
  );
  t.requiresGrad = true;
  return t;
}
