// PEFT's adapter_config.json read from a file (Node); the configuration itself is lora-config.ts.
import { readFileSync } from 'node:fs';
import { notReadable, peftConfigFromJSON, type LoraConfig } from './lora-config.js';

export * from './lora-config.js';

/**
 * Reads PEFT's adapter_config.json, refusing what we would silently get wrong. `text`, when given, is
 * the file's content already read (`path` then only names it in messages).
 */
export function readPeftConfig(path: string, text?: string): LoraConfig {
  let json: string;
  try {
    json = text ?? readFileSync(path, 'utf8');
  } catch (e) {
    throw notReadable(path, e);
  }
  return peftConfigFromJSON(json, path);
}
