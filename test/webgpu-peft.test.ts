// LoRA parity with PEFT through the WebGPU backend: the PEFT fixtures (scripts/reference/peft_ref.py)
// loaded onto a webgpu model, the training step's own code (accumulateGradients, the optimizer), and
// the same expectations as test/peft.test.ts: loss, every adapter gradient, one SGD step, five AdamW
// steps. Then the adapter saved from the device loads on the CPU with the same loss, and merges there.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openSafetensors } from '../src/io/safetensors.js';
import { loadModel } from '../src/models/load.js';
import { adapterParameters, loadAdapter, saveAdapter } from '../src/peft/adapters.js';
import { mergeAdapter } from '../src/peft/merge.js';
import { padBatch } from '../src/train/batching.js';
import { Optimizer } from '../src/train/optimizer.js';
import { accumulateGradients } from '../src/train/step.js';
import type { Example } from '../src/train/data.js';
import type { CausalLM } from '../src/models/llama.js';
import { assertClose, fixture } from './helpers.js';
import { fixtureExamples, rowLogits } from './model-helpers.js';
import { WEBGPU_SKIP } from './webgpu-helpers.js';

interface Expected {
  model: string;
  ids: number[][];
  mask: number[][];
  labels: number[][];
  loss_sum: number;
  loss_tokens: number;
  sgd_lr: number;
  adamw: { lr: number; beta1: number; beta2: number; eps: number; weight_decay: number; losses: number[] };
}

// Every case, DoRA (weightNorm on the device) and modules_to_save (trainable head and embeddings) too.
const cases = fixture('peft') ? readdirSync(fixture('peft')!).sort() : [];
const skip =
  WEBGPU_SKIP || (cases.length === 0 ? 'fixture missing: run scripts/reference/make-all.sh' : false);

/** Mean loss of one training-mode step over the examples, gradients accumulated (the trainer's code). */
async function step(model: CausalLM, examples: Example[]): Promise<number> {
  const hb = padBatch(examples);
  const ctx = { adapter: 'default', seed: 0, step: 0, checkpointing: false, offloadCheckpoints: false };
  return (await accumulateGradients(model, [hb], ctx, hb.targetCount)) / hb.targetCount;
}

for (const name of cases)
  test(`WebGPU PEFT parity: ${name}`, { skip }, async () => {
    const dir = fixture('peft', name)!;
    const e = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected;
    const modelDir = fixture('models', e.model)!;
    const examples = fixtureExamples(e);
    const want = openSafetensors(join(dir, 'expected.safetensors'));
    const expect = (prefix: string, key: string): Float32Array => {
      // PEFT saves DoRA's magnitude as a module's weight.
      const k = key.endsWith('lora_magnitude_vector') ? `${key}.weight` : key;
      const t = want.read(`${prefix}.${k}`, 'f32');
      const v = Float32Array.from(t.as('f32'));
      t.dispose();
      return v;
    };
    const { model } = await loadModel(modelDir, { device: 'webgpu' });
    const out = mkdtempSync(join(tmpdir(), 'lorakit-webgpu-peft-'));
    try {
      loadAdapter(model, join(dir, 'adapter'), 'default');
      const params = adapterParameters(model, 'default');
      const loss = await step(model, examples);
      const wantLoss = e.loss_sum / e.loss_tokens;
      assert.ok(Math.abs(loss - wantLoss) / wantLoss < 1e-4, `loss ${loss} vs PEFT ${wantLoss}`);
      for (const [key, p] of params)
        assertClose(await p.grad!.toFloat32Async(), expect('grad', key), 1e-4, `grad ${key}`);
      const sgd = new Optimizer(params, { name: 'sgd', weightDecay: 0 });
      sgd.update(e.sgd_lr);
      sgd.zeroGrad();
      sgd.dispose();
      for (const [key, p] of params)
        assertClose(await p.toFloat32Async(), expect('sgd', key), 1e-4, `after SGD ${key}`);
      // Saved from the device, loaded on the CPU: the same loss there.
      await saveAdapter(model, 'default', join(out, 'adapter'));
      const ours = await step(model, examples);
      const { model: cpu } = await loadModel(modelDir);
      try {
        const config = loadAdapter(cpu, join(out, 'adapter'), 'default');
        const onCpu = await step(cpu, examples);
        assert.ok(Math.abs(onCpu - ours) / ours < 1e-5, `CPU loads the WebGPU adapter: ${onCpu} vs ${ours}`);
        // ... and merges it there (DoRA included; an adapter with its own embeddings cannot merge).
        if (config.modulesToSave.length === 0) {
          const adapted = rowLogits(cpu, e.ids);
          mergeAdapter(cpu, 'default');
          assertClose(rowLogits(cpu, e.ids), adapted, 1e-5, 'logits after merging on the CPU');
        }
      } finally {
        cpu.dispose();
      }
    } finally {
      model.dispose();
      rmSync(out, { recursive: true, force: true });
    }
    const { model: m2 } = await loadModel(modelDir, { device: 'webgpu' });
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
        losses.push(await step(m2, examples));
        opt.update(a.lr);
        opt.zeroGrad();
      }
      opt.dispose();
      assertClose(losses, a.losses, 1e-3, 'AdamW losses');
      for (const [key, p] of params)
        assertClose(await p.toFloat32Async(), expect('adamw', key), 1e-3, `after 5 AdamW steps ${key}`);
    } finally {
      m2.dispose();
      want.close();
    }
  });
