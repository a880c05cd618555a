// PEFT adapter folders by path (Node): saving (each file written to a temporary name, then renamed)
// and loading. What goes in the files is peft-files.ts, which a browser uses with the files' bytes;
// adding and selecting adapters is inject.ts.
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSafetensors, writeSafetensors } from '../io/safetensors.js';
import type { CausalLM } from '../models/llama.js';
import { readPeftConfig, type LoraConfig } from './config.js';
import { addAdapterFrom } from './inject.js';
import {
  ADAPTER_CONFIG,
  ADAPTER_METADATA,
  ADAPTER_WEIGHTS,
  adapterConfigText,
  withAdapterTensors,
} from './peft-files.js';

export * from './inject.js';
export * from './peft-files.js';

/** Writes the adapter in PEFT's format; files appear complete or not at all. */
export async function saveAdapter(model: CausalLM, name: string, dir: string): Promise<void> {
  const config = adapterConfigText(model, name);
  mkdirSync(dir, { recursive: true });
  await withAdapterTensors(model, name, (tensors) =>
    writeSafetensors(join(dir, ADAPTER_WEIGHTS), tensors, ADAPTER_METADATA),
  );
  const tmp = join(dir, `${ADAPTER_CONFIG}.tmp`);
  writeFileSync(tmp, config);
  renameSync(tmp, join(dir, ADAPTER_CONFIG));
}

/** Loads a PEFT adapter folder as adapter `name`, refusing one made for another base model. */
export function loadAdapter(model: CausalLM, dir: string, name = 'default'): LoraConfig {
  const configPath = join(dir, ADAPTER_CONFIG);
  const weightsPath = join(dir, ADAPTER_WEIGHTS);
  for (const p of [configPath, weightsPath])
    if (!existsSync(p))
      throw new Error(`lorakit: ${dir} is not a PEFT adapter folder (missing ${p.slice(dir.length + 1)}).`);
  const config = readPeftConfig(configPath);
  const file = openSafetensors(weightsPath);
  try {
    addAdapterFrom(model, name, config, file, weightsPath);
  } finally {
    file.close();
  }
  return config;
}
