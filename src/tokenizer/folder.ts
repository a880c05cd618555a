// A tokenizer's files read from its folder by path (Node): tokenizer.json and, beside it, what is
// present of tokenizer_config.json, generation_config.json and chat_template.jinja. The browser bundle
// puts folder.browser.ts in its place (Tokenizer.fromFile cannot work there; fromFiles does).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { isObject, parseJSONText, type Json } from './json.js';

/** A tokenizer folder's files, parsed; `path` is the tokenizer.json that was read. */
export interface TokenizerFolder {
  path: string;
  tokenizer: Json;
  config?: Json;
  generation?: Json;
  chatTemplate?: string;
}

function readJSONFile(path: string): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`lorakit: cannot read ${path} (${e instanceof Error ? e.message : String(e)}).`);
  }
  return parseJSONText(text, path);
}

/**
 * Reads tokenizer.json at `path` and the files beside it that are present (chat_template.jinja only
 * when tokenizer_config.json has no chat_template, the only case it is used).
 */
export function readTokenizerFolder(path: string): TokenizerFolder {
  const dir = dirname(path);
  const folder: TokenizerFolder = { path, tokenizer: readJSONFile(path) };
  const cfgPath = join(dir, 'tokenizer_config.json');
  if (existsSync(cfgPath)) folder.config = readJSONFile(cfgPath);
  const genPath = join(dir, 'generation_config.json');
  if (existsSync(genPath)) folder.generation = readJSONFile(genPath);
  const jinjaPath = join(dir, 'chat_template.jinja');
  const configTemplate = isObject(folder.config) ? folder.config.chat_template : undefined;
  if (configTemplate == null && existsSync(jinjaPath)) folder.chatTemplate = readFileSync(jinjaPath, 'utf8');
  return folder;
}
