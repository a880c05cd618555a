// Merging adapters: weights equal PEFT's merge_and_unload (LoRA, rsLoRA, DoRA, with biases, tied
// heads, GQA), a merged adapter is applied once, unmerge restores the weights; `lorakit merge` writes a
// Hugging Face folder that transformers loads with the same logits as lorakit with the adapter.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { exportHF } from '../src/export/hf.js';
import { openSafetensors, openSafetensorsModel } from '../src/io/safetensors.js';
import type { CausalLM } from '../src/models/llama.js';
import { loadModel } from '../src/models/load.js';
import { addAdapter, adapterParameters, loadAdapter, setActiveAdapter } from '../src/peft/adapters.js';
import { LORA_DEFAULTS } from '../src/peft/config.js';
import { isMerged, mergeAdapter, mergedAdapters, unmergeAdapter } from '../src/peft/merge.js';
import { quantizeWeight, QuantizedWeight, weightToFloat32 } from '../src/quant/weight.js';
import { Tensor } from '../src/tensor/tensor.js';
import { assertClose, fixture, projectRoot, relError } from './helpers.js';
import { rowLogits } from './model-helpers.js';

const work = mkdtempSync(join(tmpdir(), 'lorakit-merge-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const python = join(projectRoot, '.venv-ref', 'bin', 'python');
const SKIP = 'reference fixtures are absent: run scripts/reference/make-all.sh';

function cli(args: string[]) {
  return spawnSync(
    process.execPath,
    ['--import', 'tsx', join(projectRoot, 'test', 'lorakit-cli.mts'), ...args],
    { encoding: 'utf8', cwd: projectRoot },
  );
}

const IDS = [
  [5, 17, 33, 60, 2, 91, 44, 7, 12, 80, 31],
  [9, 96, 3, 50, 50, 21, 1, 66, 70, 8, 40],
];

function logits(model: CausalLM, ids = IDS): Float32Array {
  return rowLogits(model, ids);
}

function weights(model: CausalLM): Map<string, Float32Array> {
  return new Map(model.linears().map((l) => [l.path, weightToFloat32(l.weight)]));
}

function assertWeights(model: CausalLM, want: Map<string, Float32Array>, what: string): void {
  for (const l of model.linears())
    assertClose(weightToFloat32(l.weight), want.get(l.path)!, 1e-6, `${what}: ${l.path}`);
}

/**
 * transformers' fp32 logits of model folders on `ids`, and AutoTokenizer's ids of `text` (one run of
 * scripts/reference/merge_ref.py).
 */
function hfRun(
  dirs: string[],
  ids = IDS,
  text?: string,
): { logits: Float32Array; tokens: number[] | null }[] {
  const idsPath = join(work, 'ids.json');
  writeFileSync(idsPath, JSON.stringify(ids));
  const args = [join(projectRoot, 'scripts/reference/merge_ref.py'), 'logits', idsPath, ...dirs];
  if (text !== undefined) {
    writeFileSync(join(work, 'text.txt'), text);
    args.push('--text', join(work, 'text.txt'));
  }
  const p = spawnSync(python, args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  assert.equal(p.status, 0, p.stderr);
  const out = JSON.parse(p.stdout.trim().split('\n').at(-1)!) as {
    logits: number[];
    tokens: number[] | null;
  }[];
  return out.map((o) => ({ logits: Float32Array.from(o.logits), tokens: o.tokens }));
}

function hfLogits(dirs: string[], ids = IDS): Float32Array[] {
  return hfRun(dirs, ids).map((o) => o.logits);
}

const CASES = [
  'llama-lora',
  'llama-rslora',
  'llama-dora',
  'llama-linear-dora',
  'llama3-tied-lora',
  'mistral-qv',
  'qwen2-lora',
  'qwen3-lora',
];

for (const c of CASES) {
  test(`merge ${c}: weights equal PEFT merge_and_unload, logits unchanged, unmerge restores`, async (t) => {
    const merged = fixture('merge', c, 'merged.safetensors');
    const adapter = fixture('peft', c, 'adapter');
    const expected = fixture('peft', c, 'expected.json');
    if (!merged || !adapter || !expected) return t.skip(SKIP);
    const modelName = (JSON.parse(readFileSync(expected, 'utf8')) as { model: string }).model;
    const { model } = await loadModel(fixture('models', modelName)!);
    try {
      const before = weights(model);
      const base = logits(model);
      loadAdapter(model, adapter, 'a');
      const adapted = logits(model);
      mergeAdapter(model, 'a');
      assert.deepEqual(mergedAdapters(model), ['a']);
      const ref = openSafetensors(merged);
      for (const l of model.linears()) {
        if (l === model.lmHead && !ref.has('lm_head.weight')) continue;
        const want = ref.read(`${l.path}.weight`, 'f32');
        assertClose(weightToFloat32(l.weight), want.as('f32'), 2e-6, `${c} ${l.path}`);
        want.dispose();
      }
      // The merged adapter is not applied a second time, active or not.
      assertClose(logits(model), adapted, 1e-5, `${c} logits after merge`);
      setActiveAdapter(model, null);
      assertClose(logits(model), adapted, 1e-5, `${c} logits after merge, no adapter active`);
      setActiveAdapter(model, 'a');
      assert.throws(() => mergeAdapter(model, 'a'), /lorakit: adapter 'a' is already merged\./);
      // Saving still sees the adapter's tensors.
      assert.ok(adapterParameters(model, 'a').length > 0);
      unmergeAdapter(model, 'a');
      assert.equal(isMerged(model, 'a'), false);
      assertWeights(model, before, `${c} unmerged`);
      assertClose(logits(model), adapted, 1e-5, `${c} logits after unmerge`);
      setActiveAdapter(model, null);
      assertClose(logits(model), base, 1e-5, `${c} base logits after unmerge`);
      assert.throws(() => unmergeAdapter(model, 'a'), /lorakit: adapter 'a' is not merged\./);
    } finally {
      model.dispose();
    }
  });
}

test('merge: order, training refusal, bf16 and quantized weights, a tied head the adapter targets', async (t) => {
  const dir = fixture('models', 'llama3-tied');
  if (!dir) return t.skip(SKIP);
  const { model } = await loadModel(dir);
  try {
    addAdapter(
      model,
      'x',
      { ...LORA_DEFAULTS, r: 3, alpha: 5, dropout: 0, targetModules: ['q_proj', 'lm_head'] },
      1,
    );
    addAdapter(
      model,
      'y',
      { ...LORA_DEFAULTS, r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj', 'down_proj'], useDora: true },
      2,
    );
    for (const name of ['x', 'y'])
      for (const [k, p] of adapterParameters(model, name))
        if (k.includes('lora_B')) p.as('f32').forEach((_, i, a) => (a[i] = 0.1 * Math.cos(i + 0.5)));
    const embed = model.embedTokens.toFloat32();
    const before = weights(model);
    setActiveAdapter(model, 'x');
    const withX = logits(model);
    mergeAdapter(model, 'x');
    // The tied head got a weight of its own; the embedding table did not move.
    assert.notEqual(model.lmHead.weight, model.embedTokens);
    assert.deepEqual(model.embedTokens.toFloat32(), embed);
    setActiveAdapter(model, 'y');
    const withXY = logits(model);
    mergeAdapter(model, 'y');
    assertClose(logits(model), withXY, 1e-5, 'x then y merged');
    assert.throws(() => unmergeAdapter(model, 'x'), /lorakit: unmerge 'y' first/);
    assert.throws(
      () =>
        model.logits(
          {
            ids: Tensor.from([1, 2], [1, 2], 'i32'),
            positions: Tensor.from([0, 1], [1, 2], 'i32'),
            segments: Tensor.from([1, 1], [1, 2], 'i32'),
          },
          { ctx: { training: true } },
        ),
      /lorakit: an adapter of .* is merged into the weights; unmerge it before training\./,
    );
    unmergeAdapter(model, 'y');
    unmergeAdapter(model, 'x');
    assert.equal(model.lmHead.weight, model.embedTokens);
    setActiveAdapter(model, 'x');
    assertClose(logits(model), withX, 1e-5, 'x alone after unmerging both');
    assertWeights(model, before, 'restored');
    assert.throws(() => mergeAdapter(model, 'nope'), /lorakit: no adapter named 'nope'/);
  } finally {
    model.dispose();
  }

  // bf16 storage: merged in place (rounded to bf16, as PEFT on a bf16 model).
  const bf = await loadModel(fixture('models', 'llama')!, { dtype: 'bfloat16' });
  try {
    loadAdapter(bf.model, fixture('peft', 'llama-lora', 'adapter')!, 'a');
    const adapted = logits(bf.model);
    mergeAdapter(bf.model, 'a');
    const q = bf.model.layers[0].q.weight;
    assert.ok(q instanceof Tensor && q.dtype === 'bf16', 'merged in place, still bf16');
    assert.ok(relError(logits(bf.model), adapted) < 2e-2);
    unmergeAdapter(bf.model, 'a');
  } finally {
    bf.model.dispose();
  }

  // A quantized base merges into a dequantized bf16 copy; unmerge gives back the quantized weight itself.
  const qm = await loadModel(fixture('models', 'llama')!);
  try {
    for (const l of qm.model.layers.flatMap((x) => x.linears())) {
      const dense = l.weight;
      assert.ok(dense instanceof Tensor);
      l.weight = quantizeWeight(dense, { type: 'nf4' });
      dense.dispose();
    }
    loadAdapter(qm.model, fixture('peft', 'llama-lora', 'adapter')!, 'a');
    const adapted = logits(qm.model);
    const q = qm.model.layers[0].q.weight;
    assert.ok(q instanceof QuantizedWeight);
    mergeAdapter(qm.model, 'a');
    const copy = qm.model.layers[0].q.weight;
    assert.ok(copy instanceof Tensor && copy.dtype === 'bf16', 'merged into a bf16 copy');
    assert.ok(relError(logits(qm.model), adapted) < 2e-2);
    // Exported, the merged quantized model is dense 16-bit.
    const out = join(work, 'from-nf4');
    const r = await exportHF(qm.model, qm.tokenizer, qm.path, out);
    assert.equal(r.dtype, 'bfloat16');
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(cfg.dtype, 'bfloat16');
    assert.equal(cfg.quantization_config, undefined);
    unmergeAdapter(qm.model, 'a');
    assert.equal(qm.model.layers[0].q.weight, q);
  } finally {
    qm.model.dispose();
  }
});

test('lorakit merge: a Hugging Face folder transformers loads with the logits of lorakit + adapter', async (t) => {
  const dir = fixture('models', 'llama-linear');
  const adapter = fixture('peft', 'llama-linear-dora', 'adapter');
  if (!dir || !adapter) return t.skip(SKIP);
  const out = join(work, 'merged-dora');
  const r = cli(['merge', '--model', dir, '--adapter', adapter, '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(readdirSync(out).sort(), [
    'config.json',
    'generation_config.json',
    'model.safetensors',
    'tokenizer.json',
    'tokenizer_config.json',
  ]);
  const { model } = await loadModel(dir);
  let ours: Float32Array;
  try {
    loadAdapter(model, adapter, 'default');
    ours = logits(model);
  } finally {
    model.dispose();
  }
  // Reloaded here, the folder gives the adapted logits with no adapter.
  const back = await loadModel(out);
  try {
    assertClose(logits(back.model), ours, 1e-5, 'lorakit on the merged folder');
  } finally {
    back.model.dispose();
  }
  // --dtype bfloat16, and sharding: a small shard limit splits the weights as save_pretrained does.
  const bf = join(work, 'merged-bf16');
  const r2 = cli(['merge', '--model', dir, '--adapter', adapter, '--out', bf, '--dtype', 'bfloat16']);
  assert.equal(r2.status, 0, r2.stderr);
  assert.equal(
    openSafetensors(join(bf, 'model.safetensors')).info('model.layers.0.self_attn.q_proj.weight').dtype,
    'BF16',
  );
  const sharded = join(work, 'merged-sharded');
  const { model: m2, tokenizer, path } = await loadModel(dir);
  try {
    loadAdapter(m2, adapter, 'default');
    const rep = await exportHF(m2, tokenizer, path, sharded, { adapter: 'default', maxShardBytes: 40_000 });
    assert.ok(
      rep.files.includes('model.safetensors.index.json') &&
        rep.files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length > 2,
    );
    assert.equal(
      openSafetensorsModel(sharded).tensors.size,
      openSafetensors(join(out, 'model.safetensors')).tensors.size,
    );
  } finally {
    m2.dispose();
  }
  if (!existsSync(python)) return t.skip('the reference venv is absent: run scripts/reference/make-all.sh');
  const [hf, hfBf16, hfSharded] = hfLogits([out, bf, sharded]);
  assertClose(hf, ours, 1e-4, 'transformers on the merged folder');
  assert.ok(relError(hfBf16, ours) < 3e-2, 'transformers on the bf16 folder');
  assertClose(hfSharded, ours, 1e-4, 'transformers on the sharded folder');
});

test('lorakit merge: bad input fails with one clear sentence and writes nothing', (t) => {
  const dir = fixture('models', 'llama');
  const adapter = fixture('peft', 'llama-lora', 'adapter');
  if (!dir || !adapter) return t.skip(SKIP);
  let r = cli(['merge', '--model', dir, '--out', join(work, 'x')]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^lorakit merge: --adapter is required\.\n$/);
  r = cli(['merge', '--model', dir, '--adapter', adapter]);
  assert.match(r.stderr, /^lorakit merge: --out is required\.\n$/);
  r = cli(['merge', '--model', dir, '--adapter', adapter, '--out', join(work, 'y'), '--dtype', 'float8']);
  assert.match(r.stderr, /--dtype must be one of float32, bfloat16, float16/);
  // An adapter made for another model.
  r = cli(['merge', '--model', fixture('models', 'qwen3')!, '--adapter', adapter, '--out', join(work, 'z')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^lorakit: .*adapter made for another base model\?\)\.\n$/);
  assert.equal(existsSync(join(work, 'z')), false);
  // The out folder exists and holds files: refused, untouched.
  const busy = join(work, 'busy');
  cli(['merge', '--model', dir, '--adapter', adapter, '--out', busy]);
  writeFileSync(join(busy, 'mine.txt'), 'keep');
  // Checked before the model loads: a usage error.
  r = cli(['merge', '--model', dir, '--adapter', adapter, '--out', busy]);
  assert.equal(r.status, 2);
  assert.match(
    r.stderr,
    /^lorakit merge: --out .* already exists and is not empty; choose a new folder\.\n$/,
  );
  assert.equal(readFileSync(join(busy, 'mine.txt'), 'utf8'), 'keep');
  assert.deepEqual(
    readdirSync(work).filter((f) => f.includes('.tmp')),
    [],
  );
});

test('merge onto a GGUF base (SmolLM2): synthesized config and tokenizer; transformers gives our logits and token ids', async (t) => {
  const cache = join(projectRoot, '.cache', 'models');
  const src = existsSync(cache) ? readdirSync(cache).find((f) => /smollm2.*\.gguf$/i.test(f)) : undefined;
  if (!src) return t.skip('SmolLM2 is absent: run scripts/fetch-smollm2.sh');
  const { model, tokenizer, path } = await loadModel(join(cache, src));
  const out = join(work, 'smollm2-merged');
  const ids = [tokenizer.encode('The capital of France is Paris, and the capital of Italy is')];
  let ours: Float32Array;
  try {
    addAdapter(
      model,
      'a',
      { ...LORA_DEFAULTS, r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj', 'down_proj'] },
      5,
    );
    for (const [k, p] of adapterParameters(model, 'a'))
      if (k.includes('lora_B')) p.as('f32').forEach((_, i, a) => (a[i] = 0.02 * Math.sin(i)));
    ours = logits(model, ids);
    const r = await exportHF(model, tokenizer, path, out, { adapter: 'a' });
    assert.deepEqual(r.warnings, []);
  } finally {
    model.dispose();
  }
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(config.rms_norm_eps, 1e-5, 'float metadata is written as the decimal it came from');
  assert.deepEqual(config.architectures, ['LlamaForCausalLM']);
  if (!existsSync(python)) return t.skip('the reference venv is absent: run scripts/reference/make-all.sh');
  const text =
    "Hello world! It's 2024-05-17, the 3rd time we've met: 1 12 123 1234. über café 😀 中文 <|im_start|>user";
  const [hf] = hfRun([out], ids, text);
  assertClose(hf.logits, ours, 1e-4, 'transformers on the folder merged from GGUF');
  assert.deepEqual(hf.tokens, tokenizer.encode(text), 'AutoTokenizer on the synthesized tokenizer.json');
});
