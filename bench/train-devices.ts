// LoRA training speed of one model shape on each device lorakit has — CUDA, WebGPU (Dawn, the
// `webgpu` package: the WebGPU implementation Chromium ships) and the CPU — in one run on one machine,
// with ratios. Random weights (bench/gpu/random-model.ts), r = 16 / alpha 16 on all seven linear
// kinds, AdamW lr 1e-4, no dropout, loss on every token, the trainer's own step
// (accumulateGradients + updateWeights: one value read back a step). Weights in each device's
// default compute dtype (bf16 on CUDA, f32 on WebGPU and the CPU) unless --dtype says otherwise.
//   node --import tsx bench/train-devices.ts [--shape smollm2-135m] [--devices cuda,webgpu,cpu]
//        [--seq 256] [--batch 4] [--steps 5] [--warmup 2] [--cpu-threads 2] [--dtype f32|bf16]
//        [--checkpointing]
// Each device runs in its own process (--one DEVICE prints one JSON line); a device that cannot run
// here prints its error in the table.
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { prepareDevice } from '../src/backend/device.js';
import { describeCpuPath } from '../src/backend/cpu/addon.js';
import { parseModelConfig } from '../src/models/config.js';
import { addAdapter, adapterParameters } from '../src/peft/adapters.js';
import { LORA_DEFAULTS } from '../src/peft/config.js';
import type { Device } from '../src/tensor/tensor.js';
import { padBatch } from '../src/train/batching.js';
import { Optimizer } from '../src/train/optimizer.js';
import { accumulateGradients, updateWeights, type StepContext } from '../src/train/step.js';
import { freeRandomSources, randomModel, SHAPES } from './gpu/random-model.js';

const { values: a } = parseArgs({
  options: {
    shape: { type: 'string', default: 'smollm2-135m' },
    devices: { type: 'string', default: 'cuda,webgpu,cpu' },
    seq: { type: 'string', default: '256' },
    batch: { type: 'string', default: '4' },
    steps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    'cpu-threads': { type: 'string', default: '2' },
    dtype: { type: 'string' },
    checkpointing: { type: 'boolean', default: false },
    one: { type: 'string' },
  },
});

interface Row {
  device: string;
  what?: string;
  tokens_per_s?: number;
  step_ms?: number;
  loss?: number;
  error?: string;
}

async function runOne(device: Device): Promise<Row> {
  await prepareDevice(device);
  const config = parseModelConfig(SHAPES[a.shape!], a.shape!);
  const dtype = (a.dtype ?? (device === 'cuda' ? 'bf16' : 'f32')) as 'bf16' | 'f32';
  const model = randomModel(config, false, { device, dtype });
  freeRandomSources();
  addAdapter(
    model,
    'default',
    { ...LORA_DEFAULTS, r: 16, alpha: 16, dropout: 0, targetModules: 'all-linear' },
    1,
  );
  const named = adapterParameters(model, 'default');
  const params = named.map(([, t]) => t);
  const opt = new Optimizer(named, { name: 'adamw', weightDecay: 0 });
  const B = Number(a.batch);
  const T = Number(a.seq);
  let s = 7;
  const rand = (): number => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s % config.vocabSize);
  const batch = padBatch(
    Array.from({ length: B }, () => {
      const ids = Array.from({ length: T }, rand);
      return { ids, labels: ids };
    }),
  );
  const ctx: StepContext = {
    adapter: 'default',
    seed: 0,
    step: 0,
    checkpointing: a.checkpointing === true,
    offloadCheckpoints: false,
  };
  let loss = NaN;
  const step = async (): Promise<void> => {
    loss = (await accumulateGradients(model, [batch], ctx, batch.targetCount)) / batch.targetCount;
    await updateWeights(opt, params, 1e-4, 0);
    ctx.step++;
  };
  for (let i = 0; i < Number(a.warmup); i++) await step();
  const t0 = performance.now();
  const steps = Number(a.steps);
  for (let i = 0; i < steps; i++) await step(); // each step ends reading its loss: the device is done
  const stepMs = (performance.now() - t0) / steps;
  let what = `${dtype} weights`;
  if (device === 'cpu') what += `, ${describeCpuPath()}`;
  if (device === 'webgpu') what += `, ${(await import('../src/backend/webgpu/gpu.js')).webGpu().adapter}`;
  if (device === 'cuda')
    what += `, ${(await import('../src/backend/cuda/addon.js')).cudaAddon()!.deviceName()}`;
  opt.dispose();
  model.dispose();
  return { device, what, tokens_per_s: (B * T) / (stepMs / 1000), step_ms: stepMs, loss };
}

if (a.one) {
  const device = a.one as Device;
  const row = await runOne(device).catch((e: unknown) => ({
    device,
    error: e instanceof Error ? e.message : String(e),
  }));
  process.stdout.write(`${JSON.stringify(row)}\n`);
  process.exit(0);
}

const self = fileURLToPath(import.meta.url);
const forward = process.argv.slice(2).filter((x, i, all) => x !== '--devices' && all[i - 1] !== '--devices');
const rows: Row[] = a.devices!.split(',').map((device) => {
  const env = { ...process.env };
  if (device === 'cpu') env.OMP_NUM_THREADS = a['cpu-threads'];
  const r = spawnSync(process.execPath, [...process.execArgv, self, ...forward, '--one', device], {
    encoding: 'utf8',
    env,
    maxBuffer: 1 << 26,
  });
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line) as Row;
  } catch {
    return { device, error: (r.stderr || line || `exit ${r.status}`).trim().split('\n').slice(-3).join(' ') };
  }
});

console.log(
  `\nLoRA training, ${a.shape} shape (random weights), r 16 all-linear, batch ${a.batch} × ${a.seq} tokens, ` +
    `${a.steps} timed steps after ${a.warmup}; CPU with ${a['cpu-threads']} threads of ${cpus().length} (${cpus()[0]?.model ?? '?'})`,
);
const byDevice = new Map(rows.map((r) => [r.device, r]));
const ref = (d: string): number | undefined => byDevice.get(d)?.tokens_per_s;
console.log(
  '| device | tokens/s | step ms | loss | ÷ CUDA | ÷ CPU | what |\n| --- | --- | --- | --- | --- | --- | --- |',
);
for (const r of rows) {
  const ratio = (d: string): string => {
    const x = ref(d);
    return r.tokens_per_s !== undefined && x ? `${(r.tokens_per_s / x).toFixed(2)}×` : '-';
  };
  console.log(
    r.error !== undefined
      ? `| ${r.device} | error: ${r.error.slice(0, 160)} | | | | | |`
      : `| ${r.device} | ${r.tokens_per_s!.toFixed(1)} | ${r.step_ms!.toFixed(1)} | ${r.loss!.toFixed(4)} | ${ratio('cuda')} | ${ratio('cpu')} | ${r.what} |`,
  );
}
