// A model (with an adapter merged in, optionally) as a GGUF v3 file that llama.cpp loads: its
// architecture metadata, the tokenizer, and the weights in F16, Q8_0 or Q4_0 (F32 also), named and laid
// out as llama.cpp's convert_hf_to_gguf.py writes them — including the q/k row permutation it applies
// to the llama architecture.
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import { readGGUF, type GGUFFile } from '../io/gguf.js';
import type { CausalLM } from '../models/llama.js';
import { ggufName } from '../models/gguf-model.js';
import { parseRopeConfig } from '../ops/rope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import type { GGUFKV } from '../io/gguf-kv.js';
import { writeGGUF, type GGMLOut, type GGUFTensorSpec } from './gguf-writer.js';
import { encodeF16, quantizeQ4_0, quantizeQ8_0 } from './quantize.js';
import { writeFileAtomically } from './streaming.js';
import { modelTensors } from './tensors.js';
import { ggufTokenizerFromGGUF, ggufTokenizerFromHF } from '../tokenizer/gguf-meta.js';

export type GGUFQuant = 'f32' | 'f16' | 'q8_0' | 'q4_0';

/** The GGUF weight type a string names, or undefined. */
export function ggufQuant(s: string | undefined): GGUFQuant | undefined {
  return s === 'f32' || s === 'f16' || s === 'q8_0' || s === 'q4_0' ? s : undefined;
}

/** llama_ftype of each choice (general.file_type). */
const FILE_TYPE: Record<GGUFQuant, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7 };

export interface GGUFExportOptions {
  /** Adapter to merge into the weights (null or absent: the model as it is). */
  adapter?: string | null;
  /** Weight encoding of the matrices (default f16); norms and biases stay F32 as llama.cpp's converter keeps them. */
  quant?: GGUFQuant;
  /** general.name (default: from the source). */
  name?: string;
}

export interface ExportReport {
  path: string;
  bytes: number;
  tensors: number;
  warnings: string[];
}

/** The llama.cpp architecture name of a model type (Mistral is converted as llama, as llama.cpp does). */
export function ggufArch(model: CausalLM): 'llama' | 'qwen2' | 'qwen3' {
  const t = model.config.modelType;
  return t === 'mistral' ? 'llama' : t;
}

/** llama.cpp tensor name of a Hugging Face tensor name (gguf-model.ts's table plus the optional biases). */
export function ggufTensorName(hf: string): string {
  const extra: Record<string, string> = {
    'self_attn.o_proj.bias': 'attn_output.bias',
    'mlp.gate_proj.bias': 'ffn_gate.bias',
    'mlp.up_proj.bias': 'ffn_up.bias',
    'mlp.down_proj.bias': 'ffn_down.bias',
  };
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hf);
  if (m && extra[m[2]]) return `blk.${m[1]}.${extra[m[2]]}`;
  const g = ggufName(hf);
  if (g === hf) throw new Error(`lorakit: no GGUF name for tensor '${hf}'.`);
  return g;
}

/**
 * convert_hf_to_gguf's LlamaModel.permute on rows: each head's rows go from rotate-half order
 * (j·D/2 + i) to interleaved pairs (2i + j), llama.cpp's RoPE layout. `rows × cols` values.
 */
export function permuteRows(values: Float32Array, heads: number, cols: number): Float32Array {
  const rows = values.length / cols;
  const d = rows / heads;
  const half = d / 2;
  const out = new Float32Array(values.length);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const to = (h * d + 2 * i + j) * cols;
        const from = (h * d + j * half + i) * cols;
        out.set(values.subarray(from, from + cols), to);
      }
  return out;
}

/** convert_hf_to_gguf's Llama-3 rope_freqs: the per-frequency divisor of rope type llama3. */
function llama3RopeFactors(
  theta: number,
  dim: number,
  s: {
    factor?: number;
    lowFreqFactor?: number;
    highFreqFactor?: number;
    originalMaxPositionEmbeddings?: number;
  },
): Float32Array {
  const factor = s.factor ?? 8;
  const low = s.lowFreqFactor ?? 1;
  const high = s.highFreqFactor ?? 4;
  const old = s.originalMaxPositionEmbeddings ?? 8192;
  const lowWavelen = old / low;
  const highWavelen = old / high;
  const out = new Float32Array(dim / 2);
  for (let k = 0; k < dim / 2; k++) {
    // torch computes the frequencies in float32.
    const freq = Math.fround(1 / Math.fround(theta ** Math.fround((2 * k) / dim)));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[k] = 1;
    else if (wavelen > lowWavelen) out[k] = factor;
    else {
      const smooth = (old / wavelen - low) / (high - low);
      out[k] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return out;
}

/** Architecture metadata ({arch}.*) and any extra tensors (rope_freqs) for llama.cpp. */
export function archMetadata(
  model: CausalLM,
  warnings: string[],
): { kvs: GGUFKV[]; extra: { name: string; values: Float32Array }[] } {
  const c = model.config;
  const arch = ggufArch(model);
  const rope = parseRopeConfig(c.raw, c.headDim);
  const kvs: GGUFKV[] = [
    { key: `${arch}.vocab_size`, type: 'u32', value: c.vocabSize },
    { key: `${arch}.context_length`, type: 'u32', value: c.maxPositionEmbeddings },
    { key: `${arch}.embedding_length`, type: 'u32', value: c.hiddenSize },
    { key: `${arch}.block_count`, type: 'u32', value: c.numLayers },
    { key: `${arch}.feed_forward_length`, type: 'u32', value: c.intermediateSize },
    { key: `${arch}.attention.head_count`, type: 'u32', value: c.numHeads },
    { key: `${arch}.attention.head_count_kv`, type: 'u32', value: c.numKvHeads },
    { key: `${arch}.rope.freq_base`, type: 'f32', value: rope.theta },
    { key: `${arch}.attention.layer_norm_rms_epsilon`, type: 'f32', value: c.rmsNormEps },
    {
      key: `${arch}.rope.dimension_count`,
      type: 'u32',
      value: Math.round(c.headDim * (rope.partialRotaryFactor ?? 1)),
    },
  ];
  if (c.headDim * c.numHeads !== c.hiddenSize) {
    kvs.push({ key: `${arch}.attention.key_length`, type: 'u32', value: c.headDim });
    kvs.push({ key: `${arch}.attention.value_length`, type: 'u32', value: c.headDim });
  }
  const extra: { name: string; values: Float32Array }[] = [];
  const s = rope.scaling;
  if (s && s.type !== 'default') {
    if (s.type === 'linear') {
      kvs.push({ key: `${arch}.rope.scaling.type`, type: 'string', value: 'linear' });
      kvs.push({ key: `${arch}.rope.scaling.factor`, type: 'f32', value: s.factor ?? 1 });
    } else if (s.type === 'llama3') {
      extra.push({ name: 'rope_freqs.weight', values: llama3RopeFactors(rope.theta, c.headDim, s) });
    } else if (s.type === 'yarn') {
      kvs.push({ key: `${arch}.rope.scaling.type`, type: 'string', value: 'yarn' });
      kvs.push({ key: `${arch}.rope.scaling.factor`, type: 'f32', value: s.factor ?? 1 });
      if (s.originalMaxPositionEmbeddings !== undefined)
        kvs.push({
          key: `${arch}.rope.scaling.original_context_length`,
          type: 'u32',
          value: s.originalMaxPositionEmbeddings,
        });
    } else
      throw new Error(
        `lorakit: rope scaling '${s.type}' has no GGUF equivalent in llama.cpp; this model cannot be exported to GGUF.`,
      );
  }
  if (c.slidingWindow !== null)
    warnings.push(
      `llama.cpp's ${arch} architecture ignores the sliding window of ${c.slidingWindow} tokens.`,
    );
  return { kvs, extra };
}

/** The ggml type a 2-D weight gets for a choice (rows that do not fill whole blocks stay F16). */
function matrixType(quant: GGUFQuant, hfName: string, rowLen: number): GGMLOut {
  if (quant === 'f32') return 'F32';
  if (quant === 'f16' || rowLen % 32 !== 0) return 'F16';
  if (quant === 'q8_0') return 'Q8_0';
  // Q4_0: the embedding and output head keep 8 bits, as llama-quantize keeps them above the rest.
  return hfName === 'model.embed_tokens.weight' || hfName === 'lm_head.weight' ? 'Q8_0' : 'Q4_0';
}

function encode(values: Float32Array, type: GGMLOut): Uint8Array {
  switch (type) {
    case 'F32':
      return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    case 'F16':
      return encodeF16(values);
    case 'Q8_0':
      return quantizeQ8_0(values);
    case 'Q4_0':
      return quantizeQ4_0(values);
    case 'BF16':
      throw new Error('lorakit: BF16 GGUF output is not offered.');
  }
}

/** general.* and tokenizer.* metadata of the source (an HF folder or a .gguf file). */
async function sourceMetadata(
  source: string,
  tok: Tokenizer,
  model: CausalLM,
  warnings: string[],
): Promise<{ name: string; tokenizer: GGUFKV[] }> {
  if (statSync(source).isFile()) {
    const f: GGUFFile = await readGGUF(source);
    const n = f.get('general.name');
    return {
      name: typeof n === 'string' ? n : basename(source, '.gguf'),
      tokenizer: ggufTokenizerFromGGUF(f),
    };
  }
  const meta = ggufTokenizerFromHF(source, tok, model.config.vocabSize);
  warnings.push(...meta.warnings);
  const raw = model.config.raw._name_or_path;
  return {
    name: typeof raw === 'string' && raw !== '' ? basename(raw) : basename(source),
    tokenizer: meta.kvs,
  };
}

/**
 * Writes the model as one GGUF file at `out` (temporary name, then renamed). `source` is the model's
 * folder or .gguf file (LoadedModel.path): the tokenizer and name come from it.
 */
export async function exportGGUF(
  model: CausalLM,
  tokenizer: Tokenizer,
  source: string,
  out: string,
  opts: GGUFExportOptions = {},
): Promise<ExportReport> {
  const quant = opts.quant ?? 'f16';
  if (!(quant in FILE_TYPE))
    throw new Error(`lorakit: unknown GGUF weight type '${quant}' (choose f32, f16, q8_0 or q4_0).`);
  const warnings: string[] = [];
  const arch = ggufArch(model);
  const { kvs: archKvs, extra } = archMetadata(model, warnings);
  const src = await sourceMetadata(source, tokenizer, model, warnings);
  const kvs: GGUFKV[] = [
    { key: 'general.architecture', type: 'string', value: arch },
    { key: 'general.type', type: 'string', value: 'model' },
    { key: 'general.name', type: 'string', value: opts.name ?? src.name },
    ...archKvs,
    { key: 'general.file_type', type: 'u32', value: FILE_TYPE[quant] },
    { key: 'general.quantization_version', type: 'u32', value: 2 },
    ...src.tokenizer,
  ];
  const { tensors } = modelTensors(model, opts.adapter ?? null);
  const permute = arch === 'llama';
  const specs: GGUFTensorSpec[] = [];
  const producers: (() => Float32Array)[] = [];
  for (const t of tensors) {
    const name = ggufTensorName(t.name);
    const matrix = t.shape.length === 2;
    specs.push({ name, shape: t.shape, type: matrix ? matrixType(quant, t.name, t.shape[1]) : 'F32' });
    producers.push(() => {
      const v: Tensor = t.read();
      try {
        const values = v.as('f32');
        if (permute && /self_attn\.[qk]_proj\.(weight|bias)$/.test(t.name)) {
          const heads = t.name.includes('q_proj') ? model.config.numHeads : model.config.numKvHeads;
          return permuteRows(values, heads, matrix ? t.shape[1] : 1);
        }
        return values.slice();
      } finally {
        v.dispose();
      }
    });
  }
  for (const e of extra) {
    specs.push({ name: e.name, shape: [e.values.length], type: 'F32' });
    producers.push(() => e.values);
  }
  writeFileAtomically(out, (f) => writeGGUF(f, kvs, specs, (i) => encode(producers[i](), specs[i].type)));
  return { path: out, bytes: statSync(out).size, tensors: specs.length, warnings };
}
