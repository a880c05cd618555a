// Training end to end: a real LoRA run on stories260K that lowers eval loss and reloads in PEFT with
// the same loss; exact resume; gradient accumulation and checkpointing that change nothing; the CLI.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadModel } from '../src/models/load.js';
import { adapterParameters, addAdapter, saveAdapter } from '../src/peft/adapters.js';
import { LORA_DEFAULTS } from '../src/peft/config.js';
import { padBatch } from '../src/train/batching.js';
import { loadData, type Example } from '../src/train/data.js';
import { evaluate } from '../src/train/evaluate.js';
import { train, type StepMetrics, type TrainOptions } from '../src/train/trainer.js';
import { fixture, projectRoot, sharedData, writeStoriesJsonl } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'lorakit-train-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const python = join(projectRoot, '.venv-ref', 'bin', 'python');

/** {"text"} rows of TinyStories in the test's folder (null without ../shared/data). */
const storiesFile = (name: string, from: number, count: number): string | null =>
  writeStoriesJsonl(join(work, name), from, count);

function cli(args: string[]) {
  return spawnSync(
    process.execPath,
    ['--import', 'tsx', join(projectRoot, 'test', 'lorakit-cli.mts'), ...args],
    { encoding: 'utf8', cwd: projectRoot },
  );
}

test('stories260K: LoRA on real text lowers eval loss, and PEFT loads the adapter with the same loss', async (t) => {
  const model_dir = sharedData('models', 'stories260K-hf');
  const trainFile = storiesFile('stories-train.jsonl', 0, 240);
  const evalFile = storiesFile('stories-eval.jsonl', 400, 40);
  if (!model_dir || !trainFile || !evalFile) return t.skip('../shared/data is absent');
  const { model, tokenizer } = await loadModel(model_dir);
  try {
    addAdapter(model, 'default', { ...LORA_DEFAULTS, r: 8, alpha: 16, dropout: 0.05 }, 1);
    const evalSet = (await loadData(evalFile, tokenizer, { completionOnly: false, maxSeqLen: 256 })).examples;
    const before = (await evaluate(model, evalSet)).loss;
    const r = await train(model, tokenizer, {
      data: trainFile,
      maxSteps: 30,
      batchSize: 8,
      lr: 3e-3,
      maxSeqLen: 256,
      seed: 3,
    });
    const after = (await evaluate(model, evalSet)).loss;
    assert.ok(after < before - 0.05, `eval loss ${before.toFixed(4)} -> ${after.toFixed(4)} should fall`);
    assert.equal(r.steps, 30);
    if (!existsSync(python)) return;
    const out = join(work, 'stories-adapter');
    await saveAdapter(model, 'default', out);
    const rows = evalSet.slice(0, 8);
    const hb = padBatch(rows);
    const ours = (await evaluate(model, rows)).loss;
    const ids = rows.map((e) => [...e.ids, ...new Array<number>(hb.T - e.ids.length).fill(0)]);
    const mask = rows.map((e) => Array.from({ length: hb.T }, (_, i) => (i < e.ids.length ? 1 : 0)));
    const labels = rows.map((e) => [...e.labels, ...new Array<number>(hb.T - e.ids.length).fill(-100)]);
    writeFileSync(join(work, 'batch.json'), JSON.stringify({ ids, mask, labels }));
    const p = spawnSync(
      python,
      [join(projectRoot, 'scripts/reference/peft_eval.py'), model_dir, out, join(work, 'batch.json')],
      { encoding: 'utf8' },
    );
    assert.equal(p.status, 0, p.stderr);
    const peft = (JSON.parse(p.stdout.trim().split('\n').at(-1)!) as { loss: number }).loss;
    assert.ok(Math.abs(peft - ours) / ours < 1e-4, `PEFT eval loss ${peft} vs ours ${ours}`);
  } finally {
    model.dispose();
  }
});

async function run(
  opts: Partial<TrainOptions>,
  data: string | Example[],
  adapterSeed = 5,
  dropout = 0.1,
): Promise<{ losses: number[]; weights: Float32Array[] }> {
  const { model, tokenizer } = await loadModel(fixture('models', 'llama')!);
  try {
    addAdapter(
      model,
      'default',
      { ...LORA_DEFAULTS, r: 4, alpha: 8, dropout, targetModules: ['q_proj', 'v_proj', 'down_proj'] },
      adapterSeed,
    );
    // Start from a non-zero B so every path carries gradient from the first step.
    for (const [k, p] of adapterParameters(model, 'default'))
      if (k.includes('lora_B')) p.as('f32').forEach((_, i, a) => (a[i] = Math.sin(i) * 0.05));
    const losses: number[] = [];
    await train(model, tokenizer, {
      data,
      maxSeqLen: 128,
      seed: 11,
      lr: 1e-2,
      onStep: (m: StepMetrics) => losses.push(m.loss),
      ...opts,
    });
    return {
      losses,
      weights: adapterParameters(model, 'default').map(([, p]) => Float32Array.from(p.as('f32'))),
    };
  } finally {
    model.dispose();
  }
}

test('resume from a checkpoint continues exactly (same losses and weights as one run)', async (t) => {
  const data = storiesFile('tiny-train.jsonl', 0, 24);
  if (!fixture('models', 'llama') || !data) return t.skip('fixture or ../shared/data missing');
  const out = join(work, 'resume');
  const full = await run({ maxSteps: 6, batchSize: 4, gradAccum: 2, outDir: out, saveEvery: 3 }, data);
  assert.ok(existsSync(join(out, 'checkpoints', 'step-3', 'trainer_state.json')));
  assert.ok(existsSync(join(out, 'adapter', 'adapter_model.safetensors')));
  const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as StepMetrics);
  assert.deepEqual(
    metrics.map((m) => m.step),
    [1, 2, 3, 4, 5, 6],
  );
  for (const key of ['loss', 'lr', 'grad_norm', 'tokens_per_s', 'memory', 'elapsed'] as const)
    assert.equal(typeof metrics[0][key], 'number');
  const resumed = await run(
    { maxSteps: 6, batchSize: 4, gradAccum: 2, resume: join(out, 'checkpoints', 'step-3') },
    data,
    999,
  );
  assert.deepEqual(resumed.losses, full.losses.slice(3));
  resumed.weights.forEach((w, i) => assert.deepEqual(w, full.weights[i]));
  // Resumed into the same folder (a line cut short by a kill at the end): each step once in metrics.jsonl.
  appendFileSync(join(out, 'metrics.jsonl'), '{"step": 7, "lo');
  await run(
    { maxSteps: 6, batchSize: 4, gradAccum: 2, outDir: out, resume: join(out, 'checkpoints', 'step-3') },
    data,
    999,
  );
  const again = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as StepMetrics);
  assert.deepEqual(
    again.map((m) => m.step),
    [1, 2, 3, 4, 5, 6],
  );
  assert.deepEqual(
    again.map((m) => m.loss),
    metrics.map((m) => m.loss),
  );
});

test('batch size x accumulation and activation checkpointing do not change the step', async (t) => {
  const data = storiesFile('tiny-accum.jsonl', 100, 8);
  if (!fixture('models', 'llama') || !data) return t.skip('fixture or ../shared/data missing');
  const common = { maxSteps: 1, optimizer: 'sgd' as const, lr: 0.5, maxGradNorm: 0 };
  // No dropout: its masks depend on how rows are grouped.
  const a = await run({ ...common, batchSize: 8, gradAccum: 1 }, data, 5, 0);
  const b = await run({ ...common, batchSize: 2, gradAccum: 4, gradCheckpointing: true }, data, 5, 0);
  assert.ok(Math.abs(a.losses[0] - b.losses[0]) < 1e-6, `loss ${a.losses[0]} vs ${b.losses[0]}`);
  a.weights.forEach((w, i) =>
    w.forEach((v, j) => assert.ok(Math.abs(v - b.weights[i][j]) < 1e-5, `weight ${i}[${j}]`)),
  );
});

test('lorakit train/eval/generate/inspect from the command line', async (t) => {
  const model = fixture('models', 'llama');
  const data = storiesFile('cli-train.jsonl', 200, 16);
  if (!model || !data) return t.skip('fixture or ../shared/data missing');
  const out = join(work, 'cli-run');
  const r = cli([
    'train',
    '--model',
    model,
    '--data',
    data,
    '--eval-data',
    data,
    '--out',
    out,
    '--max-steps',
    '3',
    '--batch-size',
    '4',
    '--r',
    '4',
    '--save-every',
    '2',
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /eval loss .* -> /);
  assert.deepEqual(readdirSync(out).sort(), [
    'adapter',
    'checkpoints',
    'metrics.jsonl',
    'report.html',
    'run.json',
  ]);
  const ev = cli(['eval', '--model', model, '--adapter', join(out, 'adapter'), '--data', data, '--json']);
  assert.equal(ev.status, 0, ev.stderr);
  const e = JSON.parse(ev.stdout) as { loss: number; perplexity: number; tokens: number };
  assert.deepEqual(Object.keys(e), ['loss', 'perplexity', 'tokens']);
  assert.ok(Math.abs(e.perplexity - Math.exp(e.loss)) < 1e-9 * e.perplexity);
  const g = cli([
    'generate',
    '--model',
    model,
    '--adapter',
    join(out, 'adapter'),
    '--input-ids',
    '1,5,9',
    '--max-new-tokens',
    '4',
    '--json',
  ]);
  assert.equal(g.status, 0, g.stderr);
  const gj = JSON.parse(g.stdout) as { text: string; token_ids: number[] };
  assert.deepEqual(Object.keys(gj), ['text', 'token_ids']);
  assert.ok(gj.token_ids.length <= 4);
  const ins = cli(['inspect', join(out, 'adapter'), '--json']);
  assert.equal(ins.status, 0, ins.stderr);
  assert.equal((JSON.parse(ins.stdout) as { kind: string }).kind, 'adapter');
});

test('bad flags and bad data: one clear sentence, non-zero exit, nothing half-written', (t) => {
  const model = fixture('models', 'llama');
  if (!model) return t.skip('fixture missing');
  const bad = join(work, 'bad.jsonl');
  writeFileSync(bad, '{"text": "fine"}\n{"text": oops}\n');
  const out = join(work, 'bad-run');
  const cases: [string[], number, RegExp][] = [
    [['train', '--model', model, '--data', bad, '--out', out, '--lr', 'fast'], 2, /--lr must be a number/],
    [
      ['train', '--model', model, '--data', bad, '--out', out, '--epoch', '2'],
      2,
      /unknown flag --epoch \(did you mean epochs\?\)/,
    ],
    [['train', '--model', model, '--data', bad], 2, /--out is required/],
    [
      ['train', '--model', model, '--data', bad, '--out', out, '--epochs', '1', '--max-steps', '3'],
      2,
      /not both/,
    ],
    [['train', '--model', model, '--data', bad, '--out', out], 1, /bad\.jsonl: line 2 is not valid JSON/],
    [['train', '--model', join(work, 'nowhere'), '--data', bad, '--out', out], 1, /nowhere/],
    [['generate', '--model', model, '--prompt', 'a', '--messages', '[]'], 2, /exactly one of/],
    [['frobnicate'], 2, /unknown command 'frobnicate'/],
  ];
  for (const [args, code, re] of cases) {
    const r = cli(args);
    assert.equal(r.status, code, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(
      r.stderr
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('lorakit')).length >= 1,
      true,
    );
  }
  assert.equal(existsSync(out), false, 'nothing was written to --out');
  const yaml = join(work, 'run.yaml');
  writeFileSync(yaml, 'lr: 1e-3\nbatch_sizee: 4\n');
  const r = cli(['train', '--model', model, '--data', bad, '--out', out, '--config', yaml]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown key 'batch_sizee' \(did you mean batch-size\?\)/);
});

test('Ctrl-C stops after the current step with a checkpoint that resumes', async (t) => {
  const model = fixture('models', 'llama');
  const data = storiesFile('sigint.jsonl', 300, 16);
  if (!model || !data) return t.skip('fixture or ../shared/data missing');
  const out = join(work, 'sigint-run');
  const { spawn } = await import('node:child_process');
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(projectRoot, 'test', 'lorakit-cli.mts'),
      'train',
      '--model',
      model,
      '--data',
      data,
      '--out',
      out,
      '--max-steps',
      '100000',
      '--batch-size',
      '2',
    ],
    { cwd: projectRoot },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // Interrupt once the first step is on disk.
  while (!existsSync(join(out, 'metrics.jsonl'))) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGINT');
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  assert.equal(code, 130, stderr);
  assert.match(stderr, /resume with --resume/);
  const steps = readdirSync(join(out, 'checkpoints'));
  assert.equal(steps.length, 1);
  assert.ok(existsSync(join(out, 'checkpoints', steps[0], 'adapter', 'adapter_model.safetensors')));
  assert.ok(!existsSync(join(out, 'adapter')), 'no final adapter for an interrupted run');
  const r = cli([
    'train',
    '--model',
    model,
    '--data',
    data,
    '--out',
    out,
    '--max-steps',
    String(Number(steps[0].slice(5)) + 1),
    '--batch-size',
    '2',
    '--resume',
    join(out, 'checkpoints', steps[0]),
  ]);
  assert.equal(r.status, 0, r.stderr);
});
