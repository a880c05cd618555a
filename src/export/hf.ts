// A model (with an adapter merged in, optionally) as a Hugging Face folder that transformers loads:
// config.json, model.safetensors (sharded with model.safetensors.index.json past the shard size, as
// save_pretrained does), the tokenizer files and generation_config.json. From a GGUF base, config.json
// and the tokenizer files are synthesized from its metadata. The folder is built under a temporary
// name and renamed into place when complete.
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { readGGUF } from '../io/gguf.js';
import type { CausalLM } from '../models/llama.js';
import { configFromGGUF } from '../models/gguf-model.js';
import { hasQuantizedBase } from '../peft/merge.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { FLOAT_BYTES, floatBytes, writeFileAtomically, type FloatOut } from './streaming.js';
import { modelTensors, type ExportTensor } from './tensors.js';
import { hfTokenizerFromGGUF } from '../tokenizer/gguf-meta.js';

export type HFDType = 'float32' | 'bfloat16' | 'float16';

/** The dtype a string names, or undefined. */
export function hfDType(s: string | undefined): HFDType | undefined {
  return s === 'float32' || s === 'bfloat16' || s === 'float16' ? s : undefined;
}

const ST_DTYPE: Record<HFDType, FloatOut> = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' };

export interface HFExportOptions {
  /** Adapter to merge into the weights (null or absent: the model as it is). */
  adapter?: string | null;
  /** Storage type of every tensor (default: the source config's dtype when it is one of these, else float32). */
  dtype?: HFDType;
  /** Largest shard in bytes before the weights are split over several files (default 2 GB). */
  maxShardBytes?: number;
}

export interface HFExportReport {
  dir: string;
  files: string[];
  bytes: number;
  dtype: HFDType;
  warnings: string[];
}

/** The model's storage dtype as config.json states it (dtype in transformers 5, torch_dtype before). */
export function configDType(raw: Record<string, unknown>): HFDType | null {
  const d = raw.dtype ?? raw.torch_dtype;
  return d === 'float32' || d === 'bfloat16' || d === 'float16' ? d : null;
}

const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  'tokenizer.model',
  'generation_config.json',
];

const ARCHITECTURES: Record<string, string> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
};

/** Splits tensors into shards as huggingface_hub's split_state_dict_into_shards does. */
function shard(entries: { name: string; bytes: number }[], max: number): number[][] {
  const shards: number[][] = [];
  let cur: number[] = [];
  let size = 0;
  entries.forEach((e, i) => {
    if (e.bytes > max) {
      shards.push([i]);
      return;
    }
    if (size + e.bytes > max && cur.length > 0) {
      shards.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(i);
    size += e.bytes;
  });
  if (cur.length > 0) shards.push(cur);
  return shards;
}

/** Writes one safetensors file from tensors produced one at a time (header first: sizes are known). */
function writeShard(path: string, tensors: ExportTensor[], type: FloatOut): void {
  const entries: string[] = ['"__metadata__":{"format":"pt"}'];
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * FLOAT_BYTES[type];
    entries.push(
      `${JSON.stringify(t.name)}:{"dtype":"${type}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + bytes}]}`,
    );
    offset += bytes;
  }
  const json = new TextEncoder().encode(`{${entries.join(',')}}`);
  const header = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
  header.set(json);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(header.length), true);
  writeFileAtomically(path, (f) => {
    f.write(len);
    f.write(header);
    for (const t of tensors) {
      const v = t.read();
      try {
        f.write(floatBytes(v, type));
      } finally {
        v.dispose();
      }
    }
  });
}

/** GGUF metadata values for JSON: bigints as numbers, float32 values as the shortest decimal that reads back as them (1e-5, not 0.000009999999747). */
function jsonSafe(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(jsonSafe);
  if (typeof v === 'number' && !Number.isInteger(v) && Math.fround(v) === v)
    for (let p = 1; p <= 9; p++) {
      const d = Number(v.toPrecision(p));
      if (Math.fround(d) === v) return d;
    }
  return v;
}

/** The out folder must be new or empty: an export never mixes with or overwrites other files. */
export function checkOutDir(out: string): void {
  if (existsSync(out)) {
    if (!statSync(out).isDirectory()) throw new Error(`lorakit: --out ${out} exists and is not a folder.`);
    if (readdirSync(out).length > 0)
      throw new Error(`lorakit: --out ${out} already exists and is not empty; choose a new folder.`);
  }
}

/**
 * Writes the model as a Hugging Face folder at `out` (which must be new or empty). `source` is the
 * model's folder or .gguf file (LoadedModel.path), where config and tokenizer files come from.
 */
export async function exportHF(
  model: CausalLM,
  tokenizer: Tokenizer,
  source: string,
  out: string,
  opts: HFExportOptions = {},
): Promise<HFExportReport> {
  checkOutDir(out);
  const fromGGUF = statSync(source).isFile();
  const warnings: string[] = [];
  const { tensors, untied } = modelTensors(model, opts.adapter ?? null);
  // A quantized base is written as a dequantized 16-bit copy unless another dtype is asked for.
  const quantized = hasQuantizedBase(model);
  const dtype: HFDType =
    opts.dtype ?? (quantized ? 'bfloat16' : ((fromGGUF ? null : configDType(model.config.raw)) ?? 'float32'));
  if (!(dtype in ST_DTYPE))
    throw new Error(`lorakit: unknown dtype '${String(dtype)}' (choose float32, bfloat16 or float16).`);
  const type = ST_DTYPE[dtype];
  const maxShard = opts.maxShardBytes ?? 2_000_000_000;

  // Config and tokenizer files: copied from a folder, synthesized from a GGUF file.
  let config: Record<string, unknown>;
  const extraFiles: Record<string, string> = {};
  const copies: string[] = [];
  if (fromGGUF) {
    const f = await readGGUF(source);
    config = Object.fromEntries(Object.entries(configFromGGUF(f)).map(([k, v]) => [k, jsonSafe(v)]));
    const { tokenizer: tj, config: tc } = hfTokenizerFromGGUF(f.metadata, tokenizer);
    extraFiles['tokenizer.json'] = JSON.stringify(tj);
    extraFiles['tokenizer_config.json'] = JSON.stringify(tc, null, 2);
    const gen: Record<string, unknown> = { _from_model_config: true };
    if (tokenizer.bosId !== null) gen.bos_token_id = tokenizer.bosId;
    if (tokenizer.eosIds.length > 0)
      gen.eos_token_id = tokenizer.eosIds.length === 1 ? tokenizer.eosIds[0] : tokenizer.eosIds;
    extraFiles['generation_config.json'] = JSON.stringify(gen, null, 2);
  } else {
    config = { ...model.config.raw };
    delete config.quantization_config; // the weights written are dense
    for (const name of TOKENIZER_FILES) if (existsSync(join(source, name))) copies.push(name);
    if (!copies.includes('tokenizer.json'))
      warnings.push(`${source} has no tokenizer.json; the folder has no tokenizer.`);
  }
  if (!Array.isArray(config.architectures)) config.architectures = [ARCHITECTURES[model.config.modelType]];
  config.dtype = dtype;
  if ('torch_dtype' in config) config.torch_dtype = dtype;
  config.tie_word_embeddings = !untied;

  // Weights, sharded like save_pretrained.
  const elemBytes = FLOAT_BYTES[type];
  const sizes = tensors.map((t) => ({ name: t.name, bytes: t.shape.reduce((a, b) => a * b, 1) * elemBytes }));
  const shards = shard(sizes, maxShard);
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const files: string[] = [];
  try {
    if (shards.length === 1) {
      writeShard(join(tmp, 'model.safetensors'), tensors, type);
      files.push('model.safetensors');
    } else {
      const weightMap: Record<string, string> = {};
      const n = String(shards.length).padStart(5, '0');
      shards.forEach((idx, s) => {
        const file = `model-${String(s + 1).padStart(5, '0')}-of-${n}.safetensors`;
        writeShard(
          join(tmp, file),
          idx.map((i) => tensors[i]),
          type,
        );
        for (const i of idx) weightMap[tensors[i].name] = file;
        files.push(file);
      });
      const totalSize = sizes.reduce((a, e) => a + e.bytes, 0);
      const totalParameters = tensors.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
      writeFileSync(
        join(tmp, 'model.safetensors.index.json'),
        `${JSON.stringify({ metadata: { total_parameters: totalParameters, total_size: totalSize }, weight_map: weightMap }, null, 2)}\n`,
      );
      files.push('model.safetensors.index.json');
    }
    writeFileSync(join(tmp, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    files.push('config.json');
    for (const name of copies) {
      copyFileSync(join(source, name), join(tmp, name));
      files.push(name);
    }
    for (const [name, text] of Object.entries(extraFiles)) {
      writeFileSync(join(tmp, name), `${text}\n`);
      files.push(name);
    }
    if (existsSync(out)) rmSync(out, { recursive: true }); // empty, checked above
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const bytes = files.reduce((a, f) => a + statSync(join(out, f)).size, 0);
  return { dir: out, files: files.sort(), bytes, dtype, warnings };
}
