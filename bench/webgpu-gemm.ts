// WebGPU GEMM rate next to the CPU backend's, measured in the same run on the same shapes: fp32
// square products, x·Wᵀ with a frozen bf16 W (linear), decode-shaped GEMVs (a few rows against a
// bf16 W, the skinny kernel) and LoRA's rank-16 sides.
//
//   node --import tsx bench/webgpu-gemm.ts [--sizes 256,512,1024] [--linear 512,1024] [--min-time S]
//
// WebGPU work is enqueued back to back and timed to the end of an asynchronous read (which waits for
// it all), in batches of enough products to last about 50 ms, so submit and read latency are spread
// over the batch; the CPU is timed product by product. Rates are medians of the timed runs after
// warm-up (the first WebGPU run also compiles the pipeline). On Mesa's lavapipe (software Vulkan)
// the WebGPU column measures the CPU through a shader compiler, not a GPU.
import { parseArgs } from 'node:util';
import { prepareDevice } from '../src/backend/device.js';
import { webGpu } from '../src/backend/webgpu/gpu.js';
import { gemmInto } from '../src/ops/matmul.js';
import { Tensor, type Device } from '../src/tensor/tensor.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '256,512,1024' },
    linear: { type: 'string', default: '512,1024' },
    'min-time': { type: 'string', default: '1' },
  },
});
const list = (v: string): number[] => (v === '' ? [] : v.split(',').map(Number));
const sizes = list(values.sizes ?? '');
const linear = list(values.linear ?? '');
const minTime = Number(values['min-time']);
if ([...sizes, ...linear].some((s) => !Number.isInteger(s) || s <= 0) || !(minTime > 0)) {
  console.error(
    'lorakit: bench/webgpu-gemm.ts: --sizes and --linear take positive integers, --min-time seconds.',
  );
  process.exit(2);
}

/** One product: C[m, n] = op(A)·op(B), B stored in dtype `b`. */
interface Shape {
  name: string;
  b: 'f32' | 'bf16';
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
}

const shapes: Shape[] = [
  ...sizes.map((s) => ({
    name: `${s}³ f32`,
    b: 'f32' as const,
    m: s,
    n: s,
    k: s,
    transA: false,
    transB: false,
  })),
  ...linear.map((s) => ({
    name: `linear 512×${s}, bf16 W`,
    b: 'bf16' as const,
    m: 512,
    n: s,
    k: s,
    transA: false,
    transB: true,
  })),
  // Decode: one and four rows against a bf16 W [n, k] (the skinny kernel).
  { name: 'decode 1×2048, bf16 W', b: 'bf16', m: 1, n: 2048, k: 2048, transA: false, transB: true },
  { name: 'decode 4×2048, bf16 W', b: 'bf16', m: 4, n: 2048, k: 2048, transA: false, transB: true },
  // LoRA's rank-16 sides: x·Aᵀ (n = 16) and its weight gradient gᵀ·x (transposed A).
  { name: 'lora x·Aᵀ 512×16×1024', b: 'f32', m: 512, n: 16, k: 1024, transA: false, transB: true },
  { name: 'lora dA 16×1024×512', b: 'f32', m: 16, n: 1024, k: 512, transA: true, transB: false },
];

function random(shape: number[], seed: number, dtype: 'f32' | 'bf16', device: Device): Tensor {
  const d = new Float32Array(shape.reduce((x, y) => x * y, 1));
  let s = seed;
  for (let i = 0; i < d.length; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    d[i] = s / 2 ** 32 - 0.5;
  }
  return Tensor.from(d, shape, dtype, device);
}

const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1];

/** GFLOP/s of shape s on device. */
async function rate(s: Shape, device: Device): Promise<number> {
  const a = random(s.transA ? [s.k, s.m] : [s.m, s.k], 1, 'f32', device);
  const b = random(s.transB ? [s.n, s.k] : [s.k, s.n], 2, s.b, device);
  const c = Tensor.empty([s.m, s.n], 'f32', device);
  const corner = c.sliceRows(0, 1);
  const run = (): void => gemmInto(c, a, b, { transA: s.transA, transB: s.transB });
  // One batch of `reps` products, to the end of the work (WebGPU: a read waits for it).
  const batch = async (reps: number): Promise<number> => {
    const t = performance.now();
    for (let i = 0; i < reps; i++) run();
    if (device === 'webgpu') await corner.toFloat32Async();
    return (performance.now() - t) / 1000 / reps;
  };
  await batch(1); // warm-up: pipelines compiled, buffers and pages touched
  const once = await batch(1);
  const reps = device === 'webgpu' ? Math.max(1, Math.min(1000, Math.round(0.05 / once))) : 1;
  const times: number[] = [];
  const start = performance.now();
  while (times.length < 5 || performance.now() - start < minTime * 1000) times.push(await batch(reps));
  for (const t of [corner, a, b, c]) t.dispose();
  return (2 * s.m * s.n * s.k) / median(times) / 1e9;
}

await prepareDevice('webgpu');
console.log(`WebGPU adapter: ${webGpu().adapter}`);
console.log('');
const rows = [['shape', 'm×n×k', 'CPU GFLOP/s', 'WebGPU GFLOP/s', 'WebGPU / CPU']];
for (const s of shapes) {
  const cpu = await rate(s, 'cpu');
  const gpu = await rate(s, 'webgpu');
  rows.push([
    s.name,
    `${s.m}×${s.n}×${s.k}${s.transA ? ' Aᵀ' : ''}${s.transB ? ' Bᵀ' : ''}`,
    cpu.toFixed(1),
    gpu.toFixed(1),
    (gpu / cpu).toFixed(2),
  ]);
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
for (const r of rows)
  console.log(r.map((v, i) => (i < 2 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('  '));
