// Loading a model and its tokenizer from a Hugging Face folder, a hub id, or a GGUF file (Node: by
// path). From files' bytes, as a browser has them: load-bytes.ts, whose options these share.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { resolveModel } from '../io/hub.js';
import { openSafetensorsModel } from '../io/safetensors.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { modelConfigFromJSON, notReadable, type ModelConfig } from './config.js';
import { CausalLM } from './llama.js';
import { prepareDevice } from '../backend/device.js';
import { quantOptions, weightDType, type LoadedModel, type LoadOptions } from './load-bytes.js';

export { quantOptions, weightDType, type LoadedModel, type LoadOptions } from './load-bytes.js';

/** Reads a Hugging Face config.json. */
export function readModelConfig(path: string): ModelConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw notReadable(path, e);
  }
  return modelConfigFromJSON(text, path);
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
    const [{ modelFromGGUF }, { readGGUF }] = await Promise.all([
      import('./gguf-model.js'),
      import('../io/gguf.js'),
    ]);
    // Each weight is quantized right after it is read, so the dense model never exists whole.
    const f = await readGGUF(path);
    const loaded = modelFromGGUF(f, weightDType(opts.dtype, device), quantOptions(opts), device);
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
