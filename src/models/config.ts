import { oneLine, quoteValue } from '../io/quote.js';

/** The Llama-family decoder shape, read from a Hugging Face config.json (v4 or v5 style). */
export interface ModelConfig {
  /** config.json model_type: llama (Llama 2/3/3.x, SmolLM, TinyLlama), mistral, qwen2, qwen3. */
  modelType: ModelType;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (Qwen2, or Llama's attention_bias). */
  attentionBias: boolean;
  /** o_proj carries a bias too (Llama's attention_bias covers all four). */
  outputBias: boolean;
  mlpBias: boolean;
  /** Qwen3: RMSNorm over each head of q and k before RoPE. */
  qkNorm: boolean;
  /** Mistral's sliding window, if any: sequences longer than this are refused. */
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** The raw config.json object: RoPE parameters are parsed from it by ops/rope. */
  raw: Record<string, unknown>;
}

export type ModelType = 'llama' | 'mistral' | 'qwen2' | 'qwen3';
const SUPPORTED: readonly ModelType[] = ['llama', 'mistral', 'qwen2', 'qwen3'];

function isModelType(s: string): s is ModelType {
  return (SUPPORTED as readonly string[]).includes(s);
}

/** A ModelConfig from config.json's text; `path` names the file in messages. */
export function modelConfigFromJSON(text: string, path: string): ModelConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw notReadable(path, e);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new Error(`lorakit: ${path}: expected a JSON object.`);
  return parseModelConfig(raw as Record<string, unknown>, path);
}

/** The error for a config.json that cannot be read or parsed. */
export function notReadable(path: string, e: unknown): Error {
  return new Error(
    `lorakit: ${path}: not a readable JSON file (${oneLine(e instanceof Error ? e.message : String(e))}).`,
  );
}

export function parseModelConfig(raw: Record<string, unknown>, source = 'config.json'): ModelConfig {
  // Composite configs (e.g. a text_config inside) are not Llama-family decoders we can train here.
  const modelType = typeof raw.model_type === 'string' ? raw.model_type : '';
  if (!isModelType(modelType))
    throw new Error(
      `lorakit: ${source}: unsupported model_type ${quoteValue(raw.model_type ?? '')} (supported: ${SUPPORTED.join(', ')}).`,
    );
  const num = (key: string, fallback?: number): number => {
    const v = raw[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new Error(`lorakit: ${source}: missing required field '${key}'.`);
    }
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new Error(`lorakit: ${source}: field '${key}' must be a number, got ${quoteValue(v)}.`);
    return v;
  };
  // Sizes and counts: a 0 or a fraction here would only fail later, far from its cause.
  const count = (key: string, fallback?: number): number => {
    const v = num(key, fallback);
    if (!Number.isSafeInteger(v) || v < 1)
      throw new Error(`lorakit: ${source}: field '${key}' must be a positive integer, got ${v}.`);
    return v;
  };
  const act = raw.hidden_act ?? raw.hidden_activation ?? 'silu';
  if (act !== 'silu')
    throw new Error(`lorakit: ${source}: unsupported hidden_act ${quoteValue(act)} (only silu).`);
  const hiddenSize = count('hidden_size');
  const numHeads = count('num_attention_heads');
  const numKvHeads = count('num_key_value_heads', numHeads);
  if (raw.head_dim === undefined || raw.head_dim === null) {
    if (hiddenSize % numHeads !== 0)
      throw new Error(
        `lorakit: ${source}: hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}, and there is no head_dim.`,
      );
  }
  const headDim = count('head_dim', hiddenSize / numHeads);
  if (headDim % 2 !== 0)
    throw new Error(`lorakit: ${source}: head_dim ${headDim} must be even (RoPE rotates pairs).`);
  if (numHeads % numKvHeads !== 0)
    throw new Error(
      `lorakit: ${source}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}.`,
    );
  const rmsNormEps = num('rms_norm_eps', 1e-6);
  if (rmsNormEps < 0)
    throw new Error(`lorakit: ${source}: field 'rms_norm_eps' must not be negative, got ${rmsNormEps}.`);
  const attnBiasFlag = raw.attention_bias === true;
  const eos = raw.eos_token_id;
  const eosTokenIds = Array.isArray(eos) ? eos.map(Number) : typeof eos === 'number' ? [eos] : [];
  const useSliding = modelType === 'mistral' ? true : raw.use_sliding_window === true;
  const window = typeof raw.sliding_window === 'number' && useSliding ? raw.sliding_window : null;
  return {
    modelType,
    vocabSize: count('vocab_size'),
    hiddenSize,
    intermediateSize: count('intermediate_size'),
    numLayers: count('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps,
    maxPositionEmbeddings: count('max_position_embeddings', 2048),
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    attentionBias: modelType === 'qwen2' || attnBiasFlag,
    outputBias: modelType !== 'qwen2' && attnBiasFlag,
    mlpBias: raw.mlp_bias === true,
    qkNorm: modelType === 'qwen3',
    slidingWindow: window,
    bosTokenId: typeof raw.bos_token_id === 'number' ? raw.bos_token_id : null,
    eosTokenIds,
    raw,
  };
}
