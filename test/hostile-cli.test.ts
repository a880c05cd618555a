// The command line as a careless or hostile user meets it: a reader that closes the pipe early, files
// whose names are megabytes of binary, output paths that exist, stray arguments, GGUF metadata and
// config.json values no model can have, and help text that says what the code does. Each case is
// spawned through the real CLI (test/lorakit-cli.mts) or run through the loader it calls.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { exportGGUF } from '../src/export/gguf.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { Progress } from '../src/cli/progress.js';
import { loadModel } from '../src/models/load.js';
import { Tensor } from '../src/tensor/tensor.js';
import { projectRoot, sharedData } from './helpers.js';

const CLI = join(projectRoot, 'test', 'lorakit-cli.mts');
const MODEL = sharedData('models', 'stories260K-hf');
const STORIES = sharedData('datasets', 'tinystories', 'tinystories_val.txt');
const SKIP = 'stories260K-hf or tinystories is absent from ../shared/data';
const work = mkdtempSync(join(tmpdir(), 'lorakit-hostile-cli-'));
after(() => rmSync(work, { recursive: true, force: true }));

interface Result {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): Result {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], {
    encoding: 'utf8',
    cwd: projectRoot,
    timeout: 120_000,
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the CLI with its stdout closed by the reader: at once, or after the first bytes arrive. */
function cliClosingStdout(args: string[], when: 'at-once' | 'after-first-bytes'): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
      cwd: projectRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    if (when === 'at-once') child.stdout.destroy();
    else
      child.stdout.once('data', (d: Buffer) => {
        stdout += d.toString();
        child.stdout.destroy();
      });
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

/** One lorakit sentence on stderr (no stack trace), with the given exit code. */
function assertError(r: Result, code: number, pattern: RegExp): void {
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.equal(r.status, code, `exit ${r.status} (${r.signal ?? 'no signal'}): ${r.stderr.slice(0, 500)}`);
  assert.ok(lines.length >= 1, 'nothing on stderr');
  const last = lines[lines.length - 1];
  assert.match(last, /^lorakit/, r.stderr.slice(0, 500));
  assert.match(last, pattern);
  assert.ok(last.length < 300, `a ${last.length}-character error: ${last.slice(0, 200)}…`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'a stack trace');
}

let data = '';
let gguf = '';

before(async () => {
  if (!MODEL || !STORIES) return;
  const stories = readFileSync(STORIES, 'utf8')
    .split('\n\n')
    .map((s) => s.trim())
    .filter((s) => s.length > 40)
    .slice(0, 24)
    .map((s) => s.slice(0, 160));
  data = join(work, 'stories.jsonl');
  writeFileSync(data, stories.map((text) => JSON.stringify({ text })).join('\n') + '\n');
  const { model, tokenizer } = await loadModel(MODEL);
  try {
    gguf = join(work, 'stories260K.gguf');
    await exportGGUF(model, tokenizer, MODEL, gguf, { quant: 'f32' });
  } finally {
    model.dispose();
  }
});

// ---- 1. a closed stdout ends the process quietly ------------------------------------------------------

test('inspect | head: a reader that closes the pipe mid-output ends inspect quietly, status 0', async (t) => {
  if (!MODEL) return t.skip(SKIP);
  // Thousands of tensors: far more output than a pipe buffers, so writes go on after the close.
  const path = join(work, 'many.safetensors');
  const tensors: Record<string, Tensor> = {};
  for (let i = 0; i < 4000; i++)
    tensors[`model.layers.${i}.some_module.with_a_long_name.weight`] = Tensor.zeros([1, 2]);
  writeSafetensors(path, tensors);
  for (const x of Object.values(tensors)) x.dispose();
  for (const args of [
    ['inspect', path],
    ['inspect', path, '--json'],
  ]) {
    const r = await cliClosingStdout(args, 'after-first-bytes');
    assert.ok(r.stdout.length > 0, 'no output arrived before the close');
    assert.equal(r.signal, null);
    assert.equal(r.status, 0, `${args.join(' ')}: exit ${r.status}: ${r.stderr.slice(0, 400)}`);
    assert.equal(r.stderr, '', `${args.join(' ')}: stderr: ${r.stderr.slice(0, 400)}`);
  }
});

test('eval and generate --json into a closed pipe end quietly, status 0', async (t) => {
  if (!MODEL || !STORIES) return t.skip(SKIP);
  for (const args of [
    ['eval', '--model', MODEL, '--data', data, '--json'],
    ['eval', '--model', MODEL, '--data', data],
    ['generate', '--model', MODEL, '--prompt', 'Once upon a time', '--max-new-tokens', '4', '--json'],
  ]) {
    const r = await cliClosingStdout(args, 'at-once');
    assert.equal(r.signal, null);
    assert.equal(r.status, 0, `${args[0]}: exit ${r.status}: ${r.stderr.slice(0, 400)}`);
    assert.doesNotMatch(r.stderr, /EPIPE|Error|^\s+at /m, `${args[0]}: ${r.stderr.slice(0, 400)}`);
  }
});

// ---- 2. errors quote file content as a short escaped prefix ---------------------------------------------

/** A GGUF header whose metadata holds the same key twice: a key of `keyBytes` binary bytes. */
function ggufWithDuplicateKey(keyBytes: number): Uint8Array {
  const key = new Uint8Array(keyBytes);
  for (let i = 0; i < keyBytes; i++) key[i] = (i * 131 + 7) & 0xff;
  const kv = 8 + keyBytes + 4 + 4; // length, key, type (uint32), value
  const out = new Uint8Array(24 + 2 * kv + 32);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0x46554747, true);
  v.setUint32(4, 3, true);
  v.setBigUint64(8, 0n, true);
  v.setBigUint64(16, 2n, true);
  for (let k = 0, p = 24; k < 2; k++, p += kv) {
    v.setBigUint64(p, BigInt(keyBytes), true);
    out.set(key, p + 8);
    v.setUint32(p + 8 + keyBytes, 4, true);
    v.setUint32(p + 12 + keyBytes, 1, true);
  }
  return out;
}

test('a corrupt GGUF key or tensor name of megabytes is quoted as a short escaped prefix', (t) => {
  if (!MODEL) return t.skip(SKIP);
  const g = join(work, 'binary-key.gguf');
  writeFileSync(g, ggufWithDuplicateKey(4 << 20));
  const r = cli(['inspect', g]);
  assertError(r, 1, /binary-key\.gguf: metadata key '.*…' \(\d+ characters\) appears twice/);
  assert.match(r.stderr, /\\u00/, 'binary bytes are escaped');
  assert.match(r.stderr, /\(\d+ characters\)/, 'the cut is marked');
  // safetensors: a 1 MB name with control characters, on a tensor with an unknown dtype.
  const s = join(work, 'binary-name.safetensors');
  const name = Array.from({ length: 1 << 20 }, (_, i) => String.fromCharCode(i % 0x7f)).join('');
  const header = new TextEncoder().encode(
    JSON.stringify({ [name]: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }),
  );
  const bytes = new Uint8Array(8 + header.length + 1);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(header.length), true);
  bytes.set(header, 8);
  writeFileSync(s, bytes);
  assertError(
    cli(['inspect', s]),
    1,
    /binary-name\.safetensors: tensor '\\u0000\\u0001.*has dtype 'F8_E4M3'/,
  );
});

test('inspect: a checkpoint whose trainer_state.json is not JSON is one sentence naming the file', () => {
  const dir = join(work, 'bad-state');
  mkdirSync(dir);
  writeFileSync(join(dir, 'trainer_state.json'), '{"step": 3,\n\u0001');
  assertError(
    cli(['inspect', dir]),
    1,
    /^lorakit: .*bad-state\/trainer_state\.json: not valid JSON \(.*\)\.$/,
  );
});

// ---- 3. output paths are checked before the model loads; runs never mix ----------------------------------

test('--out naming a file, or under a file, is refused before the model loads (train, merge, export)', (t) => {
  if (!MODEL || !STORIES) return t.skip(SKIP);
  const file = join(work, 'a-file');
  writeFileSync(file, 'not a folder');
  const base = ['--model', MODEL];
  let r = cli(['train', ...base, '--data', data, '--out', file]);
  assertError(r, 2, /^lorakit train: --out .*a-file is a file; give a folder to write into\.$/);
  assert.doesNotMatch(r.stderr, /loading/, 'the model was loaded first');
  assertError(
    cli(['train', ...base, '--data', data, '--out', join(file, 'run')]),
    2,
    /^lorakit train: --out .*a-file\/run cannot be created: .*a-file is a file, not a folder\.$/,
  );
  assertError(
    cli(['merge', ...base, '--adapter', work, '--out', file]),
    2,
    /^lorakit merge: --out .* is a file/,
  );
  assertError(
    cli(['export', ...base, '--format', 'safetensors', '--out', join(file, 'hf')]),
    2,
    /^lorakit export: --out .* cannot be created: .*a-file is a file, not a folder\.$/,
  );
  assertError(
    cli(['export', ...base, '--format', 'gguf', '--out', join(file, 'm.gguf')]),
    2,
    /^lorakit export: --out .* cannot be created: .*a-file is a file, not a folder\.$/,
  );
  assertError(
    cli(['merge', ...base, '--adapter', join(work, 'no-such-adapter'), '--out', join(work, 'merged')]),
    2,
    /^lorakit merge: --adapter .*no-such-adapter does not exist\.$/,
  );
  assert.equal(readFileSync(file, 'utf8'), 'not a folder');
});

const TRAIN = ['--batch-size', '4', '--max-seq-len', '64', '--lr', '1e-3'];

/** The step numbers of metrics.jsonl's step lines. */
function metricSteps(dir: string): number[] {
  return readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { step: number; loss?: number })
    .filter((m) => m.loss !== undefined)
    .map((m) => m.step);
}

test('training into a folder that holds a run: refused without --resume; --overwrite starts over', (t) => {
  if (!MODEL || !STORIES) return t.skip(SKIP);
  const out = join(work, 'run');
  const train = (...extra: string[]) =>
    cli(['train', '--model', MODEL, '--data', data, '--out', out, ...TRAIN, ...extra]);
  let r = train('--max-steps', '3', '--save-every', '1');
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(metricSteps(out), [1, 2, 3]);
  writeFileSync(join(out, 'notes.txt'), 'mine');
  // Again, without saying what to do with the old run.
  r = train('--max-steps', '2');
  assertError(
    r,
    2,
    /^lorakit train: --out .*run already holds a run \(adapter, checkpoints, metrics\.jsonl, run\.json, report\.html\); continue it with --resume .*checkpoints\/step-2 or start over with --overwrite\.$/,
  );
  assert.doesNotMatch(r.stderr, /loading/);
  assert.deepEqual(metricSteps(out), [1, 2, 3], 'metrics.jsonl untouched');
  assertError(
    train('--max-steps', '2', '--overwrite', '--resume', out),
    2,
    /give --resume .* or --overwrite .*, not both/,
  );
  // --overwrite: the old run's files go, the user's file stays.
  r = train('--max-steps', '2', '--overwrite');
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(metricSteps(out), [1, 2], 'metrics.jsonl holds the new run alone');
  assert.equal(existsSync(join(out, 'checkpoints')), false, 'the old checkpoints are gone');
  assert.equal(readFileSync(join(out, 'notes.txt'), 'utf8'), 'mine');
  assert.ok(existsSync(join(out, 'adapter', 'adapter_model.safetensors')));
  // A folder with other files only: refused too (it is not empty), --overwrite trains beside them.
  const other = join(work, 'other');
  mkdirSync(other);
  writeFileSync(join(other, 'keep.txt'), 'x');
  assertError(
    cli(['train', '--model', MODEL, '--data', data, '--out', other, ...TRAIN, '--max-steps', '1']),
    2,
    /--out .*other is not empty; give a new or empty folder, or --overwrite/,
  );
});

test('--resume: a run folder resumes from its latest checkpoint; a bad checkpoint leaves no folder behind', (t) => {
  if (!MODEL || !STORIES) return t.skip(SKIP);
  const out = join(work, 'resumable');
  const base = ['train', '--model', MODEL, '--data', data, ...TRAIN];
  let r = cli([...base, '--out', out, '--max-steps', '4', '--save-every', '2']);
  assert.equal(r.status, 0, r.stderr);
  rmSync(join(out, 'metrics.jsonl'));
  r = cli([...base, '--out', out, '--max-steps', '4', '--resume', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /resuming from .*checkpoints\/step-2/);
  assert.deepEqual(metricSteps(out), [3, 4], 'training went on after step 2');
  // Checkpoints that cannot be resumed: refused before anything is written.
  const broken = join(work, 'broken-checkpoint');
  mkdirSync(join(broken, 'adapter'), { recursive: true });
  const cases: [string, number, RegExp][] = [
    [join(work, 'no-such-checkpoint'), 2, /^lorakit train: --resume .*no-such-checkpoint does not exist\.$/],
    [data, 1, /^lorakit: --resume .*stories\.jsonl: is a file; give a checkpoint folder/],
    [
      broken,
      1,
      /^lorakit: --resume .*broken-checkpoint: not a checkpoint folder \(no trainer_state\.json\)\.$/,
    ],
  ];
  for (const [resume, code, pattern] of cases) {
    const fresh = join(work, `fresh-${cases.findIndex((c) => c[0] === resume)}`);
    assertError(cli([...base, '--out', fresh, '--max-steps', '4', '--resume', resume]), code, pattern);
    assert.equal(existsSync(fresh), false, `${resume}: left ${fresh} behind`);
  }
  writeFileSync(join(broken, 'trainer_state.json'), '{"step": 2, "epoch": 0,');
  assertError(
    cli([...base, '--out', join(work, 'fresh-json'), '--max-steps', '4', '--resume', broken]),
    1,
    /^lorakit: --resume .*broken-checkpoint: trainer_state\.json is not valid JSON/,
  );
  writeFileSync(
    join(broken, 'trainer_state.json'),
    JSON.stringify({ step: 2, epoch: 0, batchIndex: 2, optimizerStep: 2, elapsed: 1 }),
  );
  assertError(
    cli([...base, '--out', join(work, 'fresh-files'), '--max-steps', '4', '--resume', broken]),
    1,
    /the checkpoint lacks adapter\/adapter_config\.json\.$/,
  );
  // A sound checkpoint of another adapter shape (r 8 against this run's 16): found on restoring,
  // still before anything is written.
  const fresh = join(work, 'fresh-shape');
  assertError(
    cli([
      ...base,
      '--out',
      fresh,
      '--max-steps',
      '4',
      '--r',
      '8',
      '--resume',
      join(out, 'checkpoints', 'step-2'),
    ]),
    1,
    /checkpoint's '.*lora_A\.weight' has shape \[16, 64\], this run's \[8, 64\]/,
  );
  assert.equal(existsSync(fresh), false, 'a folder was left behind');
  for (const d of readdirSync(work)) assert.doesNotMatch(d, /^fresh/, `${d} was left behind`);
});

// ---- 4. stray arguments and impossible model metadata -------------------------------------------------

test('a stray positional argument is refused by every command that takes none, naming it', () => {
  for (const command of ['train', 'eval', 'generate', 'chat', 'merge', 'export', 'serve']) {
    const r = cli([command, 'extra', '--model', 'M']);
    assertError(r, 2, new RegExp(`^lorakit ${command}: unexpected argument 'extra'`));
  }
  // The value of a bool flag is not a value: `--json yes` leaves 'yes' over.
  assertError(cli(['eval', '--json', 'yes', '--model', 'M']), 2, /unexpected argument 'yes'/);
});

/** The GGUF's bytes with metadata `key` (a uint32) set to `value`. */
function withU32(bytes: Uint8Array, key: string, value: number): Uint8Array {
  const k = new TextEncoder().encode(key);
  const out = bytes.slice();
  const v = new DataView(out.buffer);
  for (let p = 8; p + 8 + k.length + 8 <= out.length; p++) {
    if (v.getBigUint64(p, true) !== BigInt(k.length)) continue;
    if (!k.every((b, i) => out[p + 8 + i] === b)) continue;
    assert.equal(v.getUint32(p + 8 + k.length, true), 4, `${key} is not a uint32`);
    v.setUint32(p + 12 + k.length, value, true);
    return out;
  }
  throw new Error(`${key} is not in the GGUF`);
}

test('GGUF metadata no model can have is refused naming the key and the file', async (t) => {
  if (!MODEL) return t.skip(SKIP);
  const base = new Uint8Array(readFileSync(gguf));
  const cases: [string, number, RegExp][] = [
    [
      'llama.rope.dimension_count',
      0,
      /'llama\.rope\.dimension_count' is 0; it must equal the head dimension 8/,
    ],
    ['llama.rope.dimension_count', 7, /'llama\.rope\.dimension_count' is 7/],
    ['llama.rope.dimension_count', 16, /'llama\.rope\.dimension_count' is 16/],
    ['llama.rope.dimension_count', 4, /'llama\.rope\.dimension_count' is 4/],
    ['llama.attention.head_count', 0, /'llama\.attention\.head_count' is 0; it must be a positive integer/],
    ['llama.attention.head_count_kv', 3, /'llama\.attention\.head_count_kv' is 3, which does not divide/],
    [
      'llama.attention.head_count',
      12,
      /'llama\.embedding_length' is 64, not a multiple of attention\.head_count 12/,
    ],
    ['llama.context_length', 0, /'llama\.context_length' is 0/],
    ['llama.block_count', 0, /'llama\.block_count' is 0/],
  ];
  for (const [key, value, pattern] of cases) {
    const path = join(work, `bad-${key}-${value}.gguf`);
    writeFileSync(path, withU32(base, key, value));
    await assert.rejects(
      loadModel(path),
      (e: Error) => {
        assert.equal(e.constructor, Error);
        assert.ok(e.message.startsWith(`lorakit: ${path}: GGUF metadata`), e.message);
        assert.match(e.message, pattern);
        return true;
      },
      `${key} = ${value}`,
    );
  }
  // Through the CLI: one sentence, exit 1.
  assertError(
    cli(['eval', '--model', join(work, 'bad-llama.block_count-0.gguf'), '--data', data]),
    1,
    /'llama\.block_count' is 0/,
  );
});

test('config.json sizes no model can have are refused naming the field', async (t) => {
  if (!MODEL) return t.skip(SKIP);
  const config = JSON.parse(readFileSync(join(MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ num_hidden_layers: 0 }, /field 'num_hidden_layers' must be a positive integer, got 0/],
    [{ num_attention_heads: 0 }, /field 'num_attention_heads' must be a positive integer, got 0/],
    [
      { hidden_size: 60 },
      /hidden_size 60 is not a multiple of num_attention_heads 8, and there is no head_dim/,
    ],
    [{ num_key_value_heads: 3 }, /num_attention_heads 8 is not a multiple of num_key_value_heads 3/],
    [{ vocab_size: 0 }, /field 'vocab_size' must be a positive integer, got 0/],
    [{ intermediate_size: 17.5 }, /field 'intermediate_size' must be a positive integer, got 17\.5/],
  ];
  for (const [change, pattern] of cases) {
    const dir = join(work, `config-${Object.keys(change)[0]}`);
    mkdirSync(dir, { recursive: true });
    for (const f of readdirSync(MODEL)) if (f !== 'config.json') copyFileSync(join(MODEL, f), join(dir, f));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, ...change }));
    await assert.rejects(loadModel(dir), pattern, JSON.stringify(change));
  }
});

// ---- 5. help text says what the code does -------------------------------------------------------------

test('help: --max-steps does not claim to override --epochs; merge and export do not offer --device', () => {
  const train = cli(['train', '--help']);
  assert.equal(train.status, 0);
  assert.doesNotMatch(train.stdout, /overrides epochs/);
  assert.match(train.stdout, /--max-steps +optimizer steps, instead of --epochs \(not with it\)/);
  assert.match(train.stdout, /--overwrite +start over/);
  assertError(
    cli(['train', '--model', 'M', '--data', 'D', '--out', 'O', '--epochs', '1', '--max-steps', '2']),
    2,
    /give --epochs or --max-steps, not both/,
  );
  for (const command of ['merge', 'export']) {
    const r = cli([command, '--help']);
    assert.equal(r.status, 0);
    assert.doesNotMatch(r.stdout, /--device/, `${command} --help lists --device`);
  }
  assertError(
    cli(['merge', '--model', 'M', '--adapter', work, '--out', join(work, 'm'), '--device', 'cuda']),
    2,
    /^lorakit merge: --device cuda is not supported by this command; use --device cpu\.$/,
  );
});

test('progress: the eval column names the step its value is from (eval@0 before training)', () => {
  const lines: string[] = [];
  const p = new Progress({ write: (s: string) => lines.push(s) }, { tty: false, interval: 0, evalLoss: 3.5 });
  const m = (step: number) => ({
    step,
    totalSteps: 4,
    epoch: 0,
    loss: 2,
    lr: 1e-3,
    grad_norm: 1,
    tokens: 10,
    tokens_per_s: 100,
    memory: 1 << 20,
    elapsed: step,
  });
  p.step(m(1));
  p.step(m(2));
  p.eval(2, 2.25);
  p.step(m(3));
  const steps = lines.filter((l) => l.startsWith('step ') && l.includes('('));
  assert.match(steps[0], /\| eval@0 3\.5000 \|/, 'the pre-training value is marked as such');
  assert.match(steps[1], /\| eval@0 3\.5000 \|/);
  assert.match(steps[2], /\| eval@2 2\.2500 \|/, 'after an eval, its step');
});
