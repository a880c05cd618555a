// Model injection: which linears an adapter targets, and adding, removing and selecting named
// adapters, fresh or with weights from a tensor source. Nothing here touches a file system (the
// browser bundle uses it); adapters.ts reads and writes PEFT folders by path.
import { quote } from '../io/quote.js';
import type { TensorSource } from '../io/safetensors-reader.js';
import type { CausalLM } from '../models/llama.js';
import type { Linear } from '../nn/linear.js';
import { shapeString, type Tensor } from '../tensor/tensor.js';
import { validateLoraConfig, type LoraConfig } from './lora-config.js';
import { LoraLinear } from './lora.js';
import { embeddingCopy, FullLinearCopy, SAVABLE_MODULES } from './modules-to-save.js';

/**
 * The linears a config targets, PEFT's rules: a name matches a module whose path equals it or ends
 * with '.' + name; 'all-linear' is every linear except the output head.
 */
export function targetLinears(model: CausalLM, config: LoraConfig): Linear[] {
  const all = model.linears();
  if (config.targetModules === 'all-linear') return all.filter((l) => l !== model.lmHead);
  const chosen = new Set<Linear>();
  for (const target of config.targetModules) {
    const hits = all.filter((l) => l.path === target || l.path.endsWith(`.${target}`));
    if (hits.length === 0) {
      const names = [...new Set(all.map((l) => l.name))].join(', ');
      throw new Error(
        `lorakit: target module '${target}' matches no layer of this model (its linear layers: ${names}).`,
      );
    }
    hits.forEach((l) => chosen.add(l));
  }
  return all.filter((l) => chosen.has(l));
}

function checkName(model: CausalLM, name: string, mustExist: boolean): void {
  if (!/^[A-Za-z0-9_.-]+$/.test(name))
    throw new Error(`lorakit: adapter name '${name}' may use only letters, digits, '_', '-' and '.'.`);
  const exists = model.adapterConfigs.has(name);
  if (mustExist && !exists)
    throw new Error(
      `lorakit: no adapter named '${name}' (have: ${[...model.adapterConfigs.keys()].join(', ') || 'none'}).`,
    );
  if (!mustExist && exists) throw new Error(`lorakit: an adapter named '${name}' already exists.`);
}

/** The configuration of adapter `name`, which must exist. */
export function adapterConfig(model: CausalLM, name: string): LoraConfig {
  checkName(model, name, true);
  return model.adapterConfigs.get(name)!;
}

/** Adds a freshly initialised adapter and makes it active. */
export function addAdapter(model: CausalLM, name: string, config: LoraConfig, seed = 0): void {
  checkName(model, name, false);
  validateLoraConfig(config);
  for (const m of config.modulesToSave)
    if (!(SAVABLE_MODULES as readonly string[]).includes(m))
      throw new Error(
        `lorakit: modules_to_save '${m}' is not supported (supported: ${SAVABLE_MODULES.join(', ')}).`,
      );
  const targets = targetLinears(model, config);
  if (config.modulesToSave.includes('lm_head') && targets.includes(model.lmHead))
    throw new Error('lorakit: lm_head cannot be both a LoRA target and in modules_to_save.');
  targets.forEach((l, i) =>
    l.adapters.set(name, LoraLinear.create(l, config, (seed * 7919 + i * 104729 + 1) >>> 0)),
  );
  if (config.modulesToSave.includes('lm_head'))
    model.lmHead.adapters.set(name, new FullLinearCopy(model.lmHead));
  if (config.modulesToSave.includes('embed_tokens'))
    model.embedCopies.set(name, embeddingCopy(model.embedTokens));
  model.adapterConfigs.set(name, config);
  model.activeAdapter = name;
}

export function deleteAdapter(model: CausalLM, name: string): void {
  checkName(model, name, true);
  for (const l of model.linears()) {
    l.adapters.get(name)?.dispose();
    l.adapters.delete(name);
  }
  model.embedCopies.get(name)?.dispose();
  model.embedCopies.delete(name);
  model.adapterConfigs.delete(name);
  if (model.activeAdapter === name) model.activeAdapter = null;
}

/** Selects the adapter forward passes use; null runs the base model alone. */
export function setActiveAdapter(model: CausalLM, name: string | null): void {
  if (name !== null) checkName(model, name, true);
  model.activeAdapter = name;
}

/** The adapter's trainable tensors under PEFT's saved key names. */
export function adapterParameters(model: CausalLM, name: string): [string, Tensor][] {
  checkName(model, name, true);
  const out: [string, Tensor][] = [];
  for (const l of model.linears()) {
    const a = l.adapters.get(name);
    if (a) for (const [key, t] of a.parameters()) out.push([`base_model.model.${l.path}.${key}`, t]);
  }
  const embed = model.embedCopies.get(name);
  if (embed) out.push(['base_model.model.model.embed_tokens.weight', embed]);
  return out;
}

/**
 * Refuses, from the file's header alone, weights whose rank is not the config's: the adapter's
 * tensors are allocated at the config's r before any weight is read, so a config claiming a huge r
 * must not get that far. lora_A is [r, in] and lora_B [out, r] (PEFT's layout).
 */
function checkRanks(config: LoraConfig, file: TensorSource, where: string): void {
  let factors = 0;
  for (const [key, info] of file.tensors) {
    const axis = /\.lora_A(\.[^.]+)?\.weight$/.test(key)
      ? 0
      : /\.lora_B(\.[^.]+)?\.weight$/.test(key)
        ? 1
        : -1;
    if (axis < 0) continue;
    factors++;
    if (info.shape.length !== 2 || info.shape[axis] !== config.r)
      throw new Error(
        `lorakit: ${where}: ${quote(key)} has shape ${shapeString(info.shape)}, which is not rank ${config.r} as adapter_config.json's r says.`,
      );
  }
  if (factors === 0) throw new Error(`lorakit: ${where}: holds no lora_A or lora_B tensors.`);
}

/**
 * Adds adapter `name` with `config` and the weights `file` holds (`where` names it in messages),
 * refusing tensors that belong to no targeted layer and shapes of another base model.
 */
export function addAdapterFrom(
  model: CausalLM,
  name: string,
  config: LoraConfig,
  file: TensorSource,
  where: string,
): void {
  checkRanks(config, file, where);
  addAdapter(model, name, config);
  try {
    const expected = new Map(adapterParameters(model, name));
    for (const key of file.tensors.keys()) {
      // PEFT may save keys with the adapter name (".default.") in older formats: normalise it away.
      const norm = key.replace(/\.(lora_[AB])\.[^.]+\.weight$/, '.$1.weight');
      const target = expected.get(key) ?? expected.get(norm);
      if (!target)
        throw new Error(
          `lorakit: ${where}: tensor ${quote(key)} does not belong to any targeted layer of this model.`,
        );
      const src = file.read(key, 'f32');
      try {
        if (src.shape.join() !== target.shape.join())
          throw new Error(
            `lorakit: ${where}: ${quote(key)} has shape ${shapeString(src.shape)}, this model needs ${shapeString(target.shape)} (adapter made for another base model?).`,
          );
        target.copyFrom(src);
      } finally {
        src.dispose();
      }
      expected.delete(target === expected.get(key) ? key : norm);
    }
    if (expected.size > 0)
      throw new Error(
        `lorakit: ${where}: missing ${expected.size} tensors, e.g. ${quote([...expected.keys()][0])}.`,
      );
  } catch (e) {
    deleteAdapter(model, name);
    throw e;
  }
}
