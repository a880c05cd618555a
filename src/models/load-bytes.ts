// Loading a model and its tokenizer from files' bytes: what a browser has (a File, a Blob, a fetch)
// where Node reads a folder, a hub id or a path (models/load.ts, which shares the options here).
// Nothing here touches a file system, so the browser bundle (src/browser.ts) uses it as is.
import { activationDType, prepareDevice } from '../backend/device.js';
import { GGUFFile } from '../io/gguf-reader.js';
import { safetensorsModelFromBytes } from '../io/safetensors-reader.js';
import type { QuantType } from '../quant/weight.js';
import type { Device } from '../tensor/tensor.js';
import { Tokenizer, type TokenizerFiles } from '../tokenizer/tokenizer.js';
import { modelConfigFromJSON } from './config.js';
import { modelFromGGUF } from './gguf-model.js';
import { CausalLM, type WeightDType } from './llama.js';

export interface LoadOptions {
  /**
   * On the CPU and WebGPU, how the large matrices are stored: float32 (default) or bfloat16; compute
   * stays fp32.
   * On cuda, the dtype of the frozen weights and the activations alike: bfloat16 (default; tensor-core
   * GEMMs, fp32 accumulation) or float32 (exact fp32 math, about 2× the memory: the parity mode).
   */
  dtype?: 'float32' | 'bfloat16';
  device?: Device;
  /** QLoRA: store the decoder's linear weights as nf4, fp4 or int8 (bitsandbytes' formats). */
  quantize?: QuantType;
  /** Also quantize the 4-bit absmax constants (8-bit, blocks of 256): ≈4.13 instead of 4.5 bits a weight. */
  doubleQuant?: boolean;
  /** 4-bit block size (64). */
  quantBlocksize?: number;
}

/** The quantization LoadOptions ask for, or undefined. */
export function quantOptions(
  opts: LoadOptions,
): { type: QuantType; doubleQuant: boolean; blocksize?: number } | undefined {
  if (!opts.quantize) {
    if (opts.doubleQuant)
      throw new Error('lorakit: double quantization needs a 4-bit quantization (nf4 or fp4).');
    return undefined;
  }
  return { type: opts.quantize, doubleQuant: opts.doubleQuant === true, blocksize: opts.quantBlocksize };
}

/** A loaded model; from loadModelOptionalTokenizer the tokenizer may be null. */
export interface LoadedModel<T extends Tokenizer | null = Tokenizer> {
  model: CausalLM;
  tokenizer: T;
  /** The local folder or file the model came from (from bytes: the .gguf's name, or `name`). */
  path: string;
}

/** The WeightDType a LoadOptions dtype means on a device (see LoadOptions.dtype for the defaults). */
export function weightDType(d: LoadOptions['dtype'], device: LoadOptions['device'] = 'cpu'): WeightDType {
  if (d === undefined) return activationDType(device) === 'bf16' ? 'bf16' : 'f32';
  return d === 'bfloat16' ? 'bf16' : 'f32';
}

/**
 * A model's files by file name: one `name.gguf`, or a Hugging Face model folder's `config.json`,
 * `tokenizer.json` (with `tokenizer_config.json`, `generation_config.json` and `chat_template.jinja`
 * when it has them) and `model.safetensors` (or `model.safetensors.index.json` and the shards it
 * names).
 */
export type ModelFiles = Readonly<Record<string, Uint8Array>>;

export interface BytesLoadOptions extends LoadOptions {
  /** Names the model in messages and in LoadedModel.path (default: the .gguf's name, or 'model'). */
  name?: string;
}

/**
 * loadModel for files already in memory (a browser has no paths): a single .gguf, or the files of a
 * Hugging Face folder, by name (ModelFiles). Opens the device first, as loadModel does; a folder
 * without tokenizer.json fails in one sentence before any weight is read.
 */
export async function loadModelFromBytes(
  files: ModelFiles,
  opts: BytesLoadOptions = {},
): Promise<LoadedModel> {
  const loaded = await fromBytes(files, opts, 'required');
  return { ...loaded, tokenizer: loaded.tokenizer! };
}

/** loadModelFromBytes for work that needs no tokenizer: without tokenizer.json the tokenizer is null. */
export async function loadModelFromBytesOptionalTokenizer(
  files: ModelFiles,
  opts: BytesLoadOptions = {},
): Promise<LoadedModel<Tokenizer | null>> {
  return fromBytes(files, opts, 'optional');
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const utf8 = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

async function fromBytes(
  files: ModelFiles,
  opts: BytesLoadOptions,
  tokenizerNeed: 'required' | 'optional',
): Promise<LoadedModel<Tokenizer | null>> {
  const device = opts.device ?? 'cpu';
  await prepareDevice(device); // fails here, before any weight is read, when the device cannot run
  const names = Object.keys(files);
  const has = (name: string): boolean => Object.hasOwn(files, name);
  const ggufs = names.filter((n) => n.endsWith('.gguf'));
  const dtype = weightDType(opts.dtype, device);
  const quant = quantOptions(opts);
  if (ggufs.length > 0) {
    const others = names.filter((n) => n === 'config.json' || n.endsWith('.safetensors'));
    if (ggufs.length > 1 || others.length > 0)
      throw new Error(
        `lorakit: ${opts.name ?? 'model files'}: pass one .gguf file or a Hugging Face folder's files, not ${[...ggufs, ...others].join(', ')} together.`,
      );
    const path = opts.name ?? ggufs[0];
    const f = GGUFFile.fromBytes(files[ggufs[0]], path);
    return { ...modelFromGGUF(f, dtype, quant, device), path };
  }
  const dir = opts.name ?? 'model';
  if (!has('config.json'))
    throw new Error(
      `lorakit: ${dir}: has no config.json (pass a Hugging Face folder's files by name, or one .gguf file).`,
    );
  const config = modelConfigFromJSON(utf8(files['config.json']), `${dir}/config.json`);
  if (!has('tokenizer.json') && tokenizerNeed === 'required')
    throw new Error(
      `lorakit: ${dir}: has no tokenizer.json, which text data, generation, chat, serving and export need (pre-tokenized {"input_ids"} data works without one).`,
    );
  let tokenizer: Tokenizer | null = null;
  if (has('tokenizer.json')) {
    const texts: TokenizerFiles = { 'tokenizer.json': utf8(files['tokenizer.json']) };
    for (const name of ['tokenizer_config.json', 'generation_config.json', 'chat_template.jinja'] as const)
      if (has(name)) texts[name] = utf8(files[name]);
    tokenizer = Tokenizer.fromFiles(texts, dir);
  }
  const source = safetensorsModelFromBytes(files, dir);
  const model = CausalLM.load(config, source, dtype, quant, device);
  return { model, tokenizer, path: dir };
}

/** What readModelFiles takes: a File (from an <input type="file">, a drop) or anything like it. */
export interface NamedBlob {
  readonly name: string;
  arrayBuffer(): Promise<ArrayBuffer>;
}

/** ModelFiles from the Files a page was given (an <input type="file" multiple>, a drop), by their names. */
export async function readModelFiles(files: Iterable<NamedBlob>): Promise<Record<string, Uint8Array>> {
  const out: Record<string, Uint8Array> = {};
  for (const f of files) out[f.name] = new Uint8Array(await f.arrayBuffer());
  return out;
}

/** Files of a Hugging Face folder that are read when present. */
const OPTIONAL_FILES = ['tokenizer_config.json', 'generation_config.json', 'chat_template.jinja'];

/**
 * ModelFiles fetched from a URL: a `.gguf` file's, or a model folder's (its URL, ending in '/' or not;
 * config.json, tokenizer.json, the optional tokenizer files when present, and model.safetensors, or
 * model.safetensors.index.json and its shards). `init` is passed to every fetch (headers, credentials).
 */
export async function fetchModelFiles(
  url: string | URL,
  init?: RequestInit,
): Promise<Record<string, Uint8Array>> {
  let base: URL;
  try {
    base = new URL(url, (globalThis as { location?: { href: string } }).location?.href);
  } catch {
    throw new Error(`lorakit: fetchModelFiles: ${JSON.stringify(String(url))} is not a URL.`);
  }
  const get = async (name: string, optional = false): Promise<Uint8Array | null> => {
    const at = name === '' ? base : new URL(name, base);
    let res: Response;
    try {
      res = await fetch(at, init);
    } catch (e) {
      throw new Error(`lorakit: cannot fetch ${at.href} (${e instanceof Error ? e.message : String(e)}).`);
    }
    if (res.status === 404 && optional) return null;
    if (!res.ok)
      throw new Error(`lorakit: fetching ${at.href} failed: HTTP ${res.status} ${res.statusText}.`);
    return new Uint8Array(await res.arrayBuffer());
  };
  if (base.pathname.endsWith('.gguf')) {
    const name = decodeURIComponent(base.pathname.split('/').pop()!);
    return { [name]: (await get(''))! };
  }
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  const out: Record<string, Uint8Array> = {};
  const put = async (name: string, optional = false): Promise<boolean> => {
    const bytes = await get(name, optional);
    if (bytes) out[name] = bytes;
    return bytes !== null;
  };
  await put('config.json');
  await put('tokenizer.json', true);
  for (const name of OPTIONAL_FILES) await put(name, true);
  if (await put('model.safetensors', true)) return out;
  await put('model.safetensors.index.json');
  // An index that does not parse names no shards: safetensorsModelFromBytes then says what is wrong.
  let index: unknown = null;
  try {
    index = JSON.parse(new TextDecoder().decode(out['model.safetensors.index.json']));
  } catch {}
  const map = isObject(index) ? index.weight_map : undefined;
  const shards = new Set(isObject(map) ? Object.values(map).filter((s) => typeof s === 'string') : []);
  // Shards are files of the folder: a name that would reach elsewhere is refused, not fetched.
  for (const shard of shards)
    if (!/^[^/\\:?#]+(\/[^/\\:?#]+)*$/.test(shard) || shard.split('/').includes('..'))
      throw new Error(
        `lorakit: ${base.href}model.safetensors.index.json names a shard outside the folder: ${JSON.stringify(shard)}.`,
      );
  for (const shard of shards) await put(shard);
  return out;
}
