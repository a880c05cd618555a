// bitsandbytes checkpoints: reading pre-quantized 4-bit (and int8) weights as transformers saves them
// (bnb-read.ts), and saving a quantized model the same way so transformers + bitsandbytes load it.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors } from '../io/safetensors.js';
import { Tensor } from '../tensor/tensor.js';
import { code4, type Quant4Type } from './codes.js';
import { QuantizedWeight } from './weight.js';

export * from './bnb-read.js';

/** Python's json.dumps layout (", " and ": "), which bitsandbytes writes. */
function pyJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(pyJson).join(', ')}]`;
  if (v !== null && typeof v === 'object')
    return `{${Object.entries(v)
      .map(([k, x]) => `${JSON.stringify(k)}: ${pyJson(x)}`)
      .join(', ')}}`;
  return JSON.stringify(v);
}

/** The tensors bitsandbytes saves for a 4-bit weight called `name`. New tensors (views) the caller disposes. */
export function bnbTensors(qw: QuantizedWeight, name: string): Record<string, Tensor> {
  if (qw.type === 'int8')
    throw new Error('lorakit: saving int8 weights in bitsandbytes format is not supported; save nf4 or fp4.');
  const type = qw.type as Quant4Type;
  const state: Record<string, unknown> = {
    quant_type: type,
    blocksize: qw.blocksize,
    dtype: qw.sourceDtype,
    shape: [...qw.shape],
  };
  const out: Record<string, Tensor> = {
    [name]: qw.data.reshape([qw.data.size, 1]),
    [`${name}.quant_map`]: Tensor.from(code4(type), [16]),
  };
  if (qw.nested) {
    state.nested_blocksize = qw.nested.blocksize;
    state.nested_dtype = 'float32';
    state.nested_offset = qw.nested.offset;
    out[`${name}.absmax`] = qw.nested.qabsmax.reshape([qw.nested.qabsmax.size]);
    out[`${name}.nested_absmax`] = qw.nested.absmax2.reshape([qw.nested.absmax2.size]);
    out[`${name}.nested_quant_map`] = qw.nested.code.reshape([256]);
  } else out[`${name}.absmax`] = qw.absmax!.reshape([qw.absmax!.size]);
  const json = new TextEncoder().encode(pyJson(state));
  out[`${name}.quant_state.bitsandbytes__${type}`] = Tensor.from(json, [json.length], 'u8');
  return out;
}

/** transformers' BitsAndBytesConfig for a 4-bit model, as save_pretrained writes it. */
export function bnbQuantizationConfig(type: Quant4Type, doubleQuant: boolean): Record<string, unknown> {
  return {
    _load_in_4bit: true,
    _load_in_8bit: false,
    bnb_4bit_compute_dtype: 'float32',
    bnb_4bit_quant_storage: 'uint8',
    bnb_4bit_quant_type: type,
    bnb_4bit_use_double_quant: doubleQuant,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: null,
    llm_int8_threshold: 6.0,
    load_in_4bit: true,
    load_in_8bit: false,
    quant_method: 'bitsandbytes',
  };
}

/** What saving reads of a model (as models/llama.ts's CausalLM has it; quant/ sits below models/). */
export interface QuantizedModelTensors {
  readonly config: { readonly raw: Record<string, unknown> };
  linears(): { path: string; weight: Tensor | QuantizedWeight; bias: Tensor | null }[];
  readonly lmHead: unknown;
  readonly embedTokens: Tensor;
  readonly finalNorm: Tensor;
  readonly layers: readonly {
    index: number;
    inputNorm: Tensor;
    postAttnNorm: Tensor;
    qNorm: Tensor | null;
    kNorm: Tensor | null;
  }[];
}

/**
 * Saves a model whose decoder linears are 4-bit quantized as a transformers + bitsandbytes folder:
 * model.safetensors (quantized linears in bitsandbytes' keys, everything else fp32) and config.json
 * with its quantization_config. Files appear complete or not at all.
 */
export function saveQuantizedModel(model: QuantizedModelTensors, dir: string): void {
  const tensors: Record<string, Tensor> = {};
  const views: Tensor[] = [];
  let type: Quant4Type | null = null;
  let doubleQuant = false;
  for (const l of model.linears()) {
    const w = l.weight;
    if (w instanceof QuantizedWeight) {
      if (w.type === 'int8')
        throw new Error(
          'lorakit: saving int8 weights in bitsandbytes format is not supported; save nf4 or fp4.',
        );
      if (type !== null && (type !== w.type || doubleQuant !== (w.nested !== null)))
        throw new Error(
          'lorakit: all quantized layers must share one type and double-quantization setting to be saved for bitsandbytes.',
        );
      type = w.type;
      doubleQuant = w.nested !== null;
      const t = bnbTensors(w, `${l.path}.weight`);
      Object.assign(tensors, t);
      views.push(...Object.values(t));
    } else if (l !== model.lmHead || w !== model.embedTokens) tensors[`${l.path}.weight`] = w;
    if (l.bias) tensors[`${l.path}.bias`] = l.bias;
  }
  if (type === null)
    throw new Error('lorakit: the model has no quantized layers to save in bitsandbytes format.');
  tensors['model.embed_tokens.weight'] = model.embedTokens;
  tensors['model.norm.weight'] = model.finalNorm;
  for (const layer of model.layers) {
    const p = `model.layers.${layer.index}`;
    tensors[`${p}.input_layernorm.weight`] = layer.inputNorm;
    tensors[`${p}.post_attention_layernorm.weight`] = layer.postAttnNorm;
    if (layer.qNorm) tensors[`${p}.self_attn.q_norm.weight`] = layer.qNorm;
    if (layer.kNorm) tensors[`${p}.self_attn.k_norm.weight`] = layer.kNorm;
  }
  mkdirSync(dir, { recursive: true });
  try {
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  } finally {
    for (const t of views) t.dispose();
  }
  const config = {
    ...model.config.raw,
    dtype: 'float32',
    quantization_config: bnbQuantizationConfig(type, doubleQuant),
  };
  const tmp = join(dir, 'config.json.tmp');
  // Python reads 6 as an int; transformers insists llm_int8_threshold is a float.
  writeFileSync(
    tmp,
    `${JSON.stringify(config, null, 2).replace(/("llm_int8_threshold": )(\d+)(,?\n)/, '$1$2.0$3')}\n`,
  );
  renameSync(tmp, join(dir, 'config.json'));
}
