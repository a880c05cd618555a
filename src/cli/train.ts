import { existsSync, readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { loadModel } from '../models/load.js';
import { LORA_DEFAULTS, type LoraConfig } from '../peft/config.js';
import { addAdapter, loadAdapter } from '../peft/adapters.js';
import { evaluate } from '../train/evaluate.js';
import { loadData } from '../train/data.js';
import { train, type StepMetrics } from '../train/trainer.js';
import { convertValue, didYouMean, parseFlags, UsageError, type Specs } from './args.js';
import { Progress } from './progress.js';

export const SYNOPSIS = '--model M --data FILE --out DIR [flags]';
export const HELP = 'fine-tune a LoRA adapter';

export const FLAGS = {
  model: { type: 'string', help: 'model folder, .gguf file or hub id' },
  data: { type: 'string', help: 'training data (JSONL or JSON)' },
  out: { type: 'string', help: 'output folder' },
  'eval-data': { type: 'string', help: 'evaluation data' },
  adapter: { type: 'string', help: 'start from this PEFT adapter folder' },
  quantize: { type: 'string', help: 'quantize the base weights', choices: ['nf4', 'fp4', 'int8'] },
  'double-quant': { type: 'bool', help: 'quantize the quantization constants too' },
  dtype: { type: 'string', help: 'base weight storage', choices: ['float32', 'bfloat16'] },
  device: { type: 'string', help: 'compute device', choices: ['cpu', 'cuda'] },
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
  scheduler: { type: 'string', help: 'learning-rate schedule (linear)', choices: ['constant', 'linear', 'cosine'] },
  'warmup-steps': { type: 'int', help: 'warm-up steps', min: 0 },
  'warmup-ratio': { type: 'number', help: 'warm-up as a fraction of all steps', min: 0, max: 1 },
  'batch-size': { type: 'int', help: 'rows per micro-batch (4)', min: 1 },
  'grad-accum': { type: 'int', help: 'micro-batches per optimizer step (1)', min: 1 },
  'max-grad-norm': { type: 'number', help: 'gradient clipping norm, 0 = off (1.0)', min: 0 },
  epochs: { type: 'number', help: 'passes over the data (1)', min: 0, exclusiveMin: true },
  'max-steps': { type: 'int', help: 'optimizer steps (overrides epochs)', min: 1 },
  'max-seq-len': { type: 'int', help: 'longest row in tokens (1024)', min: 2 },
  packing: { type: 'bool', help: 'pack several rows into one sequence' },
  'completion-only': { type: 'bool', help: 'loss only on completions / assistant turns' },
  'grad-checkpointing': { type: 'bool', help: 'recompute each layer in backward' },
  seed: { type: 'int', help: 'random seed (42)', min: 0 },
  'eval-every': { type: 'int', help: 'evaluate every N steps', min: 1 },
  'save-every': { type: 'int', help: 'checkpoint every N steps', min: 1 },
  resume: { type: 'string', help: 'continue from a checkpoint folder' },
  config: { type: 'string', help: 'YAML file with any of these flags as keys' },
} as const satisfies Specs;

type TrainFlags = ReturnType<typeof parseFlags<typeof FLAGS>>;

/** Reads --config: keys are flag names (kebab or snake case); flags on the command line win. */
function readConfig(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new UsageError(`lorakit train: --config ${path} does not exist.`);
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UsageError(`lorakit train: ${path}: invalid YAML (${e instanceof Error ? e.message.split('\n')[0] : String(e)}).`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new UsageError(`lorakit train: ${path}: expected a mapping of flag names to values.`);
  const out: Record<string, unknown> = {};
  const known = Object.keys(FLAGS).filter((k) => k !== 'config');
  for (const [rawKey, value] of Object.entries(doc)) {
    const key = rawKey.replace(/_/g, '-');
    if (!known.includes(key)) throw new UsageError(`lorakit train: ${path}: unknown key '${rawKey}'${didYouMean(key, known)}.`);
    out[key] = convertValue(FLAGS[key as keyof typeof FLAGS], value, `${path}: key '${rawKey}'`);
  }
  return out;
}

export function parseTrainFlags(argv: string[]): TrainFlags {
  const cli = parseFlags(argv, FLAGS, 'train');
  const merged = (cli.config ? { ...readConfig(cli.config), ...cli } : cli) as TrainFlags;
  for (const req of ['model', 'data', 'out'] as const)
    if (!merged[req]) throw new UsageError(`lorakit train: --${req} is required.`);
  if (merged.epochs !== undefined && merged['max-steps'] !== undefined)
    throw new UsageError('lorakit train: give --epochs or --max-steps, not both.');
  if (merged['warmup-steps'] !== undefined && merged['warmup-ratio'] !== undefined)
    throw new UsageError('lorakit train: give --warmup-steps or --warmup-ratio, not both.');
  if (merged.quantize || merged['double-quant'])
    throw new UsageError('lorakit train: --quantize/--double-quant (QLoRA) are not available in this version yet; train on an unquantized base (--dtype bfloat16 halves its memory).');
  if (merged['modules-to-save']) throw new UsageError('lorakit train: --modules-to-save is not available in this version yet.');
  if (merged.device === 'cuda') throw new UsageError('lorakit train: --device cuda is not available in this build; use --device cpu.');
  return merged;
}

export async function run(argv: string[]): Promise<number> {
  const f = parseTrainFlags(argv);
  const out = f.out!;
  const log = (s: string) => process.stderr.write(`${s}\n`);
  log(`lorakit: loading ${f.model}`);
  const { model, tokenizer } = await loadModel(f.model!, { dtype: f.dtype as 'float32' | 'bfloat16' | undefined });
  try {
    const name = 'default';
    if (f.adapter) {
      const given = (['r', 'alpha', 'dropout', 'target-modules', 'rslora', 'dora'] as const).filter((k) => f[k] !== undefined);
      if (given.length) log(`lorakit: note: --adapter ${f.adapter} fixes the LoRA settings; ignoring ${given.map((k) => `--${k}`).join(', ')}.`);
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
        baseModel: f.model!,
      };
      addAdapter(model, name, config, f.seed ?? 42);
    }
    const maxSeqLen = f['max-seq-len'] ?? 1024;
    const completionOnly = f['completion-only'] === true;
    // Validate both data files up front, before any training work or output.
    const trainData = loadData(f.data!, tokenizer, { completionOnly, maxSeqLen });
    if (trainData.truncated > 0)
      log(`lorakit: warning: ${trainData.truncated} of ${trainData.examples.length} rows of ${f.data} were longer than --max-seq-len ${maxSeqLen} and were cut.`);
    const evalData = f['eval-data'] ? loadData(f['eval-data'], tokenizer, { completionOnly, maxSeqLen }) : null;
    if (evalData && evalData.truncated > 0) log(`lorakit: warning: ${evalData.truncated} rows of ${f['eval-data']} were cut to --max-seq-len ${maxSeqLen}.`);
    const params = model.linears().reduce((n, l) => n + (l.adapters.get(name)?.parameters().reduce((m, [, t]) => m + t.size, 0) ?? 0), 0);
    log(`lorakit: ${trainData.examples.length} training rows (${trainData.format}); ${params.toLocaleString('en-US')} trainable parameters`);
    let before: number | null = null;
    if (evalData) {
      before = evaluate(model, evalData.examples, f['batch-size'] ?? 4).loss;
      log(`lorakit: eval loss before training: ${before.toFixed(4)}`);
    }
    const stop = { stop: false };
    const onSigint = () => {
      if (stop.stop) process.exit(130);
      stop.stop = true;
      log('\nlorakit: stopping after this step and saving a checkpoint (Ctrl-C again to quit at once)');
    };
    process.on('SIGINT', onSigint);
    const progress = new Progress(process.stderr);
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
        seed: f.seed,
        evalEvery: f['eval-every'],
        saveEvery: f['save-every'],
        resume: f.resume,
        stopSignal: stop,
        onStep: (m: StepMetrics) => progress.step(m),
        onEval: (step, r) => progress.note(`step ${step}: eval loss ${r.loss.toFixed(4)}`),
      });
      progress.done();
      if (result.stoppedEarly) {
        log(`lorakit: stopped at step ${result.steps}; resume with --resume ${out}/checkpoints/step-${result.steps}`);
        return 130;
      }
      log(`lorakit: trained ${result.steps} steps; final loss ${result.finalLoss.toFixed(4)}`);
      if (before !== null && result.evalLoss !== null)
        log(`lorakit: eval loss ${before.toFixed(4)} -> ${result.evalLoss.toFixed(4)} (perplexity ${Math.exp(before).toFixed(2)} -> ${Math.exp(result.evalLoss).toFixed(2)})`);
      log(`lorakit: adapter saved to ${result.adapterDir}`);
      return 0;
    } finally {
      process.off('SIGINT', onSigint);
    }
  } finally {
    model.dispose();
  }
}
