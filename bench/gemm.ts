// CPU GEMM rate: lorakit's fp32 GEMM on every kernel path this CPU supports (avx512, avx2, portable;
// neon, portable on arm64) next to numpy's fp32 matmul (OpenBLAS) on the same thread count, measured in
// the same run: numpy by bench/gemm_numpy.py in a child process, shape by shape, interleaved with ours
// so load from other processes hits both sides alike. numpy runs twice per shape: with the kernel
// OpenBLAS picks for this CPU, and forced to its Haswell (AVX2) kernel (OPENBLAS_CORETYPE=Haswell);
// the avx2 path is compared with the Haswell run, every other path with the native one.
//
//   node --import tsx bench/gemm.ts [--sizes 512,1024,2048] [--linear 576,1024,1536] [--threads N]
//                                    [--paths avx512,avx2] [--llm] [--min-time S] [--settle]
//
// Shapes: fp32 square C = A·B (--sizes); the same with a bf16 B used transposed (x·Wᵀ, a frozen bf16
// weight); the `linear` shape x[512, K]·W[N, K]ᵀ with W bf16 and K = N (--linear). numpy is given the
// same transposes with an f32 B. --llm adds LLM-shaped products (decode, small batches, LoRA's
// rank-16 sides, lm_head). --paths limits the kernel paths measured (default: all supported).
// Rates are medians of timed runs after warm-up; "spread" is p90/p10 of the run times (≫ 1: noisy).
// --settle (Linux, for shared machines): before each measurement wait until the CPUs are idle, and
// measure again (up to 3 times, keeping the least disturbed) when other processes took CPU time during
// it; "others" is the share of all CPUs they took during the row's worst measurement.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpu, cpuPath, describeCpuPath, useCpuIsa } from '../src/backend/cpu/addon.js';
import { gemmInto } from '../src/ops/matmul.js';
import { Tensor } from '../src/tensor/tensor.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '512,1024,2048' },
    linear: { type: 'string', default: '576,1024,1536' },
    paths: { type: 'string' },
    threads: { type: 'string' },
    llm: { type: 'boolean', default: false },
    'min-time': { type: 'string', default: '1' },
    settle: { type: 'boolean', default: false },
  },
});
const list = (v: string): number[] => (v === '' ? [] : v.split(',').map(Number));
const sizes = list(values.sizes ?? '512,1024,2048');
const linear = list(values.linear ?? '576,1024,1536');
const paths = values.paths ? values.paths.split(',') : [...cpuPath().supported];
const threads = values.threads ? Number(values.threads) : availableParallelism();
const minTime = Number(values['min-time'] ?? '1');
if (
  [...sizes, ...linear].some((s) => !Number.isInteger(s) || s <= 0) ||
  paths.some((p) => !cpuPath().supported.includes(p)) ||
  !Number.isInteger(threads) ||
  threads <= 0 ||
  !(minTime > 0)
) {
  console.error(
    `lorakit: bench/gemm.ts: --sizes and --linear must be positive integers, --threads a positive integer, --paths among ${cpuPath().supported.join(', ')}.`,
  );
  process.exit(2);
}
cpu.setThreads(threads);

/** One product: C[M, N] = op(A)·op(B), with B stored as `b`. */
interface Shape {
  name: string;
  b: 'f32' | 'bf16';
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
}

interface Rate {
  gflops: number;
  /** p90 / p10 of the timed runs. */
  spread: number;
  /** Share of all CPUs that other processes used during the measurement (--settle). */
  others?: number;
}

function fill(t: Tensor, seed: number): Tensor {
  const d = t.toFloat32();
  let s = seed;
  for (let i = 0; i < d.length; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    d[i] = s / 2 ** 32 - 0.5;
  }
  const out = Tensor.from(d, t.shape, t.dtype);
  t.dispose();
  return out;
}

// CPU time in clock ticks: [all CPUs busy, all CPUs total, this process and its waited-for children],
// or null where there is no /proc.
function ticks(): [number, number, number] | null {
  try {
    const cpuLine = readFileSync('/proc/stat', 'utf8')
      .split('\n')[0]
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    const total = cpuLine.reduce((x, y) => x + y, 0);
    const idle = cpuLine[3] + cpuLine[4]; // idle + iowait
    const self = readFileSync('/proc/self/stat', 'utf8');
    const f = self
      .slice(self.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number); // fields from 3 (state) on
    return [total - idle, total, f[11] + f[12] + f[13] + f[14]]; // utime stime cutime cstime
  } catch {
    return null;
  }
}

// Share of all CPUs other processes used while fn ran (null where unknown).
function othersDuring<T>(fn: () => T): [T, number | null] {
  const a = ticks();
  const r = fn();
  const b = ticks();
  if (!a || !b || b[1] === a[1]) return [r, null];
  return [r, Math.max(0, (b[0] - a[0] - (b[2] - a[2])) / (b[1] - a[1]))];
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

let disturbed = 0;

// With --settle: waits (up to 2 minutes) until other processes leave the CPUs alone, measures, and
// measures again (3 tries) when other processes took CPU time meanwhile; keeps the least disturbed.
function settled(measure: () => Rate | null): Rate | null {
  if (!values.settle) return measure();
  let best: Rate | null = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      const [, idleCheck] = othersDuring(() => sleep(500));
      if (idleCheck === null || idleCheck < 0.02) break;
    }
    const [r, others] = othersDuring(measure);
    if (!r) return best;
    r.others = others ?? undefined;
    if (!best || (r.others ?? 0) < (best.others ?? 0)) best = r;
    if ((r.others ?? 0) < 0.02) break;
  }
  if ((best?.others ?? 0) >= 0.02) disturbed++;
  return best;
}

function ours(s: Shape): Rate {
  const a = fill(Tensor.empty(s.transA ? [s.k, s.m] : [s.m, s.k]), 1);
  const b = fill(Tensor.empty(s.transB ? [s.n, s.k] : [s.k, s.n], s.b), 2);
  const c = Tensor.empty([s.m, s.n]);
  const run = (): void => gemmInto(c, a, b, { transA: s.transA, transB: s.transB });
  run(); // warm-up: packing buffers allocated, pages touched
  run();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < 5 || performance.now() - start < minTime * 1000) {
    const t = performance.now();
    run();
    times.push(performance.now() - t);
  }
  for (const t of [a, b, c]) t.dispose();
  times.sort((x, y) => x - y);
  const median = times[times.length >> 1] / 1000;
  const q = (f: number): number => times[Math.min(times.length - 1, Math.floor(f * times.length))];
  return { gflops: (2 * s.m * s.n * s.k) / median / 1e9, spread: q(0.9) / q(0.1) };
}

function python(): string {
  const venv = join(root, '.venv-ref', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

/** numpy's OpenBLAS with the kernel it picks for this CPU, or forced to its Haswell (AVX2) kernel. */
type Blas = 'native' | 'Haswell';
const numpyInfo: Partial<Record<Blas, Record<string, unknown>>> = {};
let numpyError: string | null = null;

function numpy(s: Shape, blas: Blas): Rate | null {
  if (numpyError) return null;
  const env: NodeJS.ProcessEnv = { ...process.env };
  // These may be set on this machine and pin OpenBLAS to slower kernels / a wrong cache size.
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  if (blas === 'Haswell') env.OPENBLAS_CORETYPE = 'Haswell';
  for (const v of ['OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS']) env[v] = String(threads);
  const shape = [s.m, s.n, s.k, s.transA ? 1 : 0, s.transB ? 1 : 0].join(',');
  const r = spawnSync(
    python(),
    [join(root, 'bench', 'gemm_numpy.py'), '--shapes', shape, '--min-time', String(minTime)],
    {
      env,
      encoding: 'utf8',
    },
  );
  if (r.error || r.status !== 0) {
    const detail = r.stdout?.trim().split('\n').at(-1) ?? '';
    numpyError = r.error
      ? r.error.message
      : `${detail} ${r.stderr?.trim() ?? ''}`.trim() || `exit code ${r.status}`;
    return null;
  }
  let rate: Rate | null = null;
  for (const line of r.stdout.trim().split('\n')) {
    const msg = JSON.parse(line) as { info?: Record<string, unknown>; gflops?: number; spread?: number };
    if (msg.info) numpyInfo[blas] = msg.info;
    if (msg.gflops !== undefined) rate = { gflops: msg.gflops, spread: msg.spread ?? 1 };
  }
  return rate;
}

const fmt = (r: Rate | null): string => (r ? r.gflops.toFixed(1) : 'n/a');
const ratio = (a: Rate, b: Rate | null): string => (b ? (a.gflops / b.gflops).toFixed(2) : 'n/a');
const spread = (...rs: (Rate | null)[]): string => Math.max(...rs.map((r) => r?.spread ?? 1)).toFixed(2);
const others = (...rs: (Rate | null)[]): string =>
  values.settle ? `${(100 * Math.max(...rs.map((r) => r?.others ?? 0))).toFixed(0)}%` : '-';

function row(cells: string[], widths: number[]): string {
  return `| ${cells.map((c, i) => c.padStart(widths[i])).join(' | ')} |`;
}

const shapes: Shape[] = [];
for (const n of sizes) {
  shapes.push({ name: `${n}x${n}x${n} A·B`, b: 'f32', m: n, n, k: n, transA: false, transB: false });
  shapes.push({ name: `${n}x${n}x${n} x·Wᵀ`, b: 'bf16', m: n, n, k: n, transA: false, transB: true });
}
for (const n of linear)
  shapes.push({ name: `linear 512x${n}x${n}`, b: 'bf16', m: 512, n, k: n, transA: false, transB: true });
if (values.llm)
  shapes.push(
    { name: 'decode x·Wᵀ 1x2048x2048', b: 'bf16', m: 1, n: 2048, k: 2048, transA: false, transB: true },
    { name: 'decode x·W 1x2048x2048', b: 'f32', m: 1, n: 2048, k: 2048, transA: false, transB: false },
    { name: 'batch-4 x·Wᵀ 4x2048x2048', b: 'bf16', m: 4, n: 2048, k: 2048, transA: false, transB: true },
    { name: '64 rows x·Wᵀ 64x2048x2048', b: 'bf16', m: 64, n: 2048, k: 2048, transA: false, transB: true },
    { name: 'LoRA x·Aᵀ 2048x16x2048', b: 'f32', m: 2048, n: 16, k: 2048, transA: false, transB: true },
    { name: 'LoRA h·Bᵀ 2048x2048x16', b: 'f32', m: 2048, n: 2048, k: 16, transA: false, transB: true },
    { name: 'LoRA dA=dhᵀ·x 16x2048x2048', b: 'f32', m: 16, n: 2048, k: 2048, transA: true, transB: false },
    { name: 'dW=gᵀ·x 2048x2048x2048', b: 'f32', m: 2048, n: 2048, k: 2048, transA: true, transB: false },
    { name: 'dx=g·W 2048x2048x2048', b: 'bf16', m: 2048, n: 2048, k: 2048, transA: false, transB: false },
    { name: 'lm_head 512x49152x576', b: 'bf16', m: 512, n: 49152, k: 576, transA: false, transB: true },
  );

console.log(`lorakit CPU GEMM benchmark — ${cpus()[0]?.model ?? 'unknown CPU'}, ${threads} thread(s)`);
console.log(describeCpuPath());
console.log(
  `paths measured: ${paths.join(', ')}; avx2 is compared with OpenBLAS's Haswell kernel, the others with its native one`,
);
console.log('');
// Results are printed once every shape is measured, after the numpy header lines (the kernel names are
// known only once numpy ran).
const widths = [27, 4, 8, 15, 15, 17, 15, 6, 6];
const lines: string[] = [];
lines.push(
  row(
    [
      'shape (MxNxK)',
      'B',
      'path',
      'lorakit GFLOP/s',
      'numpy GFLOP/s',
      'numpy BLAS kernel',
      'lorakit / numpy',
      'spread',
      'others',
    ],
    widths,
  ),
);
lines.push(
  row(
    widths.map((w) => '-'.repeat(w)),
    widths,
  ).replace(/ /g, '-'),
);
const startPath = cpuPath().isa;
for (const s of shapes) {
  const npNative = settled(() => numpy(s, 'native'));
  const rates = new Map<string, Rate>();
  for (const p of paths) {
    useCpuIsa(p);
    rates.set(
      p,
      settled(() => ours(s))!,
    );
  }
  const npHaswell = paths.includes('avx2') ? settled(() => numpy(s, 'Haswell')) : null;
  for (const p of paths) {
    const r = rates.get(p)!;
    const [np, blas] = p === 'avx2' ? [npHaswell, 'Haswell' as const] : [npNative, 'native' as const];
    const kernel = String(numpyInfo[blas]?.kernel ?? 'n/a');
    lines.push(
      row([s.name, s.b, p, fmt(r), fmt(np), kernel, ratio(r, np), spread(r, np), others(r, np)], widths),
    );
  }
  console.error(`measured ${s.name}`);
}
useCpuIsa(startPath);

for (const blas of ['native', 'Haswell'] as const)
  if (numpyInfo[blas]) console.log(`numpy (${blas}): ${JSON.stringify(numpyInfo[blas])}`);
if (numpyError) console.log(`numpy: not measured — ${numpyError}`);
console.log('');
for (const l of lines) console.log(l);
console.log('');
if (disturbed > 0)
  console.log(
    `note: ${disturbed} measurement(s) stayed disturbed by other processes after 3 tries (see "others").`,
  );
