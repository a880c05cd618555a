// The training loop: data, epochs of shuffled batches, the schedule, and when to evaluate, checkpoint
// and stop. One step is step.ts; checkpoints are checkpoint.ts; metrics.jsonl is metrics-log.ts.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { clearTape } from '../autograd/tape.js';
import type { CausalLM } from '../models/llama.js';
import { adapterParameters, saveAdapter } from '../peft/adapters.js';
import { seededUniform } from '../peft/lora.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { memoryStats } from '../tensor/tensor.js';
import { packBatches, padBatch, type HostBatch } from './batching.js';
import { restoreCheckpoint, saveCheckpoint, writeDirAtomically, type TrainerState } from './checkpoint.js';
import { loadData, type ColumnMap, type Example } from './data.js';
import { evaluate, type EvalResult } from './evaluate.js';
import { appendMetrics, keepMetricsUpTo } from './metrics-log.js';
import { Optimizer, type OptimizerName } from './optimizer.js';
import { learningRate, type SchedulerName } from './schedule.js';
import { accumulateGradients, targetCount, tokenCount, updateWeights } from './step.js';

export interface TrainOptions {
  /** A data file (JSONL, JSON, CSV, TSV, Parquet) or examples already tokenized. */
  data: string | Example[];
  evalData?: string | Example[];
  /** Which columns of the data files to read (--text-column, ...); both files use the same. */
  columns?: ColumnMap;
  /** Output folder: adapter/, checkpoints/, metrics.jsonl. Without it nothing is written. */
  outDir?: string;
  /** The adapter to train (already added to the model). Default: the model's active adapter. */
  adapter?: string;
  epochs?: number;
  maxSteps?: number;
  batchSize?: number;
  gradAccum?: number;
  lr?: number;
  weightDecay?: number;
  optimizer?: OptimizerName;
  scheduler?: SchedulerName;
  warmupSteps?: number;
  warmupRatio?: number;
  maxGradNorm?: number;
  maxSeqLen?: number;
  packing?: boolean;
  completionOnly?: boolean;
  gradCheckpointing?: boolean;
  /** GPU: checkpointing with each layer's saved input kept in host memory (implies gradCheckpointing). */
  offloadCheckpoints?: boolean;
  seed?: number;
  evalEvery?: number;
  saveEvery?: number;
  /** A checkpoint folder (checkpoints/step-N) to continue from exactly. */
  resume?: string;
  /** Called after every optimizer step. */
  onStep?: (m: StepMetrics) => void;
  onEval?: (step: number, r: EvalResult) => void;
  /** Warnings (truncated rows, …); default: stderr. */
  onWarning?: (message: string) => void;
  /** Set to true (e.g. from a SIGINT handler) to stop after the current step with a checkpoint. */
  stopSignal?: { stop: boolean };
  /**
   * Called once the run is ready (data read, checkpoint restored), before anything is written to
   * outDir: a caller writing its own files there (the CLI's run.json) writes nothing for a run that
   * could not start.
   */
  onStart?: () => void;
}

export interface StepMetrics {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  lr: number;
  grad_norm: number;
  tokens: number;
  tokens_per_s: number;
  /** Native tensor memory in bytes (live, at the end of the step). */
  memory: number;
  elapsed: number;
}

export interface TrainResult {
  steps: number;
  finalLoss: number;
  evalLoss: number | null;
  stoppedEarly: boolean;
  adapterDir: string | null;
}

const DEFAULTS = {
  epochs: 1,
  batchSize: 4,
  gradAccum: 1,
  lr: 2e-4,
  weightDecay: 0,
  optimizer: 'adamw' as OptimizerName,
  scheduler: 'linear' as SchedulerName,
  maxGradNorm: 1.0,
  maxSeqLen: 1024,
  seed: 42,
};

/** Seeded Fisher–Yates permutation of 0..n-1. */
function permutation(n: number, seed: number): number[] {
  const r = seededUniform(seed);
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

function epochBatches(
  examples: Example[],
  epoch: number,
  o: Required<Pick<TrainOptions, 'seed' | 'batchSize' | 'maxSeqLen' | 'packing'>>,
): HostBatch[] {
  const order = permutation(examples.length, (o.seed * 1000003 + epoch) >>> 0).map((i) => examples[i]);
  if (o.packing) return packBatches(order, o.maxSeqLen, o.batchSize);
  const out: HostBatch[] = [];
  for (let i = 0; i < order.length; i += o.batchSize) out.push(padBatch(order.slice(i, i + o.batchSize)));
  return out;
}

async function resolveData(
  d: string | Example[],
  model: CausalLM,
  tokenizer: Tokenizer | null,
  o: { completionOnly: boolean; maxSeqLen: number; columns?: ColumnMap },
  warn: (m: string) => void,
): Promise<Example[]> {
  if (typeof d !== 'string') return d;
  const { completionOnly, maxSeqLen, columns } = o;
  const loaded = await loadData(d, tokenizer, {
    completionOnly,
    maxSeqLen,
    columns,
    vocabSize: model.config.vocabSize,
  });
  if (loaded.truncated > 0)
    warn(
      `lorakit: warning: ${loaded.truncated} of ${loaded.examples.length} rows of ${d} were longer than --max-seq-len ${maxSeqLen} and were cut.`,
    );
  return loaded.examples;
}

/** Trains the adapter. The tokenizer may be null when the data is pre-tokenized (or given as examples). */
export async function train(
  model: CausalLM,
  tokenizer: Tokenizer | null,
  options: TrainOptions,
): Promise<TrainResult> {
  const o = {
    ...DEFAULTS,
    ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
  } as TrainOptions & typeof DEFAULTS;
  const warn = o.onWarning ?? ((m: string) => process.stderr.write(`${m}\n`));
  const adapter = o.adapter ?? model.activeAdapter;
  if (!adapter)
    throw new Error('lorakit: train needs an adapter on the model (addAdapter or loadAdapter first).');
  model.activeAdapter = adapter;
  const packing = o.packing === true;
  const completionOnly = o.completionOnly === true;
  const dataOpts = { completionOnly, maxSeqLen: o.maxSeqLen, columns: o.columns };
  const trainSet = await resolveData(o.data, model, tokenizer, dataOpts, warn);
  const evalSet = o.evalData ? await resolveData(o.evalData, model, tokenizer, dataOpts, warn) : null;
  const batchOpts = { seed: o.seed, batchSize: o.batchSize, maxSeqLen: o.maxSeqLen, packing };
  const batchesPerEpoch = epochBatches(trainSet, 0, batchOpts).length;
  const stepsPerEpoch = Math.ceil(batchesPerEpoch / o.gradAccum);
  const totalSteps = o.maxSteps ?? o.epochs * stepsPerEpoch;
  if (!(totalSteps > 0)) throw new Error('lorakit: nothing to train: the data gives 0 steps.');
  const warmupSteps = o.warmupSteps ?? Math.ceil((o.warmupRatio ?? 0) * totalSteps);
  const schedule = { name: o.scheduler, baseLr: o.lr, warmupSteps, totalSteps };

  const params = adapterParameters(model, adapter);
  const optimizer = new Optimizer(params, { name: o.optimizer, weightDecay: o.weightDecay });
  const state: TrainerState = { step: 0, epoch: 0, batchIndex: 0, optimizerStep: 0, elapsed: 0, options: {} };
  try {
    if (o.resume) restoreCheckpoint(model, adapter, optimizer, state, o.resume);
  } catch (e) {
    optimizer.dispose();
    throw e;
  }
  o.onStart?.();

  const out = o.outDir ?? null;
  if (out) mkdirSync(out, { recursive: true });
  const metricsPath = out ? join(out, 'metrics.jsonl') : null;
  if (metricsPath && o.resume) keepMetricsUpTo(metricsPath, state.step);
  const start = Date.now() - state.elapsed * 1000;
  let batches = epochBatches(trainSet, state.epoch, batchOpts);
  let lastLoss = NaN;
  let lastEval: number | null = null;
  let stoppedEarly = false;

  const checkpoint = async (): Promise<void> => {
    if (!out) return;
    state.elapsed = (Date.now() - start) / 1000;
    await saveCheckpoint(
      join(out, 'checkpoints', `step-${state.step}`),
      model,
      adapter,
      optimizer,
      state,
      describe(o),
    );
  };
  const evaluation = async (): Promise<void> => {
    const r = await evaluate(model, evalSet!, o.batchSize);
    lastEval = r.loss;
    if (metricsPath)
      appendMetrics(metricsPath, { step: state.step, eval_loss: r.loss, eval_tokens: r.tokens });
    o.onEval?.(state.step, r);
  };
  const stepContext = () => ({
    adapter,
    seed: o.seed,
    step: state.step,
    checkpointing: o.gradCheckpointing === true || o.offloadCheckpoints === true,
    offloadCheckpoints: o.offloadCheckpoints === true,
  });

  try {
    while (state.step < totalSteps) {
      // Gather this step's micro-batches (crossing into the next epoch when one runs out).
      const micro: HostBatch[] = [];
      while (micro.length < o.gradAccum) {
        if (state.batchIndex >= batches.length) {
          if (micro.length > 0) break; // an epoch's last step may have fewer micro-batches
          state.epoch++;
          state.batchIndex = 0;
          batches = epochBatches(trainSet, state.epoch, batchOpts);
        }
        micro.push(batches[state.batchIndex++]);
      }
      if (micro.length === 0) continue;
      const stepStart = Date.now();
      const count = targetCount(micro);
      const sum = await accumulateGradients(model, micro, stepContext(), count);
      const lr = learningRate(schedule, state.step);
      const gradNorm = await updateWeights(
        optimizer,
        params.map(([, t]) => t),
        lr,
        o.maxGradNorm,
      );
      state.step++;
      lastLoss = count > 0 ? sum / count : NaN;
      const tokens = tokenCount(micro);
      const metrics: StepMetrics = {
        step: state.step,
        totalSteps,
        epoch: state.epoch,
        loss: lastLoss,
        lr,
        grad_norm: gradNorm,
        tokens,
        tokens_per_s: tokens / Math.max(1e-9, (Date.now() - stepStart) / 1000),
        memory: memoryStats(false, model.device).liveBytes,
        elapsed: (Date.now() - start) / 1000,
      };
      if (metricsPath) appendMetrics(metricsPath, metrics);
      o.onStep?.(metrics);
      if (evalSet && o.evalEvery && state.step % o.evalEvery === 0 && state.step < totalSteps)
        await evaluation();
      if (o.saveEvery && state.step % o.saveEvery === 0 && state.step < totalSteps) await checkpoint();
      // Let signal handlers run between steps (kernels are synchronous).
      await new Promise((r) => setImmediate(r));
      if (o.stopSignal?.stop) {
        stoppedEarly = true;
        await checkpoint();
        break;
      }
    }
    if (evalSet && !stoppedEarly) await evaluation();
    let adapterDir: string | null = null;
    if (out && !stoppedEarly) {
      adapterDir = join(out, 'adapter');
      await writeDirAtomically(adapterDir, (tmp) => saveAdapter(model, adapter, tmp));
    }
    return { steps: state.step, finalLoss: lastLoss, evalLoss: lastEval, stoppedEarly, adapterDir };
  } finally {
    clearTape();
    optimizer.zeroGrad();
    optimizer.dispose();
  }
}

function describe(o: TrainOptions): Record<string, unknown> {
  // Callbacks and the stop flag are not options worth recording.
  const { data, evalData, onStep: _s, onEval: _e, onWarning: _w, stopSignal: _x, onStart: _b, ...rest } = o;
  return {
    ...rest,
    data: typeof data === 'string' ? data : '<examples>',
    evalData: typeof evalData === 'string' ? evalData : undefined,
  };
}
