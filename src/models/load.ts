// Loading a model and its tokenizer from a Hugging Face folder, a hub id, or a GGUF file.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { resolveModel } from '../io/hub.js';
import { openSafetensorsModel } from '../io/safetensors.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { readModelConfig } from './config.js';
import { CausalLM, type WeightDType } from './llama.js';
import { activationDType, prepareDevice } from '../backend/device.js';
import type { QuantType } from '../quant/weight.js';
import type { Device } from '../tensor/tensor.js';

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
  /** The local folder or file the model came from. */
  path: string;
}

/** The WeightDType a LoadOptions dtype means on a device (see LoadOptions.dtype for the defaults). */
export function weightDType(d: LoadOptions['dtype'], device: LoadOptions['device'] = 'cpu'): WeightDType {
  if (d === undefined) return activationDType(device) === 'bf16' ? 'bf16' : 'f32';
  return d === 'bfloat16' ? 'bf16' : 'f32';
}

/** Loads a model and its tokenizer; a model folder without tokenizer.json fails, in one sentence saying so. */
export async function loadModel(spec: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const loaded = await load(spec, opts, 'required');
  // 'required' has already refused a folder without a tokenizer, before reading any weights.
  return { ...loaded, tokenizer: loaded.tokenizer! };
}

/**
 * loadModel for work that may need no tokenizer (pre-tokenized {"input_ids"} rows): a model folder
 * without tokenizer.json gives tokenizer null, and what needs one fails where it does.
 */
export async function loadModelOptionalTokenizer(
  spec: string,
  opts: LoadOptions = {},
): Promise<LoadedModel<Tokenizer | null>> {
  return load(spec, opts, 'optional');
}

async function load(
  spec: string,
  opts: LoadOptions,
  tokenizerNeed: 'required' | 'optional',
): Promise<LoadedModel<Tokenizer | null>> {
  const device = opts.device ?? 'cpu';
  await prepareDevice(device); // fails here, before any download or read, when the device cannot run
  const path = await resolveModel(spec);
  if (statSync(path).isFile()) {
    if (!path.endsWith('.gguf'))
      throw new Error(
        `lorakit: --model ${spec}: a file must be a .gguf; otherwise pass a Hugging Face model folder.`,
      );
    const { loadGGUFModel } = await import('./gguf-model.js');
    // Each weight is quantized right after it is read, so the dense model never exists whole.
    const loaded = await loadGGUFModel(path, weightDType(opts.dtype, device), quantOptions(opts), device);
    return { ...loaded, path };
  }
  const configPath = join(path, 'config.json');
  if (!existsSync(configPath)) throw new Error(`lorakit: --model ${spec}: ${path} has no config.json.`);
  const config = readModelConfig(configPath);
  const tokenizerPath = join(path, 'tokenizer.json');
  const hasTokenizer = existsSync(tokenizerPath);
  if (!hasTokenizer && tokenizerNeed === 'required')
    throw new Error(
      `lorakit: --model ${spec}: ${path} has no tokenizer.json, which text data, generation, chat, serving and export need (pre-tokenized {"input_ids"} data works without one).`,
    );
  const tokenizer = hasTokenizer ? Tokenizer.fromFile(tokenizerPath) : null;
  const source = openSafetensorsModel(path);
  try {
    const model = CausalLM.load(config, source, weightDType(opts.dtype, device), quantOptions(opts), device);
    return { model, tokenizer, path };
  } finally {
    source.close();
  }
}
