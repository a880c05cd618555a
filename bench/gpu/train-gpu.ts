// lorakit LoRA / QLoRA training speed on one GPU, next to transformers + PEFT (+ bitsandbytes) and
// Unsloth measured by bench/gpu/baselines.sh in the same session (their JSON lines are read from
// --baselines). Random weights with the real shapes of Llama-3.2-1B, Qwen2.5-0.5B and Llama-3.1-8B;
// r = 16, alpha 16 on all seven linear kinds, activation checkpointing, AdamW lr 1e-4, no clipping,
// random token ids, loss on every token, batch × seq tokens per step, bf16 base (LoRA) or NF4 +
// double quant (QLoRA).
//   node --import tsx bench/gpu/train-gpu.ts [--shapes qwen2.5-0.5b,llama-3.2-1b,llama-3.1-8b]
//        [--modes lora,qlora] [--seq 2048] [--batch 1] [--steps 12] [--warmup 3] [--baselines file.jsonl]
//        [--offload]   (keep each layer's checkpointed input in pinned host memory, as Unsloth's default)
//        [--profile]   (after the timed steps, one more step with GPU time per op, to stderr)
// Each (shape, mode) runs in its own process (--one shape:mode prints one JSON line).
// MFU counts model FLOPs only (no recompute): per token 2·P forward + 2·P for the input gradients of the
// frozen linears (P = linear parameters incl. the head) + 2·2·P_lora for the adapters' weight gradients,
// plus causal attention 3 × 2·2·(T/2)·Hq·D per layer; divided by the bf16 GEMM rate measured here.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { backward } from '../../src/autograd/tape.js';
import { cudaAddon } from '../../src/backend/cuda/addon.js';
import { profileCuda } from '../../src/backend/cuda/profile.js';
import { kernel } from '../../src/backend/kernels.js';
import { useDevice } from '../../src/backend/device.js';
import { parseModelConfig } from '../../src/models/config.js';
import { scale } from '../../src/ops/elementwise.js';
import { addAdapter, adapterParameters } from '../../src/peft/adapters.js';
import { LORA_DEFAULTS } from '../../src/peft/config.js';
import { keep, memoryStats, Tensor, tidy } from '../../src/tensor/tensor.js';
import { lossSum } from '../../src/train/loss.js';
import { Optimizer } from '../../src/train/optimizer.js';
import { freeRandomSources, randomBf16, randomModel, SHAPES } from './random-model.js';

const { values: args } = parseArgs({
  options: {
    shapes: { type: 'string', default: 'qwen2.5-0.5b,llama-3.2-1b,llama-3.1-8b' },
    modes: { type: 'string', default: 'lora,qlora' },
    seq: { type: 'string', default: '2048' },
    batch: { type: 'string', default: '1' },
    steps: { type: 'string', default: '12' },
    warmup: { type: 'string', default: '3' },
    baselines: { type: 'string' },
    one: { type: 'string' },
    offload: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
  },
});

/** The bf16 GEMM rate of this GPU through the same cuBLASLt path (8192³), in FLOP/s. */
function measureGemmRate(): number {
  const n = 8192;
  const a = randomBf16([n, n]);
  const c = Tensor.empty([n, n], 'bf16', 'cuda');
  const run = () =>
    kernel('cuda', 'gemm')(c, a, a, null, {
      batch: 1,
      m: n,
      n,
      k: n,
      transA: false,
      transB: true,
      alpha: 1,
      beta: 0,
      strideA: n * n,
      strideB: n * n,
      strideC: n * n,
    });
  for (let i = 0; i < 3; i++) run();
  cudaAddon()!.synchronize();
  const reps = 20;
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) run();
  cudaAddon()!.synchronize();
  const s = (performance.now() - t0) / 1000;
  a.dispose();
  c.dispose();
  return (2 * n * n * n * reps) / s;
}

function runOne(shape: string, mode: string): Record<string, unknown> {
  useDevice('cuda');
  const cu = cudaAddon()!;
  const seq = Number(args.seq);
  const batch = Number(args.batch);
  const steps = Number(args.steps);
  const warmup = Number(args.warmup);
  const config = parseModelConfig(SHAPES[shape], shape);
  const gemmRate = measureGemmRate();
  const t0 = performance.now();
  const model = randomModel(config, mode === 'qlora');
  freeRandomSources();
  addAdapter(
    model,
    'default',
    { ...LORA_DEFAULTS, r: 16, alpha: 16, dropout: 0, targetModules: 'all-linear' },
    1,
  );
  const params = adapterParameters(model, 'default');
  const opt = new Optimizer(params, { name: 'adamw', weightDecay: 0 });
  const buildS = (performance.now() - t0) / 1000;
  const N = batch * seq;
  let s = 7;
  const ids = Array.from(
    { length: N },
    () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s % config.vocabSize),
  );
  const shape2 = [batch, seq];
  const hostBatch = {
    ids: keep(Tensor.from(ids, shape2, 'i32')),
    positions: keep(
      Tensor.from(
        Array.from({ length: N }, (_, i) => i % seq),
        shape2,
        'i32',
      ),
    ),
    segments: keep(Tensor.from(new Array<number>(N).fill(1), shape2, 'i32')),
  };
  const targets = keep(Tensor.from([...ids.slice(1), -100], [N], 'i32'));
  let loss = NaN;
  const step = () => {
    loss = tidy(() => {
      const total = lossSum(model, hostBatch, targets, {
        checkpointing: true,
        offloadCheckpoints: args.offload,
        ctx: { training: true, adapter: 'default', seed: 0 },
      });
      backward(scale(total, 1 / (N - 1)));
      return total.item() / (N - 1);
    });
    opt.update(1e-4);
    opt.zeroGrad();
  };
  for (let i = 0; i < warmup; i++) step();
  cu.synchronize();
  memoryStats(true, 'cuda');
  const t1 = performance.now();
  for (let i = 0; i < steps; i++) step();
  cu.synchronize();
  const stepS = (performance.now() - t1) / 1000 / steps;
  const [, reserved, peak, peakReserved] = cu.memoryStats(false);
  if (args.profile) printProfile(`${shape} ${mode}`, step);
  // Model FLOPs per step (see the header).
  let linearParams = 0;
  for (const l of model.linears()) linearParams += l.outFeatures * l.inFeatures;
  const loraParams = params.reduce((a, [, t]) => a + t.size, 0);
  const attn = config.numLayers * 3 * 2 * 2 * (seq / 2) * config.numHeads * config.headDim;
  const flops = N * (4 * linearParams + 4 * loraParams + attn);
  const result = {
    impl: args.offload ? 'lorakit-offload' : 'lorakit',
    mode,
    shape,
    seq,
    batch,
    tokens_per_s: N / stepS,
    step_ms: stepS * 1000,
    peak_mem_gib: peak / 2 ** 30,
    peak_reserved_gib: Math.max(peakReserved, reserved) / 2 ** 30,
    mfu: flops / stepS / gemmRate,
    gemm_tflops: gemmRate / 1e12,
    loss,
    build_s: buildS,
    trainable_params: loraParams,
    device: cu.deviceName(),
  };
  opt.dispose();
  model.dispose();
  return result;
}

/** One more step with GPU time per op: a table on stderr (stdout carries the JSON line). */
function printProfile(what: string, step: () => void): void {
  const t0 = performance.now();
  const p = profileCuda(step);
  const wallMs = performance.now() - t0;
  const opMs = p.ops.reduce((a, o) => a + o.ms, 0);
  const lines = [
    `\n${what}: one step, ${wallMs.toFixed(1)} ms wall, GPU span ${p.spanMs.toFixed(1)} ms, in ops ${opMs.toFixed(1)} ms (${((100 * opMs) / p.spanMs).toFixed(1)}%)`,
    '| op | calls | GPU ms | % of span |',
    '|---|---|---|---|',
    ...p.ops.map(
      (o) => `| ${o.op} | ${o.calls} | ${o.ms.toFixed(2)} | ${((100 * o.ms) / p.spanMs).toFixed(1)} |`,
    ),
  ];
  process.stderr.write(lines.join('\n') + '\n');
}

function table(rows: Record<string, unknown>[]): void {
  const f = (v: unknown, d = 0) => (typeof v === 'number' ? v.toFixed(d) : String(v ?? '-'));
  const key = (r: Record<string, unknown>) => `${r.shape} ${r.mode}`;
  const ours = rows.filter((r) => String(r.impl).startsWith('lorakit'));
  console.log(
    '\n| shape | mode | impl | tokens/s | peak GiB | MFU | lorakit tokens/s ÷ this | this peak ÷ lorakit peak |\n|---|---|---|---|---|---|---|---|',
  );
  for (const o of ours)
    for (const r of rows.filter((x) => key(x) === key(o))) {
      const ok = typeof r.tokens_per_s === 'number';
      console.log(
        `| ${r.shape} | ${r.mode} | ${r.impl} | ${ok ? f(r.tokens_per_s) : `error: ${String(r.error ?? '').slice(0, 60)}`} | ${f(r.peak_mem_gib, 2)} | ${String(r.impl).startsWith('lorakit') ? f((r.mfu as number) * 100, 1) + '%' : '-'} | ${ok ? ((o.tokens_per_s as number) / (r.tokens_per_s as number)).toFixed(2) : '-'} | ${ok ? ((r.peak_mem_gib as number) / (o.peak_mem_gib as number)).toFixed(2) : '-'} |`,
      );
    }
}

if (args.one) {
  const [shape, mode] = args.one.split(':');
  try {
    console.log(JSON.stringify(runOne(shape, mode)));
  } catch (e) {
    console.log(JSON.stringify({ impl: 'lorakit', shape, mode, error: (e as Error).message }));
    process.exitCode = 1;
  }
} else {
  const rows: Record<string, unknown>[] = [];
  for (const shape of args.shapes!.split(','))
    for (const mode of args.modes!.split(',')) {
      let line = '';
      try {
        line = execFileSync(
          process.execPath,
          [
            ...process.execArgv,
            new URL(import.meta.url).pathname,
            '--one',
            `${shape}:${mode}`,
            '--seq',
            args.seq!,
            '--batch',
            args.batch!,
            '--steps',
            args.steps!,
            '--warmup',
            args.warmup!,
            ...(args.offload ? ['--offload'] : []),
            ...(args.profile ? ['--profile'] : []),
          ],
          { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
        );
      } catch (e) {
        line =
          (e as { stdout?: string }).stdout ??
          JSON.stringify({ impl: 'lorakit', shape, mode, error: String(e) });
      }
      const last = line.trim().split('\n').at(-1)!;
      console.log(last);
      rows.push(JSON.parse(last) as Record<string, unknown>);
    }
  if (args.baselines && existsSync(args.baselines))
    for (const l of readFileSync(args.baselines, 'utf8').split('\n'))
      if (l.trim().startsWith('{')) rows.push(JSON.parse(l) as Record<string, unknown>);
  table(rows);
}
