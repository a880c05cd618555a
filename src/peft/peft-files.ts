// An adapter as PEFT's two files, in memory: adapter_config.json's text and adapter_model.safetensors'
// bytes, made from the model and read back into it. adapters.ts writes and reads the same files by
// path (Node); a browser offers these as downloads and takes them from a File.
import { SafetensorsFile } from '../io/safetensors-reader.js';
import { safetensorsBytes } from '../io/safetensors-writer.js';
import type { CausalLM } from '../models/llama.js';
import { hostCopies, type Tensor } from '../tensor/tensor.js';
import { adapterConfig, adapterParameters, addAdapterFrom } from './inject.js';
import { peftConfigFromJSON, toPeftJson, type LoraConfig } from './lora-config.js';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

/** The header metadata PEFT's save_pretrained writes (safetensors' torch format marker). */
export const ADAPTER_METADATA: Readonly<Record<string, string>> = { format: 'pt' };

/** A PEFT adapter's files by name: the config's JSON text and the weights' bytes. */
export interface AdapterFiles {
  [ADAPTER_CONFIG]: string;
  [ADAPTER_WEIGHTS]: Uint8Array;
}

/** adapter_config.json of adapter `name`, as PEFT writes it. */
export function adapterConfigText(model: CausalLM, name: string): string {
  return `${JSON.stringify(toPeftJson(adapterConfig(model, name)), null, 2)}\n`;
}

/**
 * Calls `use` with host copies of the adapter's tensors under PEFT's key names (read asynchronously
 * from a device that needs it, such as WebGPU), then frees them.
 */
export async function withAdapterTensors<T>(
  model: CausalLM,
  name: string,
  use: (tensors: Readonly<Record<string, Tensor>>) => T,
): Promise<T> {
  const tensors = await hostCopies(Object.fromEntries(adapterParameters(model, name)));
  try {
    return use(tensors);
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
}

/** Adapter `name` as PEFT's files, the bytes saveAdapter writes. */
export async function adapterFiles(model: CausalLM, name: string): Promise<AdapterFiles> {
  const config = adapterConfigText(model, name);
  const weights = await withAdapterTensors(model, name, (t) => safetensorsBytes(t, ADAPTER_METADATA));
  return { [ADAPTER_CONFIG]: config, [ADAPTER_WEIGHTS]: weights };
}

/** What adapterFromFiles takes: the config as text or UTF-8 bytes (a File's), and the weights' bytes. */
export interface AdapterFileContents {
  [ADAPTER_CONFIG]: string | Uint8Array;
  [ADAPTER_WEIGHTS]: Uint8Array;
}

/** loadAdapter for PEFT files already in memory: adds them as adapter `name`, refusing another base model's. */
export function adapterFromFiles(model: CausalLM, files: AdapterFileContents, name = 'default'): LoraConfig {
  const text = files[ADAPTER_CONFIG];
  const weights = files[ADAPTER_WEIGHTS];
  for (const [file, v] of [
    [ADAPTER_CONFIG, text],
    [ADAPTER_WEIGHTS, weights],
  ] as const)
    if (v === undefined) throw new Error(`lorakit: the adapter's files lack ${file}.`);
  const config = peftConfigFromJSON(
    typeof text === 'string' ? text : new TextDecoder().decode(text),
    ADAPTER_CONFIG,
  );
  const file = SafetensorsFile.fromBytes(weights, ADAPTER_WEIGHTS);
  addAdapterFrom(model, name, config, file, ADAPTER_WEIGHTS);
  return config;
}
