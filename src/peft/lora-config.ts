// A LoRA adapter's configuration: defaults, validation and PEFT's adapter_config.json, as text (this
// module reads no file, so a browser uses it; config.ts reads the file in Node).
import { oneLine, quote, quoteValue } from '../io/quote.js';

/** A LoRA adapter's configuration, validated once; mirrors PEFT's LoraConfig fields we support. */
export interface LoraConfig {
  r: number;
  alpha: number;
  dropout: number;
  /** Module names (q_proj, …) or 'all-linear' (every linear layer but the output head). */
  targetModules: string[] | 'all-linear';
  /** rsLoRA: scale alpha/√r instead of alpha/r. */
  useRslora: boolean;
  /** DoRA: also train a per-output magnitude vector. */
  useDora: boolean;
  /** Whole modules trained and saved in full (embed_tokens, lm_head). */
  modulesToSave: string[];
  /** PEFT's init_lora_weights: true (Kaiming-uniform A, zero B) or 'gaussian' (A ~ N(0, 1/r)). */
  init: 'kaiming' | 'gaussian';
  baseModel: string | null;
}

export const LORA_DEFAULTS: LoraConfig = {
  r: 16,
  alpha: 32,
  dropout: 0.05,
  targetModules: 'all-linear',
  useRslora: false,
  useDora: false,
  modulesToSave: [],
  init: 'kaiming',
  baseModel: null,
};

/** The factor applied to B·A·x. */
export function loraScale(c: LoraConfig): number {
  return c.useRslora ? c.alpha / Math.sqrt(c.r) : c.alpha / c.r;
}

/** Checks ranges once; `where` names the flag/file for the message. */
export function validateLoraConfig(c: LoraConfig, where = 'LoRA config'): LoraConfig {
  const fail = (msg: string): never => {
    throw new Error(`lorakit: ${where}: ${msg}`);
  };
  if (!Number.isInteger(c.r) || c.r < 1) fail(`r must be a positive integer, got ${c.r}.`);
  if (!Number.isFinite(c.alpha) || c.alpha <= 0) fail(`alpha must be a positive number, got ${c.alpha}.`);
  if (!(c.dropout >= 0 && c.dropout < 1)) fail(`dropout must be in [0, 1), got ${c.dropout}.`);
  if (c.targetModules !== 'all-linear' && c.targetModules.length === 0)
    fail('target modules must not be empty.');
  return c;
}

/** PEFT's adapter_config.json for this config. */
export function toPeftJson(c: LoraConfig): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: c.baseModel,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: c.init === 'gaussian' ? 'gaussian' : true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: c.alpha,
    lora_dropout: c.dropout,
    modules_to_save: c.modulesToSave.length ? c.modulesToSave : null,
    peft_type: 'LORA',
    r: c.r,
    rank_pattern: {},
    revision: null,
    target_modules: c.targetModules === 'all-linear' ? 'all-linear' : [...c.targetModules].sort(),
    task_type: 'CAUSAL_LM',
    use_dora: c.useDora,
    use_rslora: c.useRslora,
  };
}

/** The error for an adapter_config.json that cannot be read or parsed. */
export function notReadable(path: string, e: unknown): Error {
  return new Error(
    `lorakit: ${path}: not a readable JSON file (${oneLine(e instanceof Error ? e.message : String(e))}).`,
  );
}

/**
 * PEFT's adapter_config.json from its text, refusing what we would silently get wrong; `path` names
 * the file in messages.
 */
export function peftConfigFromJSON(text: string, path: string): LoraConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw notReadable(path, e);
  }
  const fail = (msg: string): never => {
    throw new Error(`lorakit: ${path}: ${msg}`);
  };
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    fail('expected a JSON object (PEFT adapter_config.json).');
  const raw = parsed as Record<string, unknown>;
  if (raw.peft_type !== undefined && raw.peft_type !== 'LORA')
    fail(`peft_type ${quoteValue(raw.peft_type)} is not LORA.`);
  if (raw.bias !== undefined && raw.bias !== 'none')
    fail(`bias ${quoteValue(raw.bias)} is not supported (only 'none').`);
  if (raw.fan_in_fan_out === true) fail('fan_in_fan_out adapters (GPT-2 Conv1D) are not supported.');
  for (const key of ['rank_pattern', 'alpha_pattern'] as const) {
    const v = raw[key];
    if (v && typeof v === 'object' && Object.keys(v).length > 0) fail(`${key} is not supported.`);
  }
  // Options that change what the adapter computes: refuse them rather than load something else.
  for (const key of [
    'layers_to_transform',
    'exclude_modules',
    'layer_replication',
    'target_parameters',
    'trainable_token_indices',
    'alora_invocation_tokens',
    'arrow_config',
    'use_bdlora',
    'velora_config',
  ] as const) {
    const v = raw[key];
    if (v !== undefined && v !== null && v !== false) fail(`${key} is not supported.`);
  }
  for (const key of ['lora_bias', 'use_qalora'] as const)
    if (raw[key] === true) fail(`${key} is not supported.`);
  const tm = raw.target_modules;
  let targetModules: LoraConfig['targetModules'];
  if (tm === 'all-linear') targetModules = 'all-linear';
  else if (Array.isArray(tm) && tm.every((x) => typeof x === 'string')) targetModules = tm as string[];
  else if (typeof tm === 'string')
    fail(`target_modules as a regular expression (${quote(tm)}) is not supported; list module names.`);
  else fail('target_modules is missing.');
  const init = raw.init_lora_weights;
  const mts = raw.modules_to_save;
  if (mts !== undefined && mts !== null && !(Array.isArray(mts) && mts.every((x) => typeof x === 'string')))
    fail(`modules_to_save must be a list of module names, got ${quoteValue(mts)}.`);
  // Numbers must be JSON numbers: Number() would turn [16] or "16" into 16.
  const num = (key: string, fallback?: number): number => {
    const v = raw[key];
    if ((v === undefined || v === null) && fallback !== undefined) return fallback;
    if (typeof v !== 'number') fail(`${key} must be a number, got ${quoteValue(v)}.`);
    return v as number;
  };
  return validateLoraConfig(
    {
      r: num('r'),
      alpha: num('lora_alpha', 8),
      dropout: num('lora_dropout', 0),
      targetModules: targetModules!,
      useRslora: raw.use_rslora === true,
      useDora: raw.use_dora === true,
      modulesToSave: Array.isArray(mts) ? (mts as string[]) : [],
      init: init === 'gaussian' ? 'gaussian' : 'kaiming',
      baseModel: typeof raw.base_model_name_or_path === 'string' ? raw.base_model_name_or_path : null,
    },
    path,
  );
}
