// lorakit side of bench/train-cpu.ts (a separate process, so its peak RSS is its own).
import { readFileSync } from 'node:fs';
import { backward } from '../src/autograd/tape.js';
import { loadModel } from '../src/models/load.js';
import { scale } from '../src/ops/elementwise.js';
import { adapterParameters, addAdapter } from '../src/peft/adapters.js';
import { LORA_DEFAULTS } from '../src/peft/config.js';
import { padBatch, toDevice } from '../src/train/batching.js';
import { lossSum } from '../src/train/loss.js';
import { clipGradNorm, Optimizer } from '../src/train/optimizer.js';
import { memoryStats, tidy } from '../src/tensor/tensor.js';

const [gguf, batchesPath, r, checkpointing] = process.argv.slice(2);
const batches = JSON.parse(readFileSync(batchesPath, 'utf8')) as {
  ids: number[][];
  mask: number[][];
  labels: number[][];
}[];
const { model } = await loadModel(gguf);
addAdapter(model, 'default', { ...LORA_DEFAULTS, r: Number(r), alpha: 2 * Number(r), dropout: 0.05 }, 0);
const params = adapterParameters(model, 'default');
const opt = new Optimizer(params, { name: 'adamw', weightDecay: 0.01 });
const times: number[] = [];
const tokens: number[] = [];
memoryStats(true);
for (const [step, b] of batches.entries()) {
  const examples = b.ids.map((row, i) => {
    const n = b.mask[i].reduce((x, y) => x + y, 0);
    return { ids: row.slice(0, n), labels: b.labels[i].slice(0, n) };
  });
  const hb = padBatch(examples);
  const t0 = performance.now();
  tidy(() => {
    const { batch, targets } = toDevice(hb);
    const total = lossSum(model, batch, targets, {
      ctx: { training: true, seed: step },
      checkpointing: checkpointing === '1',
    });
    backward(scale(total, 1 / hb.targetCount));
  });
  await clipGradNorm(
    params.map(([, t]) => t),
    1.0,
  );
  opt.update(1e-4);
  opt.zeroGrad();
  times.push((performance.now() - t0) / 1000);
  tokens.push(examples.reduce((n, e) => n + e.ids.length, 0));
}
const rate = tokens.slice(1).reduce((a, b) => a + b, 0) / times.slice(1).reduce((a, b) => a + b, 0);
console.log(
  JSON.stringify({
    tokens_per_s: rate,
    peak_rss: process.resourceUsage().maxRSS * 1024,
    peak_tensor_bytes: memoryStats().peakBytes,
    steps: batches.length,
  }),
);
