// QLoRA end to end against transformers + bitsandbytes + PEFT (fixtures from
// scripts/reference/quant_ref.py): pre-quantized bitsandbytes checkpoints load here with the same
// logits; our quantization of a whole model equals theirs byte for byte; a QLoRA forward, its
// gradients and one SGD step match PEFT; checkpoints we save load in transformers with the same
// logits; and the CLI trains with --quantize nf4 --double-quant.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { backward, noGrad } from '../src/autograd/tape.js';
import { openSafetensors, openSafetensorsModel } from '../src/io/safetensors.js';
import type { CausalLM } from '../src/models/llama.js';
import { loadModel } from '../src/models/load.js';
import { scale } from '../src/ops/elementwise.js';
import { adapterParameters, loadAdapter } from '../src/peft/adapters.js';
import { readPrequantized } from '../src/quant/bnb.js';
import { saveQuantizedModel } from '../src/quant/bnb.js';
import { QuantizedWeight } from '../src/quant/weight.js';
import { memoryStats, tidy } from '../src/tensor/tensor.js';
import { padBatch, toDevice } from '../src/train/batching.js';
import type { Example } from '../src/train/data.js';
import { lossSum } from '../src/train/loss.js';
import { Optimizer } from '../src/train/optimizer.js';
import { assertClose, fixture, projectRoot } from './helpers.js';
import { fixtureExamples } from './model-helpers.js';

const SKIP = 'fixture missing: run scripts/reference/make-all.sh';
const python = join(projectRoot, '.venv-ref', 'bin', 'python');
const work = mkdtempSync(join(tmpdir(), 'lorakit-quant-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

interface BatchJson {
  ids: number[][];
  mask: number[][];
  labels?: number[][];
  logits?: number[];
}

/** Logits [B, T, V] of the batch at its unpadded positions, flattened like the fixture's (padding = 0). */
function logitsOf(model: CausalLM, b: BatchJson): { values: Float32Array; keep: boolean[] } {
  const hb = padBatch(fixtureExamples(b));
  return noGrad(() =>
    tidy(() => {
      const { batch } = toDevice(hb);
      const l = model.logits(batch, { ctx: { training: true } });
      const [B, T, V] = l.shape;
      const keep: boolean[] = [];
      for (let i = 0; i < B; i++)
        for (let t = 0; t < T; t++) for (let v = 0; v < V; v++) keep.push(b.mask[i][t] === 1);
      return { values: Float32Array.from(l.as('f32')), keep };
    }),
  );
}

function compareLogits(
  ours: { values: Float32Array; keep: boolean[] },
  theirs: ArrayLike<number>,
  tol: number,
  what: string,
): void {
  const a: number[] = [];
  const e: number[] = [];
  ours.keep.forEach((k, i) => {
    if (k) {
      a.push(ours.values[i]);
      e.push(theirs[i]);
    }
  });
  assert.ok(a.length > 0);
  assertClose(a, e, tol, what);
}

for (const name of ['tiny-nf4-dq', 'tiny-fp4']) {
  test(`bitsandbytes checkpoint ${name} loads with transformers' logits`, async (t) => {
    const dir = fixture('quant', name);
    if (!dir) return t.skip(SKIP);
    const e = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as BatchJson;
    const { model } = await loadModel(dir);
    try {
      const q = model.layers[0].q.weight;
      assert.ok(q instanceof QuantizedWeight && q.type === (name.includes('nf4') ? 'nf4' : 'fp4'));
      assert.equal(model.lmHead.weight.dtype, 'f32', 'the output head stays dense');
      compareLogits(logitsOf(model, e), e.logits!, 1e-5, `${name} logits`);
    } finally {
      model.dispose();
    }
  });
}

test('bitsandbytes int8 checkpoint (Linear8bitLt) loads with the same int8 weights as ours', async (t) => {
  const dir = fixture('quant', 'tiny-int8');
  if (!dir) return t.skip(SKIP);
  const e = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as BatchJson;
  const { model: theirs } = await loadModel(dir);
  const { model: ours } = await loadModel(fixture('quant', 'tiny-base')!, { quantize: 'int8' });
  try {
    const a = theirs.linears();
    ours.linears().forEach((l, i) => {
      if (l === ours.lmHead) return;
      const w = l.weight;
      const r = a[i].weight;
      assert.ok(w instanceof QuantizedWeight && r instanceof QuantizedWeight && r.type === 'int8', l.path);
      assert.deepEqual(w.data.as('u8'), r.data.as('u8'), `${l.path} int8 codes`);
      assert.deepEqual(w.absmax!.as('f32'), r.absmax!.as('f32'), `${l.path} row scales`);
    });
    // LLM.int8 quantizes activations too; weight-only int8 is close, not equal.
    compareLogits(
      logitsOf(theirs, e),
      e.logits!,
      3e-2,
      'int8 logits (activations quantized by bitsandbytes)',
    );
  } finally {
    theirs.dispose();
    ours.dispose();
  }
});

test('quantizing a whole model at load matches transformers + bitsandbytes byte for byte', async (t) => {
  const src = fixture('quant', 'tiny-base');
  if (!src || !fixture('quant', 'tiny-nf4-dq')) return t.skip(SKIP);
  for (const [name, quantize, doubleQuant] of [
    ['tiny-nf4-dq', 'nf4', true],
    ['tiny-fp4', 'fp4', false],
  ] as const) {
    const theirs = openSafetensorsModel(fixture('quant', name)!);
    const { model } = await loadModel(src, { quantize, doubleQuant });
    try {
      for (const l of model.linears()) {
        if (l === model.lmHead) continue;
        const ours = l.weight;
        assert.ok(ours instanceof QuantizedWeight, `${l.path} is quantized`);
        const ref = readPrequantized(theirs, `${l.path}.weight`, ours.shape[0], ours.shape[1])!;
        try {
          assert.deepEqual(ours.data.as('u8'), ref.data.as('u8'), `${l.path} codes`);
          if (doubleQuant) {
            assert.equal(ours.nested!.offset, ref.nested!.offset, `${l.path} offset`);
            assert.deepEqual(
              ours.nested!.qabsmax.as('u8'),
              ref.nested!.qabsmax.as('u8'),
              `${l.path} 8-bit absmax`,
            );
            assert.deepEqual(
              ours.nested!.absmax2.as('f32'),
              ref.nested!.absmax2.as('f32'),
              `${l.path} nested absmax`,
            );
          } else assert.deepEqual(ours.absmax!.as('f32'), ref.absmax!.as('f32'), `${l.path} absmax`);
        } finally {
          ref.dispose();
        }
      }
    } finally {
      model.dispose();
    }
  }
});

interface QloraJson extends BatchJson {
  loss: number;
  tokens: number;
  sgd_lr: number;
}

test('QLoRA (NF4 + double quant) forward, gradients and one SGD step match PEFT + bitsandbytes', async (t) => {
  const dir = fixture('quant');
  if (!dir || !existsSync(join(dir, 'qlora.json'))) return t.skip(SKIP);
  const e = JSON.parse(readFileSync(join(dir, 'qlora.json'), 'utf8')) as QloraJson;
  const want = openSafetensors(join(dir, 'qlora.safetensors'));
  const expect = (k: string): Float32Array => {
    const x = want.read(k, 'f32');
    const v = Float32Array.from(x.as('f32'));
    x.dispose();
    return v;
  };
  // Quantized here from the fp32 model (bit-identical to bitsandbytes' weights, tested above).
  const { model } = await loadModel(fixture('quant', 'tiny-base')!, { quantize: 'nf4', doubleQuant: true });
  try {
    loadAdapter(model, join(dir, 'qlora-adapter'), 'default');
    compareLogits(logitsOf(model, e), expect('logits'), 1e-4, 'QLoRA logits');
    const hb = padBatch(fixtureExamples(e));
    const loss = tidy(() => {
      const { batch, targets } = toDevice(hb);
      const total = lossSum(model, batch, targets, { ctx: { training: true } });
      backward(scale(total, 1 / hb.targetCount));
      return total.item() / hb.targetCount;
    });
    assert.ok(Math.abs(loss - e.loss) / e.loss < 1e-4, `loss ${loss} vs PEFT ${e.loss}`);
    const params = adapterParameters(model, 'default');
    for (const [key, p] of params)
      assertClose(p.grad!.toFloat32(), expect(`grad.${key}`), 1e-3, `grad ${key}`);
    const sgd = new Optimizer(params, { name: 'sgd', weightDecay: 0 });
    sgd.update(e.sgd_lr);
    sgd.zeroGrad();
    sgd.dispose();
    for (const [key, p] of params) assertClose(p.toFloat32(), expect(`sgd.${key}`), 1e-3, `after SGD ${key}`);
  } finally {
    model.dispose();
  }
});

test('a quantized model saved here loads in transformers + bitsandbytes (and here) with the same logits', async (t) => {
  const src = fixture('quant', 'tiny-base');
  const ref = fixture('quant', 'tiny-nf4-dq');
  if (!src || !ref) return t.skip(SKIP);
  const e = JSON.parse(readFileSync(join(ref, 'expected.json'), 'utf8')) as BatchJson;
  for (const [quantize, doubleQuant] of [
    ['nf4', true],
    ['fp4', false],
  ] as const) {
    const out = join(work, `saved-${quantize}`);
    const { model } = await loadModel(src, { quantize, doubleQuant });
    let ours: { values: Float32Array; keep: boolean[] };
    try {
      ours = logitsOf(model, e);
      saveQuantizedModel(model, out);
    } finally {
      model.dispose();
    }
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(src, f), join(out, f));
    const { model: again } = await loadModel(out);
    try {
      const back = logitsOf(again, e);
      assert.deepEqual(back.values, ours.values, 'reloaded here: identical logits');
    } finally {
      again.dispose();
    }
    if (!existsSync(python)) {
      t.diagnostic('the reference Python venv is absent: transformers loading skipped');
      continue;
    }
    writeFileSync(join(work, 'batch.json'), JSON.stringify({ ids: e.ids, mask: e.mask }));
    const r = spawnSync(
      python,
      [join(projectRoot, 'scripts/reference/quant_ref.py'), 'eval', out, join(work, 'batch.json')],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    const theirs = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { logits: number[]; modules: string[] };
    assert.ok(theirs.modules.includes('Linear4bit'), `transformers built ${theirs.modules.join(', ')}`);
    compareLogits(ours, theirs.logits, 1e-5, `${quantize} saved here, logits in transformers`);
  }
});

function cli(args: string[]) {
  return spawnSync(
    process.execPath,
    ['--import', 'tsx', join(projectRoot, 'test', 'lorakit-cli.mts'), ...args],
    { encoding: 'utf8', cwd: projectRoot },
  );
}

test('CLI: train --quantize nf4 --double-quant trains an adapter and reports base-weight bytes', (t) => {
  const src = fixture('quant', 'tiny-base');
  if (!src) return t.skip(SKIP);
  const data = join(work, 'train.jsonl');
  const rows = Array.from({ length: 12 }, (_, i) =>
    JSON.stringify({ text: `row ${i}: the quick brown fox jumps over the lazy dog ${i * 7}` }),
  );
  writeFileSync(data, `${rows.join('\n')}\n`);
  const out = join(work, 'run');
  const r = cli([
    'train',
    '--model',
    src,
    '--data',
    data,
    '--out',
    out,
    '--quantize',
    'nf4',
    '--double-quant',
    '--max-steps',
    '3',
    '--batch-size',
    '4',
    '--r',
    '4',
    '--lr',
    '1e-2',
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /base weights .*nf4\+dq/);
  assert.ok(existsSync(join(out, 'adapter', 'adapter_model.safetensors')));
  const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n');
  assert.equal(lines.length, 3);
  for (const l of lines) assert.ok(Number.isFinite((JSON.parse(l) as { loss: number }).loss));
  const ev = cli([
    'eval',
    '--model',
    src,
    '--adapter',
    join(out, 'adapter'),
    '--data',
    data,
    '--quantize',
    'nf4',
    '--double-quant',
    '--json',
  ]);
  assert.equal(ev.status, 0, ev.stderr);
  assert.ok(Number.isFinite((JSON.parse(ev.stdout) as { loss: number }).loss));
  const bad = cli(['train', '--model', src, '--data', data, '--out', join(work, 'bad'), '--double-quant']);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /--double-quant needs --quantize nf4 or fp4/);
  const badType = cli(['eval', '--model', src, '--data', data, '--quantize', 'q3']);
  assert.notEqual(badType.status, 0);
  assert.match(badType.stderr, /quantize/);
});

test('QLoRA training steps do not grow memory', async (t) => {
  const src = fixture('quant', 'tiny-base');
  if (!src) return t.skip(SKIP);
  const { model } = await loadModel(src, { quantize: 'nf4', doubleQuant: true });
  try {
    const { addAdapter } = await import('../src/peft/adapters.js');
    const { LORA_DEFAULTS } = await import('../src/peft/config.js');
    addAdapter(model, 'default', { ...LORA_DEFAULTS, r: 4, alpha: 8, dropout: 0.1 }, 3);
    const examples: Example[] = [
      { ids: [1, 5, 9, 20, 3, 7, 8], labels: [1, 5, 9, 20, 3, 7, 8] },
      { ids: [1, 4, 6], labels: [1, 4, 6] },
    ];
    const hb = padBatch(examples);
    const params = adapterParameters(model, 'default');
    const opt = new Optimizer(params, { name: 'adamw', weightDecay: 0 });
    const step = () =>
      tidy(() => {
        const { batch, targets } = toDevice(hb);
        backward(
          scale(lossSum(model, batch, targets, { ctx: { training: true, seed: 1 } }), 1 / hb.targetCount),
        );
        opt.update(1e-3);
        opt.zeroGrad();
      });
    step();
    step();
    const before = memoryStats().liveBytes;
    for (let i = 0; i < 5; i++) step();
    assert.equal(memoryStats().liveBytes, before, 'live native memory after 5 more steps');
    opt.dispose();
  } finally {
    model.dispose();
  }
});
