// Checkpoints: the adapter, the optimizer state and the loop position in DIR/checkpoints/step-N, written
// atomically, checked before anything is loaded, and restored so a run continues exactly.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { oneLine, quoteValue } from '../io/quote.js';
import { openSafetensors, writeSafetensors } from '../io/safetensors.js';
import type { CausalLM } from '../models/llama.js';
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  adapterParameters,
  deleteAdapter,
  loadAdapter,
  saveAdapter,
} from '../peft/adapters.js';
import { readPeftConfig } from '../peft/config.js';
import { hostCopies, shapeString, type Tensor } from '../tensor/tensor.js';
import type { Optimizer } from './optimizer.js';

export const CHECKPOINT_STATE = 'trainer_state.json';

/** Where a run is: what trainer_state.json holds. */
export interface TrainerState {
  step: number;
  epoch: number;
  /** Index of the next batch within the epoch's batch list. */
  batchIndex: number;
  optimizerStep: number;
  elapsed: number;
  options: Record<string, unknown>;
}

/** Writes dir atomically: build in dir.tmp, then swap it in. */
export async function writeDirAtomically(
  dir: string,
  fill: (tmp: string) => void | Promise<void>,
): Promise<void> {
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  await fill(tmp);
  const old = `${dir}.old`;
  rmSync(old, { recursive: true, force: true });
  if (existsSync(dir)) renameSync(dir, old);
  renameSync(tmp, dir);
  rmSync(old, { recursive: true, force: true });
}

/** Writes checkpoint `dir` (adapter/, optimizer.safetensors, trainer_state.json with `options`). */
export async function saveCheckpoint(
  dir: string,
  model: CausalLM,
  adapter: string,
  optimizer: Optimizer,
  state: TrainerState,
  options: Record<string, unknown>,
): Promise<void> {
  return writeDirAtomically(dir, async (tmp) => {
    await saveAdapter(model, adapter, join(tmp, 'adapter'));
    const moments = await hostCopies(optimizer.state());
    try {
      writeSafetensors(join(tmp, 'optimizer.safetensors'), moments);
    } finally {
      for (const t of Object.values(moments)) t.dispose();
    }
    state.optimizerStep = optimizer.step;
    writeFileSync(join(tmp, CHECKPOINT_STATE), `${JSON.stringify({ ...state, options }, null, 2)}\n`);
  });
}

/**
 * Checks a checkpoint folder (checkpoints/step-N) without loading it: trainer_state.json with the
 * loop position, the adapter's config and weights, the optimizer state, each header validated. Run
 * before anything is written, so a bad --resume fails with nothing left behind.
 */
export function checkCheckpoint(dir: string): TrainerState {
  const fail = (what: string): never => {
    throw new Error(`lorakit: --resume ${dir}: ${what}`);
  };
  if (!existsSync(dir)) fail('no such folder.');
  if (!statSync(dir).isDirectory()) fail('is a file; give a checkpoint folder (DIR/checkpoints/step-N).');
  const statePath = join(dir, CHECKPOINT_STATE);
  if (!existsSync(statePath)) fail(`not a checkpoint folder (no ${CHECKPOINT_STATE}).`);
  let saved: unknown;
  try {
    saved = JSON.parse(readFileSync(statePath, 'utf8'));
  } catch (e) {
    fail(`${CHECKPOINT_STATE} is not valid JSON (${oneLine(e instanceof Error ? e.message : String(e))}).`);
  }
  if (saved === null || typeof saved !== 'object' || Array.isArray(saved))
    fail(`${CHECKPOINT_STATE} is not a JSON object.`);
  const st = saved as Record<string, unknown>;
  for (const key of ['step', 'epoch', 'batchIndex', 'optimizerStep'] as const)
    if (!Number.isSafeInteger(st[key]) || (st[key] as number) < 0)
      fail(`${CHECKPOINT_STATE} has no valid '${key}' (got ${quoteValue(st[key])}).`);
  if (typeof st.elapsed !== 'number' || !(st.elapsed >= 0))
    fail(`${CHECKPOINT_STATE} has no valid 'elapsed' (got ${quoteValue(st.elapsed)}).`);
  for (const p of [
    join('adapter', ADAPTER_CONFIG),
    join('adapter', ADAPTER_WEIGHTS),
    'optimizer.safetensors',
  ])
    if (!existsSync(join(dir, p))) fail(`the checkpoint lacks ${p}.`);
  readPeftConfig(join(dir, 'adapter', ADAPTER_CONFIG));
  openSafetensors(join(dir, 'adapter', ADAPTER_WEIGHTS)).close();
  openSafetensors(join(dir, 'optimizer.safetensors')).close();
  return st as unknown as TrainerState;
}

/** Loads a checkpoint: adapter weights, optimizer state and the loop position. */
export function restoreCheckpoint(
  model: CausalLM,
  adapter: string,
  optimizer: Optimizer,
  state: TrainerState,
  dir: string,
): void {
  const saved = checkCheckpoint(dir);
  // Replace the adapter's weights with the checkpoint's (loaded as a second adapter, then copied).
  const tmpName = `${adapter}__resume`;
  loadAdapter(model, join(dir, 'adapter'), tmpName);
  try {
    const src = new Map(adapterParameters(model, tmpName));
    for (const [key, t] of adapterParameters(model, adapter)) {
      const s = src.get(key);
      if (!s) throw new Error(`lorakit: --resume ${dir}: the checkpoint's adapter lacks '${key}'.`);
      if (s.shape.join() !== t.shape.join())
        throw new Error(
          `lorakit: --resume ${dir}: the checkpoint's '${key}' has shape ${shapeString(s.shape)}, this run's ${shapeString(t.shape)} (other --r or --target-modules?).`,
        );
      t.copyFrom(s);
    }
  } finally {
    deleteAdapter(model, tmpName);
    model.activeAdapter = adapter;
  }
  const file = openSafetensors(join(dir, 'optimizer.safetensors'));
  const tensors = new Map<string, Tensor>();
  try {
    for (const name of file.tensors.keys()) tensors.set(name, file.read(name, 'f32'));
    optimizer.loadState(tensors, saved.optimizerStep);
  } finally {
    for (const t of tensors.values()) t.dispose();
    file.close();
  }
  Object.assign(state, {
    step: saved.step,
    epoch: saved.epoch,
    batchIndex: saved.batchIndex,
    elapsed: saved.elapsed,
  });
}
