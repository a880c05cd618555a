import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isMap, isNode, isScalar, LineCounter, parseDocument } from 'yaml';
import { loadModelOptionalTokenizer } from '../models/load.js';
import { LORA_DEFAULTS, type LoraConfig } from '../peft/config.js';
import { addAdapter, loadAdapter } from '../peft/adapters.js';
import { evaluate } from '../train/evaluate.js';
import { loadData } from '../train/data.js';
import { checkCheckpoint } from '../train/checkpoint.js';
import { train, type StepMetrics } from '../train/trainer.js';
import { writeReport } from '../dashboard/report.js';
import { writeRunInfo } from '../dashboard/runs.js';
import { convertValue, didYouMean, parseFlags, UsageError, type Specs } from './args.js';
import { columnsFromFlags, DATA_FLAGS } from './data-flags.js';
import { checkOutFolder, clearPreviousRun, latestCheckpoint, previousRun } from './outputs.js';
import { Progress } from './progress.js';
import { describeBaseWeights, deviceFor } from './run.js';

export const SYNOPSIS = '--model M --data FILE --out DIR [flags]';
export const HELP = 'fine-tune a LoRA adapter';

export const FLAGS = {
  model: { type: 'string', help: 'model folder, .gguf file or hub id' },
  data: { type: 'string', help: 'training data (JSONL, JSON, CSV, TSV or Parquet)' },
  out: { type: 'string', help: 'output folder' },
  'eval-data': { type: 'string', help: 'evaluation data' },
  ...DATA_FLAGS,
  adapter: { type: 'string', help: 'start from this PEFT adapter folder' },
  quantize: { type: 'string', help: 'quantize the base weights', choices: ['nf4', 'fp4', 'int8'] },
  'double-quant': { type: 'bool', help: 'quantize the quantization constants too' },
  dtype: {
    type: 'string',
    help: 'CPU: base weight storage (float32); cuda: weights and activations (bfloat16)',
    choices: ['float32', 'bfloat16'],
  },
  device: { type: 'string', help: 'compute device', choices: ['cpu', 'cuda', 'webgpu'] },
  r: { type: 'int', help: 'LoRA rank (16)', min: 1 },
  alpha: { type: 'number', help: 'LoRA alpha (32)', min: 0, exclusiveMin: true },
  dropout: { type: 'number', help: 'LoRA dropout (0.05)', min: 0, max: 0.99 },
  'target-modules': { type: 'list', help: 'all-linear or q_proj,v_proj,...' },
  rslora: { type: 'bool', help: 'scale by alpha/sqrt(r)' },
  dora: { type: 'bool', help: 'weight-decomposed LoRA' },
  'modules-to-save': { type: 'list', help: 'modules trained in full (embed_tokens,lm_head)' },
  optimizer: { type: 'string', help: 'optimizer (adamw)', choices: ['adamw', 'sgd'] },
  lr: { type: 'number', help: 'learning rate (2e-4)', min: 0, exclusiveMin: true },
  'weight-decay': { type: 'number', help: 'weight decay (0)', min: 0 },
  scheduler: {
    type: 'string',
    help: 'learning-rate schedule (linear)',
    choices: ['constant', 'linear', 'cosine'],
  },
  'warmup-steps': { type: 'int', help: 'warm-up steps', min: 0 },
  'warmup-ratio': { type: 'number', help: 'warm-up as a fraction of all steps', min: 0, max: 1 },
  'batch-size': { type: 'int', help: 'rows per micro-batch (4)', min: 1 },
  'grad-accum': { type: 'int', help: 'micro-batches per optimizer step (1)', min: 1 },
  'max-grad-norm': { type: 'number', help: 'gradient clipping norm, 0 = off (1.0)', min: 0 },
  epochs: { type: 'number', help: 'passes over the data (1)', min: 0, exclusiveMin: true },
  'max-steps': { type: 'int', help: 'optimizer steps, instead of --epochs (not with it)', min: 1 },
  'max-seq-len': { type: 'int', help: 'longest row in tokens (1024)', min: 2 },
  packing: { type: 'bool', help: 'pack several rows into one sequence' },
  'completion-only': { type: 'bool', help: 'loss only on completions / assistant turns' },
  'grad-checkpointing': { type: 'bool', help: 'recompute each layer in backward' },
  'offload-checkpoints': {
    type: 'bool',
    help: 'with --device cuda: checkpointing, each layer input kept in host memory',
  },
  seed: { type: 'int', help: 'random seed (42)', min: 0 },
  'eval-every': { type: 'int', help: 'evaluate every N steps', min: 1 },
  'save-every': { type: 'int', help: 'checkpoint every N steps', min: 1 },
  resume: {
    type: 'string',
    help: 'continue from a checkpoint (DIR/checkpoints/step-N, or a run folder DIR: its latest)',
  },
  overwrite: {
    type: 'bool',
    help: 'start over in an --out that holds a run: removes its adapter/, checkpoints/, metrics.jsonl, run.json, report.html',
  },
  config: { type: 'string', help: 'YAML file with any of these flags as keys' },
} as const satisfies Specs;

type TrainFlags = ReturnType<typeof parseFlags<typeof FLAGS>>;

/** Pairs of flags that exclude each other: one given on the command line overrides the other's config key. */
const EXCLUSIVE: [string, string][] = [
  ['epochs', 'max-steps'],
  ['warmup-steps', 'warmup-ratio'],
];

/**
 * Reads --config FILE.yaml: keys are flag names (kebab-case, snake_case or camelCase), checked before
 * any work starts: unknown keys (with a did-you-mean), wrong types and out-of-range values fail with
 * the file and line. Flags on the command line win, including over a config key they exclude.
 */
function readConfig(path: string, cli: Record<string, unknown>): Record<string, unknown> {
  if (!existsSync(path)) throw new UsageError(`lorakit train: --config ${path} does not exist.`);
  if (!statSync(path).isFile()) throw new UsageError(`lorakit train: --config ${path} is not a file.`);
  const lines = new LineCounter();
  const doc = parseDocument(readFileSync(path, 'utf8'), {
    lineCounter: lines,
    uniqueKeys: true,
    prettyErrors: false,
  });
  const at = (offset: number | undefined) =>
    offset === undefined ? path : `${path} line ${lines.linePos(offset).line}`;
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    throw new UsageError(
      `lorakit train: ${at(e.pos[0])}: invalid YAML (${e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}).`,
    );
  }
  const root = doc.contents;
  if (root === null)
    throw new UsageError(`lorakit train: ${path} is empty; expected flag names as keys (e.g. 'lr: 2e-4').`);
  if (!isMap(root))
    throw new UsageError(
      `lorakit train: ${path}: expected a mapping of flag names to values (e.g. 'lr: 2e-4').`,
    );
  const out: Record<string, unknown> = {};
  const from: Record<string, string> = {};
  const known = Object.keys(FLAGS).filter((k) => k !== 'config');
  for (const pair of root.items) {
    const keyNode = pair.key;
    const where = at(isNode(keyNode) ? keyNode.range?.[0] : undefined);
    if (!isScalar(keyNode) || (typeof keyNode.value !== 'string' && typeof keyNode.value !== 'number'))
      throw new UsageError(`lorakit train: ${where}: keys must be flag names.`);
    const rawKey = String(keyNode.value);
    const key = rawKey
      .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
      .replace(/_/g, '-')
      .toLowerCase();
    if (key === 'config')
      throw new UsageError(`lorakit train: ${where}: a config file cannot name another config file.`);
    if (!known.includes(key))
      throw new UsageError(`lorakit train: ${where}: unknown key '${rawKey}'${didYouMean(key, known)}.`);
    if (from[key] !== undefined)
      throw new UsageError(
        `lorakit train: ${where}: key '${rawKey}' sets ${key} again (already set by '${from[key]}').`,
      );
    from[key] = rawKey;
    const value: unknown = isNode(pair.value) ? pair.value.toJSON() : pair.value;
    if (value === null || value === undefined)
      throw new UsageError(`lorakit train: ${where}: key '${rawKey}' has no value.`);
    const spec = FLAGS[key as keyof typeof FLAGS];
    if (spec.type === 'list' && Array.isArray(value) && value.some((v) => typeof v !== 'string'))
      throw new UsageError(
        `lorakit train: ${where}: key '${rawKey}' must be a list of names, got ${JSON.stringify(value)}.`,
      );
    try {
      out[key] = convertValue(spec, value, `${where}: key '${rawKey}'`);
    } catch (e) {
      throw e instanceof UsageError ? new UsageError(e.message.replace(/^lorakit: /, 'lorakit train: ')) : e;
    }
  }
  for (const [a, b] of EXCLUSIVE) {
    if (cli[a] !== undefined) delete out[b];
    if (cli[b] !== undefined) delete out[a];
  }
  return out;
}

export function parseTrainFlags(argv: string[]): TrainFlags {
  const cli = parseFlags(argv, FLAGS, 'train');
  const merged = (cli.config ? { ...readConfig(cli.config, cli), ...cli } : cli) as TrainFlags;
  for (const req of ['model', 'data', 'out'] as const)
    if (!merged[req]) throw new UsageError(`lorakit train: --${req} is required.`);
  if (merged.epochs !== undefined && merged['max-steps'] !== undefined)
    throw new UsageError('lorakit train: give --epochs or --max-steps, not both.');
  if (merged['warmup-steps'] !== undefined && merged['warmup-ratio'] !== undefined)
    throw new UsageError('lorakit train: give --warmup-steps or --warmup-ratio, not both.');
  if (merged['double-quant'] && merged.quantize !== 'nf4' && merged.quantize !== 'fp4')
    throw new UsageError('lorakit train: --double-quant needs --quantize nf4 or fp4.');
  if (merged['offload-checkpoints'] && merged.device !== 'cuda')
    throw new UsageError('lorakit train: --offload-checkpoints needs --device cuda.');
  if (merged.overwrite && merged.resume !== undefined)
    throw new UsageError(
      'lorakit train: give --resume (continue a run) or --overwrite (start over), not both.',
    );
  return merged;
}

/**
 * Checks --out, --resume and --adapter before the model loads (see outputs.ts): a file as --out, an
 * --out holding a run that neither --resume nor --overwrite says what to do with, a missing or
 * broken checkpoint. Returns the checkpoint folder to resume from (a run folder's latest), if any.
 */
function checkTrainPaths(f: TrainFlags): string | undefined {
  const out = f.out!;
  if (checkOutFolder('train', '--out', out) && f.resume === undefined && !f.overwrite) {
    const run = previousRun(out);
    const latest = latestCheckpoint(out);
    throw new UsageError(
      run.length > 0
        ? `lorakit train: --out ${out} already holds a run (${run.join(', ')}); continue it with --resume ${latest ?? out} or start over with --overwrite.`
        : `lorakit train: --out ${out} is not empty; give a new or empty folder, or --overwrite to train into it anyway (it removes only a previous run's files).`,
    );
  }
  if (f.adapter !== undefined && !existsSync(f.adapter))
    throw new UsageError(`lorakit train: --adapter ${f.adapter} does not exist.`);
  if (f.resume === undefined) return undefined;
  if (!existsSync(f.resume)) throw new UsageError(`lorakit train: --resume ${f.resume} does not exist.`);
  // A run folder stands for its latest checkpoint.
  const dir = existsSync(join(f.resume, 'trainer_state.json'))
    ? f.resume
    : (latestCheckpoint(f.resume) ?? f.resume);
  checkCheckpoint(dir);
  return dir;
}

export async function run(argv: string[]): Promise<number> {
  const f = parseTrainFlags(argv);
  const columns = columnsFromFlags(f, 'train');
  const out = f.out!;
  const resume = checkTrainPaths(f);
  const log = (s: string) => process.stderr.write(`${s}\n`);
  if (resume !== undefined && resume !== f.resume) log(`lorakit: resuming from ${resume}`);
  log(`lorakit: loading ${f.model}`);
  const { model, tokenizer } = await loadModelOptionalTokenizer(f.model!, {
    device: deviceFor('train', f.device),
    dtype: f.dtype as 'float32' | 'bfloat16' | undefined,
    quantize: f.quantize as 'nf4' | 'fp4' | 'int8' | undefined,
    doubleQuant: f['double-quant'] === true,
  });
  log(`lorakit: ${describeBaseWeights(model)}`);
  try {
    const name = 'default';
    if (f.adapter) {
      const given = (
        ['r', 'alpha', 'dropout', 'target-modules', 'rslora', 'dora', 'modules-to-save'] as const
      ).filter((k) => f[k] !== undefined);
      if (given.length)
        log(
          `lorakit: note: --adapter ${f.adapter} fixes the LoRA settings; ignoring ${given.map((k) => `--${k}`).join(', ')}.`,
        );
      loadAdapter(model, f.adapter, name);
    } else {
      const tm = f['target-modules'];
      const config: LoraConfig = {
        ...LORA_DEFAULTS,
        r: f.r ?? LORA_DEFAULTS.r,
        alpha: f.alpha ?? LORA_DEFAULTS.alpha,
        dropout: f.dropout ?? LORA_DEFAULTS.dropout,
        targetModules: !tm || (tm.length === 1 && tm[0] === 'all-linear') ? 'all-linear' : tm,
        useRslora: f.rslora === true,
        useDora: f.dora === true,
        modulesToSave: f['modules-to-save'] ?? [],
        baseModel: f.model!,
      };
      addAdapter(model, name, config, f.seed ?? 42);
    }
    const maxSeqLen = f['max-seq-len'] ?? 1024;
    const completionOnly = f['completion-only'] === true;
    // Validate both data files up front, before any training work or output.
    const dataOpts = { completionOnly, maxSeqLen, columns, vocabSize: model.config.vocabSize };
    const trainData = await loadData(f.data!, tokenizer, dataOpts);
    if (trainData.truncated > 0)
      log(
        `lorakit: warning: ${trainData.truncated} of ${trainData.examples.length} rows of ${f.data} were longer than --max-seq-len ${maxSeqLen} and were cut.`,
      );
    const evalData = f['eval-data'] ? await loadData(f['eval-data'], tokenizer, dataOpts) : null;
    if (evalData && evalData.truncated > 0)
      log(
        `lorakit: warning: ${evalData.truncated} rows of ${f['eval-data']} were cut to --max-seq-len ${maxSeqLen}.`,
      );
    const params = model.linears().reduce(
      (n, l) =>
        n +
        (l.adapters
          .get(name)
          ?.parameters()
          .reduce((m, [, t]) => m + t.size, 0) ?? 0),
      0,
    );
    log(
      `lorakit: ${trainData.examples.length} training rows (${trainData.format}); ${params.toLocaleString('en-US')} trainable parameters`,
    );
    let before: number | null = null;
    if (evalData) {
      before = (await evaluate(model, evalData.examples, f['batch-size'] ?? 4)).loss;
      log(`lorakit: eval loss before training: ${before.toFixed(4)}`);
    }
    // The run's config for the dashboard and the report (the flags as given; defaults are in --help).
    const lora = model.adapterConfigs.get(name);
    // Written once train() has restored any checkpoint, so a run that cannot start leaves nothing.
    const start = () => {
      if (f.overwrite) clearPreviousRun(out);
      mkdirSync(out, { recursive: true });
      writeRunInfo(out, {
        started: new Date().toISOString(),
        model: f.model,
        data: f.data,
        eval_data: f['eval-data'] ?? null,
        train_rows: trainData.examples.length,
        eval_rows: evalData?.examples.length ?? null,
        data_format: trainData.format,
        eval_loss_before: before,
        trainable_parameters: params,
        lora: lora
          ? {
              r: lora.r,
              alpha: lora.alpha,
              dropout: lora.dropout,
              target_modules: lora.targetModules,
              rslora: lora.useRslora,
              dora: lora.useDora,
            }
          : null,
        flags: Object.fromEntries(Object.entries(f).filter(([k, v]) => k !== '_' && v !== undefined)),
      });
    };
    const stop = { stop: false };
    const onSigint = () => {
      if (stop.stop) process.exit(130);
      stop.stop = true;
      log('\nlorakit: stopping after this step and saving a checkpoint (Ctrl-C again to quit at once)');
    };
    process.on('SIGINT', onSigint);
    const progress = new Progress(process.stderr, { evalLoss: before ?? undefined });
    const report = () => {
      try {
        log(`lorakit: report written to ${writeReport(out)}`);
      } catch (e) {
        log(
          `lorakit: warning: could not write ${out}/report.html (${e instanceof Error ? e.message : String(e)}).`,
        );
      }
    };
    try {
      const result = await train(model, tokenizer, {
        data: trainData.examples,
        evalData: evalData?.examples,
        outDir: out,
        adapter: name,
        epochs: f.epochs,
        maxSteps: f['max-steps'],
        batchSize: f['batch-size'],
        gradAccum: f['grad-accum'],
        lr: f.lr,
        weightDecay: f['weight-decay'],
        optimizer: f.optimizer as 'adamw' | 'sgd' | undefined,
        scheduler: f.scheduler as 'constant' | 'linear' | 'cosine' | undefined,
        warmupSteps: f['warmup-steps'],
        warmupRatio: f['warmup-ratio'],
        maxGradNorm: f['max-grad-norm'],
        maxSeqLen,
        packing: f.packing,
        completionOnly,
        gradCheckpointing: f['grad-checkpointing'],
        offloadCheckpoints: f['offload-checkpoints'],
        seed: f.seed,
        evalEvery: f['eval-every'],
        saveEvery: f['save-every'],
        resume,
        onStart: start,
        stopSignal: stop,
        onStep: (m: StepMetrics) => progress.step(m),
        onEval: (step, r) => progress.eval(step, r.loss),
      });
      progress.done();
      report();
      if (result.stoppedEarly) {
        log(
          `lorakit: stopped at step ${result.steps}; resume with --resume ${out}/checkpoints/step-${result.steps}`,
        );
        return 130;
      }
      log(`lorakit: trained ${result.steps} steps; final loss ${result.finalLoss.toFixed(4)}`);
      if (before !== null && result.evalLoss !== null)
        log(
          `lorakit: eval loss ${before.toFixed(4)} -> ${result.evalLoss.toFixed(4)} (perplexity ${Math.exp(before).toFixed(2)} -> ${Math.exp(result.evalLoss).toFixed(2)})`,
        );
      log(`lorakit: adapter saved to ${result.adapterDir}`);
      return 0;
    } finally {
      process.off('SIGINT', onSigint);
    }
  } finally {
    model.dispose();
  }
}
