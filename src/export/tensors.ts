// The tensors of a model as an exporter sees them: Hugging Face names, shapes, and a reader that makes
// each one's values (with an adapter merged in) only when it is written, so exports hold one tensor
// at a time, never a second copy of the model.
import type { CausalLM } from '../models/llama.js';
import { mergedWeight } from '../peft/merge.js';
import { Tensor } from '../tensor/tensor.js';

export interface ExportTensor {
  /** Hugging Face name, e.g. model.layers.0.self_attn.q_proj.weight. */
  name: string;
  shape: number[];
  /** Whether the model stores this tensor in 16 bits or less (bf16 or quantized): a hint for the default export dtype. */
  bf16: boolean;
  /** The values as a fresh f32 tensor the caller disposes. */
  read(): Tensor;
}

export interface ModelTensors {
  tensors: ExportTensor[];
  /** The written model has a separate lm_head (the source was untied, or a merged head had to untie). */
  untied: boolean;
}

function copyF32(t: Tensor): Tensor {
  return Tensor.from(t.dtype === 'f32' ? t.as('f32') : t.toFloat32(), t.shape);
}

/**
 * Every tensor of the model in Hugging Face order and naming, with `adapter` merged into the linears
 * it targets (null: the weights as they are). A tied output head stays tied unless the adapter changes
 * it, in which case lm_head.weight is written on its own.
 */
export function modelTensors(model: CausalLM, adapter: string | null): ModelTensors {
  if (adapter !== null && !model.adapterConfigs.has(adapter))
    throw new Error(
      `lorakit: no adapter named '${adapter}' (have: ${[...model.adapterConfigs.keys()].join(', ') || 'none'}).`,
    );
  const out: ExportTensor[] = [];
  const plain = (name: string, t: Tensor): void => {
    out.push({ name, shape: [...t.shape], bf16: t.dtype === 'bf16', read: () => copyF32(t) });
  };
  plain('model.embed_tokens.weight', model.embedTokens);
  for (const layer of model.layers) {
    const p = `model.layers.${layer.index}`;
    plain(`${p}.input_layernorm.weight`, layer.inputNorm);
    for (const l of layer.linears()) {
      const w = l.weight;
      // A quantized weight is written dequantized (at 16 bits unless asked otherwise), never re-quantized.
      out.push({
        name: `${l.path}.weight`,
        shape: [...w.shape],
        bf16: !(w instanceof Tensor) || w.dtype === 'bf16',
        read: () => mergedWeight(l, adapter),
      });
      if (l.bias) plain(`${l.path}.bias`, l.bias);
    }
    if (layer.qNorm) plain(`${p}.self_attn.q_norm.weight`, layer.qNorm);
    if (layer.kNorm) plain(`${p}.self_attn.k_norm.weight`, layer.kNorm);
    plain(`${p}.post_attention_layernorm.weight`, layer.postAttnNorm);
  }
  plain('model.norm.weight', model.finalNorm);
  const head = model.lmHead;
  const tied = head.weight === model.embedTokens;
  const headChanged = adapter !== null && head.adapters.has(adapter);
  const untied = !tied || headChanged;
  if (untied)
    out.push({
      name: 'lm_head.weight',
      shape: [...head.weight.shape],
      bf16: head.weight.dtype === 'bf16',
      read: () => mergedWeight(head, adapter),
    });
  return { tensors: out, untied };
}
