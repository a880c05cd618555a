// Loading a model and its tokenizer from a Hugging Face folder, a hub id, or a GGUF file.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { resolveModel } from '../io/hub.js';
import { openSafetensorsModel } from '../io/safetensors.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { readModelConfig } from './config.js';
import { CausalLM, type WeightDType } from './llama.js';

export interface LoadOptions {
  /** Storage of the large matrices: float32 or bfloat16 (compute stays fp32 on the CPU). */
  dtype?: 'float32' | 'bfloat16';
  device?: 'cpu' | 'cuda';
}

export interface LoadedModel {
  model: CausalLM;
  tokenizer: Tokenizer;
  /** The local folder or file the model came from. */
  path: string;
}

export function weightDType(d: LoadOptions['dtype']): WeightDType {
  return d === 'bfloat16' ? 'bf16' : 'f32';
}

export async function loadModel(spec: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  if (opts.device && opts.device !== 'cpu')
    throw new Error(`lorakit: --device ${opts.device} is not available in this build (the CUDA backend is not compiled); use --device cpu.`);
  const path = await resolveModel(spec);
  if (statSync(path).isFile()) {
    if (!path.endsWith('.gguf')) throw new Error(`lorakit: --model ${spec}: a file must be a .gguf; otherwise pass a Hugging Face model folder.`);
    const { loadGGUFModel } = await import('./gguf-model.js');
    return { ...(await loadGGUFModel(path, weightDType(opts.dtype))), path };
  }
  const configPath = join(path, 'config.json');
  if (!existsSync(configPath)) throw new Error(`lorakit: --model ${spec}: ${path} has no config.json.`);
  const config = readModelConfig(configPath);
  const tokenizerPath = join(path, 'tokenizer.json');
  if (!existsSync(tokenizerPath)) throw new Error(`lorakit: --model ${spec}: ${path} has no tokenizer.json.`);
  const tokenizer = Tokenizer.fromFile(tokenizerPath);
  const source = openSafetensorsModel(path);
  try {
    const model = CausalLM.load(config, source, weightDType(opts.dtype));
    return { model, tokenizer, path };
  } finally {
    source.close();
  }
}
