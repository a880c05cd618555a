// A Llama-family model from a GGUF file: llama.cpp's metadata keys and tensor names mapped back to the
// Hugging Face ones, with the q/k row permutation llama.cpp's converter applies to Llama undone.
import type { GGUFFile } from '../io/gguf-reader.js';
import { quoteValue } from '../io/quote.js';
import type { QuantizeOptions } from '../quant/weight.js';
import { Tensor, type Device } from '../tensor/tensor.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { parseModelConfig } from './config.js';
import { CausalLM, type WeightDType, type WeightSource } from './llama.js';

const ARCH_TO_MODEL_TYPE: Record<string, string> = {
  llama: 'llama',
  mistral: 'mistral',
  qwen2: 'qwen2',
  qwen3: 'qwen3',
};

/** HF config.json fields from GGUF metadata, refusing values no model can have (naming key and file). */
export function configFromGGUF(f: GGUFFile): Record<string, unknown> {
  const archValue = f.get('general.architecture');
  const arch = typeof archValue === 'string' ? archValue : '';
  const modelType = Object.hasOwn(ARCH_TO_MODEL_TYPE, arch) ? ARCH_TO_MODEL_TYPE[arch] : undefined;
  if (!modelType)
    throw new Error(
      `lorakit: ${f.path}: unsupported GGUF architecture ${quoteValue(archValue ?? '')} (supported: ${Object.keys(ARCH_TO_MODEL_TYPE).join(', ')}).`,
    );
  const bad = (key: string, what: string): never => {
    throw new Error(`lorakit: ${f.path}: GGUF metadata '${arch}.${key}' ${what}`);
  };
  const num = (key: string): number | undefined => {
    const v = f.get(`${arch}.${key}`);
    return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : undefined;
  };
  const need = (key: string): number => {
    const v = num(key);
    if (v === undefined) throw new Error(`lorakit: ${f.path}: GGUF metadata lacks '${arch}.${key}'.`);
    return v;
  };
  /** A size or count: a positive integer (0 would only fail later, far from its cause). */
  const count = (key: string, v: number): number => {
    if (!Number.isSafeInteger(v) || v < 1) bad(key, `is ${v}; it must be a positive integer.`);
    return v;
  };
  const optCount = (key: string): number | undefined => {
    const v = num(key);
    return v === undefined ? undefined : count(key, v);
  };
  const tokens = f.get('tokenizer.ggml.tokens');
  const heads = count('attention.head_count', need('attention.head_count'));
  const hidden = count('embedding_length', need('embedding_length'));
  const kvHeads = optCount('attention.head_count_kv') ?? heads;
  if (heads % kvHeads !== 0)
    bad('attention.head_count_kv', `is ${kvHeads}, which does not divide attention.head_count ${heads}.`);
  const keyLength = optCount('attention.key_length');
  if (keyLength === undefined && hidden % heads !== 0)
    bad(
      'embedding_length',
      `is ${hidden}, not a multiple of attention.head_count ${heads} (and there is no attention.key_length).`,
    );
  const headDim = keyLength ?? hidden / heads;
  // llama.cpp's llama, qwen2 and qwen3 graphs rotate whole heads (they assert n_rot == head size), and
  // so does lorakit for these: any other value describes a model neither would run correctly.
  const rotary = num('rope.dimension_count');
  if (rotary !== undefined && rotary !== headDim)
    bad(
      'rope.dimension_count',
      `is ${rotary}; it must equal the head dimension ${headDim} (${keyLength !== undefined ? 'attention.key_length' : 'embedding_length / attention.head_count'}).`,
    );
  const scalingType = f.get(`${arch}.rope.scaling.type`);
  if (scalingType !== undefined && scalingType !== 'none')
    throw new Error(`lorakit: ${f.path}: GGUF rope scaling ${quoteValue(scalingType)} is not supported.`);
  if (f.has('rope_freqs.weight'))
    throw new Error(
      `lorakit: ${f.path}: GGUF rope frequency factors (Llama 3.1 style) are not supported; load the Hugging Face folder instead.`,
    );
  const eps = num('attention.layer_norm_rms_epsilon') ?? 1e-5;
  if (!(eps >= 0) || !Number.isFinite(eps))
    bad('attention.layer_norm_rms_epsilon', `is ${eps}; it must be a finite number, not negative.`);
  const theta = num('rope.freq_base') ?? 10000;
  if (!(theta > 0) || !Number.isFinite(theta))
    bad('rope.freq_base', `is ${theta}; it must be a positive number.`);
  const vocab = optCount('vocab_size');
  return {
    model_type: modelType,
    vocab_size: vocab ?? (Array.isArray(tokens) ? tokens.length : need('vocab_size')),
    hidden_size: hidden,
    intermediate_size: count('feed_forward_length', need('feed_forward_length')),
    num_hidden_layers: count('block_count', need('block_count')),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    max_position_embeddings: optCount('context_length') ?? 2048,
    rms_norm_eps: eps,
    rope_theta: theta,
    tie_word_embeddings: !f.has('output.weight'),
    sliding_window: null,
    hidden_act: 'silu',
    bos_token_id: f.get('tokenizer.ggml.bos_token_id'),
    eos_token_id: f.get('tokenizer.ggml.eos_token_id'),
  };
}

const LAYER_NAMES: Record<string, string> = {
  'input_layernorm.weight': 'attn_norm.weight',
  'post_attention_layernorm.weight': 'ffn_norm.weight',
  'self_attn.q_proj.weight': 'attn_q.weight',
  'self_attn.k_proj.weight': 'attn_k.weight',
  'self_attn.v_proj.weight': 'attn_v.weight',
  'self_attn.o_proj.weight': 'attn_output.weight',
  'self_attn.o_proj.bias': 'attn_output.bias',
  'mlp.gate_proj.bias': 'ffn_gate.bias',
  'mlp.up_proj.bias': 'ffn_up.bias',
  'mlp.down_proj.bias': 'ffn_down.bias',
  'self_attn.q_proj.bias': 'attn_q.bias',
  'self_attn.k_proj.bias': 'attn_k.bias',
  'self_attn.v_proj.bias': 'attn_v.bias',
  'self_attn.q_norm.weight': 'attn_q_norm.weight',
  'self_attn.k_norm.weight': 'attn_k_norm.weight',
  'mlp.gate_proj.weight': 'ffn_gate.weight',
  'mlp.up_proj.weight': 'ffn_up.weight',
  'mlp.down_proj.weight': 'ffn_down.weight',
};

/** The GGUF tensor name of a Hugging Face tensor name. */
export function ggufName(hf: string): string {
  const global: Record<string, string> = {
    'model.embed_tokens.weight': 'token_embd.weight',
    'model.norm.weight': 'output_norm.weight',
    'lm_head.weight': 'output.weight',
  };
  if (global[hf]) return global[hf];
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hf);
  if (m && LAYER_NAMES[m[2]]) return `blk.${m[1]}.${LAYER_NAMES[m[2]]}`;
  return hf;
}

/**
 * llama.cpp's converter reorders each head's q/k rows from rotate-half to interleaved pairs
 * (HF row j·D/2 + i -> GGUF row 2i + j); this puts them back.
 */
function unpermuteRows(t: Tensor, heads: number): void {
  const [rows, cols] = t.shape;
  const d = rows / heads;
  const half = d / 2;
  const data = t.data();
  const copy = data.slice();
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const from = (h * d + 2 * i + j) * cols;
        const to = (h * d + j * half + i) * cols;
        data.set(copy.subarray(from, from + cols), to);
      }
}

class GGUFWeights implements WeightSource {
  constructor(
    private readonly f: GGUFFile,
    private readonly permuted: boolean,
    private readonly heads: number,
    private readonly kvHeads: number,
  ) {}

  has(name: string): boolean {
    return this.f.has(ggufName(name));
  }

  read(name: string, dtype: 'f32' | 'bf16'): Tensor {
    const t = this.f.read(ggufName(name), dtype);
    if (this.permuted && /self_attn\.[qk]_proj\.(weight|bias)$/.test(name)) {
      const heads = name.includes('q_proj') ? this.heads : this.kvHeads;
      if (t.shape.length === 1) {
        const v = t.reshape([t.shape[0], 1]);
        unpermuteRows(v, heads);
        v.dispose();
      } else unpermuteRows(t, heads);
    }
    return t;
  }
}

/** The model and tokenizer of a parsed GGUF file (read by path in Node, or from its bytes). */
export function modelFromGGUF(
  f: GGUFFile,
  dtype: WeightDType,
  quant?: QuantizeOptions,
  device: Device = 'cpu',
): { model: CausalLM; tokenizer: Tokenizer } {
  const raw = configFromGGUF(f);
  const config = parseModelConfig(raw, f.path);
  const tokenizer = Tokenizer.fromGGUF(f.metadata);
  // Only the llama architecture (and Mistral, converted as llama) has its q/k rows permuted.
  const permuted = f.get('general.architecture') === 'llama';
  const model = CausalLM.load(
    config,
    new GGUFWeights(f, permuted, config.numHeads, config.numKvHeads),
    dtype,
    quant,
    device,
  );
  return { model, tokenizer };
}
