// LoRA parity with PEFT + torch autograd (fixtures from scripts/reference/peft_ref.py): loading PEFT's
// adapter files, the loss, gradients of every adapter tensor, one SGD step, five AdamW steps; and the
// adapter files lorakit writes loading in PEFT with the same loss.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openSafetensors } from '../src/io/safetensors.js';
import { loadModel } from '../src/models/load.js';
import {
  adapterFiles,
  adapterFromFiles,
  adapterParameters,
  addAdapter,
  loadAdapter,
  saveAdapter,
} from '../src/peft/adapters.js';
import { LORA_DEFAULTS } from '../src/peft/config.js';
import { Optimizer } from '../src/train/optimizer.js';
import { assertClose, fixture, projectRoot } from './helpers.js';
import { fixtureExamples, stepLoss } from './model-helpers.js';

interface Expected {
  model: string;
  variant: string;
  ids: number[][];
  mask: number[][];
  labels: number[][];
  loss_sum: number;
  loss_tokens: number;
  sgd_lr: number;
  adamw: { lr: number; beta1: number; beta2: number; eps: number; weight_decay: number; losses: number[] };
}

const python = join(projectRoot, '.venv-ref', 'bin', 'python');
const cases = fixture('peft') ? readdirSync(fixture('peft')!).sort() : [];

test('PEFT fixtures are present', (t) => {
  if (cases.length === 0) t.skip('fixture missing: run scripts/reference/make-all.sh');
});

for (const name of cases) {
  test(`PEFT parity: ${name}`, async () => {
    const dir = fixture('peft', name)!;
    const e = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected;
    const modelDir = fixture('models', e.model)!;
    const examples = fixtureExamples(e);
    const want = openSafetensors(join(dir, 'expected.safetensors'));
    const expect = (prefix: string, key: string) => {
      const k = `${prefix}.${key.endsWith('lora_magnitude_vector') ? `${key}.weight` : key}`;
      const t = want.read(k, 'f32');
      const v = Float32Array.from(t.as('f32'));
      t.dispose();
      return v;
    };
    const { model } = await loadModel(modelDir);
    try {
      loadAdapter(model, join(dir, 'adapter'), 'default');
      const params = adapterParameters(model, 'default');
      // Loss and gradients.
      const loss = stepLoss(model, examples, true);
      const wantLoss = e.loss_sum / e.loss_tokens;
      assert.ok(Math.abs(loss - wantLoss) / wantLoss < 1e-4, `loss ${loss} vs PEFT ${wantLoss}`);
      for (const [key, p] of params)
        assertClose(p.grad!.toFloat32(), expect('grad', key), 1e-4, `grad ${key}`);
      // One SGD step.
      const sgd = new Optimizer(params, { name: 'sgd', weightDecay: 0 });
      sgd.update(e.sgd_lr);
      sgd.zeroGrad();
      sgd.dispose();
      for (const [key, p] of params) assertClose(p.toFloat32(), expect('sgd', key), 1e-4, `after SGD ${key}`);
      // Our saved adapter loads in PEFT with the same loss.
      const out = mkdtempSync(join(tmpdir(), 'lorakit-peft-'));
      try {
        await saveAdapter(model, 'default', join(out, 'adapter'));
        const ours = stepLoss(model, examples, false);
        if (existsSync(python)) {
          writeFileSync(
            join(out, 'batch.json'),
            JSON.stringify({ ids: e.ids, mask: e.mask, labels: e.labels }),
          );
          const r = spawnSync(
            python,
            [
              join(projectRoot, 'scripts/reference/peft_eval.py'),
              modelDir,
              join(out, 'adapter'),
              join(out, 'batch.json'),
            ],
            { encoding: 'utf8' },
          );
          assert.equal(r.status, 0, r.stderr);
          const peftLoss = (JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { loss: number }).loss;
          assert.ok(
            Math.abs(peftLoss - ours) / ours < 1e-4,
            `PEFT loads our adapter: loss ${peftLoss} vs ours ${ours}`,
          );
        }
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    } finally {
      model.dispose();
    }
    // Five AdamW steps from PEFT's saved adapter.
    const { model: m2 } = await loadModel(modelDir);
    try {
      loadAdapter(m2, join(dir, 'adapter'), 'default');
      const params = adapterParameters(m2, 'default');
      const a = e.adamw;
      const opt = new Optimizer(params, {
        name: 'adamw',
        weightDecay: a.weight_decay,
        beta1: a.beta1,
        beta2: a.beta2,
        eps: a.eps,
      });
      const losses: number[] = [];
      for (let s = 0; s < 5; s++) {
        losses.push(stepLoss(m2, examples, true));
        opt.update(a.lr);
        opt.zeroGrad();
      }
      opt.dispose();
      assertClose(losses, a.losses, 1e-3, 'AdamW losses');
      for (const [key, p] of params)
        assertClose(p.toFloat32(), expect('adamw', key), 1e-3, `after 5 AdamW steps ${key}`);
    } finally {
      m2.dispose();
      want.close();
    }
  });
}

test('adapters for another base model or with unknown targets are refused', async (t) => {
  const llama = fixture('models', 'llama');
  const qwen3Adapter = fixture('peft', 'qwen3-lora', 'adapter');
  if (!llama || !qwen3Adapter) return t.skip('fixture missing: run scripts/reference/make-all.sh');
  const { model } = await loadModel(llama);
  const tmp = mkdtempSync(join(tmpdir(), 'lorakit-bad-adapter-'));
  try {
    // qwen3's q_proj has other shapes (head_dim 24): a clear error naming the tensor and shapes.
    assert.throws(() => loadAdapter(model, qwen3Adapter, 'x'), /has shape \[.*\], this model needs/);
    assert.equal(model.adapterConfigs.size, 0, 'a refused adapter leaves nothing behind');
    assert.throws(
      () => addAdapter(model, 'y', { ...LORA_DEFAULTS, targetModules: ['c_attn'] }),
      /target module 'c_attn' matches no layer/,
    );
    cpSync(qwen3Adapter, join(tmp, 'a'), { recursive: true });
    const cfgPath = join(tmp, 'a', 'adapter_config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, peft_type: 'PREFIX_TUNING' }));
    assert.throws(() => loadAdapter(model, join(tmp, 'a'), 'z'), /peft_type 'PREFIX_TUNING' is not LORA/);
    assert.throws(() => loadAdapter(model, join(tmp, 'missing'), 'w'), /not a PEFT adapter folder/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    model.dispose();
  }
});

test('adapterFiles: the bytes saveAdapter writes, without a file system; adapterFromFiles loads them back', async (t) => {
  const llama = fixture('models', 'llama');
  const mts = fixture('peft', 'llama-mts', 'adapter');
  if (!llama || !mts) return t.skip('fixture missing: run scripts/reference/make-all.sh');
  const { model } = await loadModel(llama);
  const out = mkdtempSync(join(tmpdir(), 'lorakit-adapter-files-'));
  try {
    // A PEFT adapter with modules_to_save, so the file holds LoRA factors and a full embedding copy.
    loadAdapter(model, mts, 'a');
    await saveAdapter(model, 'a', out);
    const files = await adapterFiles(model, 'a');
    assert.deepEqual(readdirSync(out).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
    assert.equal(files['adapter_config.json'], readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    assert.deepEqual(
      Buffer.from(files['adapter_model.safetensors']),
      readFileSync(join(out, 'adapter_model.safetensors')),
    );
    const config = adapterFromFiles(
      model,
      { ...files, 'adapter_config.json': new TextEncoder().encode(files['adapter_config.json']) },
      'b',
    );
    // target_modules is a set in PEFT: the order a file lists them in carries no meaning.
    const sorted = (c: typeof config | undefined) =>
      c && {
        ...c,
        targetModules: Array.isArray(c.targetModules) ? [...c.targetModules].sort() : c.targetModules,
      };
    assert.deepEqual(sorted(config), sorted(model.adapterConfigs.get('a')));
    const b = new Map(adapterParameters(model, 'b'));
    for (const [key, p] of adapterParameters(model, 'a'))
      assert.deepEqual(b.get(key)!.toFloat32(), p.toFloat32(), key);
    assert.throws(
      () => adapterFromFiles(model, { ...files, 'adapter_model.safetensors': new Uint8Array(4) }, 'c'),
      /^Error: lorakit: adapter_model\.safetensors: /,
    );
    assert.ok(!model.adapterConfigs.has('c'), 'a refused adapter leaves nothing behind');
  } finally {
    rmSync(out, { recursive: true, force: true });
    model.dispose();
  }
});
