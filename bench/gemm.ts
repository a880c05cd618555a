// CPU GEMM rate: lorakit's fp32 GEMM (B f32), the same with a bf16 B used transposed (the `linear`
// case, x·Wᵀ with a frozen bf16 weight), and numpy's fp32 matmul on the same thread count, measured in
// the same run (numpy by bench/gemm_numpy.py in a child process, size by size, interleaved with ours so
// load from other processes hits both sides alike).
//
//   node --import tsx bench/gemm.ts [--sizes 256,512,1024,2048,4096] [--threads N] [--llm] [--min-time S]
//                                    [--settle]
//
// --llm adds a table of LLM-shaped products (decode, small batches, LoRA's rank-16 sides, lm_head).
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
import { cpu } from '../src/backend/cpu/addon.js';
import { gemmInto } from '../src/ops/matmul.js';
import { Tensor } from '../src/tensor/tensor.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '256,512,1024,2048,4096' },
    threads: { type: 'string' },
    llm: { type: 'boolean', default: false },
    'min-time': { type: 'string', default: '1' },
    settle: { type: 'boolean', default: false },
  },
});
const sizes = (values.sizes ?? '256,512,1024,2048,4096').split(',').map(Number);
const threads = values.threads ? Number(values.threads) : availableParallelism();
const minTime = Number(values['min-time'] ?? '1');
if (
  sizes.some((s) => !Number.isInteger(s) || s <= 0) ||
  !Number.isInteger(threads) ||
  threads <= 0 ||
  !(minTime > 0)
) {
  console.error('lorakit: bench/gemm.ts: --sizes must be positive integers, --threads a positive integer.');
  process.exit(2);
}
cpu.setThreads(threads);

/** One product: C[M, N] = op(A)·op(B); bf16 marks a bf16 B. */
interface Shape {
  name: string;
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

function ours(s: Shape, bType: 'f32' | 'bf16'): Rate {
  const a = fill(Tensor.empty(s.transA ? [s.k, s.m] : [s.m, s.k]), 1);
  const b = fill(Tensor.empty(s.transB ? [s.n, s.k] : [s.k, s.n], bType), 2);
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

let numpyInfo: Record<string, unknown> | null = null;
let numpyError: string | null = null;

function numpy(s: Shape): Rate | null {
  if (numpyError) return null;
  const env: NodeJS.ProcessEnv = { ...process.env };
  // These may be set on this machine and pin OpenBLAS to slower kernels / a wrong cache size.
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
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
    if (msg.info) numpyInfo = msg.info;
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

console.log(`lorakit CPU GEMM benchmark — ${cpus()[0]?.model ?? 'unknown CPU'}, ${threads} thread(s)`);
console.log('');
const widths = [6, 19, 22, 17, 11, 12, 6, 6];
console.log(
  row(
    [
      'size',
      'lorakit f32 GFLOP/s',
      'lorakit bf16-B GFLOP/s',
      'numpy f32 GFLOP/s',
      'f32 / numpy',
      'bf16 / numpy',
      'spread',
      'others',
    ],
    widths,
  ),
);
console.log(
  row(
    widths.map((w) => '-'.repeat(w)),
    widths,
  ).replace(/ /g, '-'),
);
for (const n of sizes) {
  const sq: Shape = { name: String(n), m: n, n, k: n, transA: false, transB: false };
  const f32 = settled(() => ours(sq, 'f32'))!;
  const bf16 = settled(() => ours({ ...sq, transB: true }, 'bf16'))!; // x·Wᵀ with W [n, n] bf16
  const np = settled(() => numpy(sq));
  console.log(
    row(
      [
        String(n),
        fmt(f32),
        fmt(bf16),
        fmt(np),
        ratio(f32, np),
        ratio(bf16, np),
        spread(f32, bf16, np),
        others(f32, bf16, np),
      ],
      widths,
    ),
  );
}

if (values.llm) {
  // numpy is given the same transposes with f32 B; ours runs with B as listed.
  const shapes: [Shape, 'f32' | 'bf16'][] = [
    [{ name: 'decode x·Wᵀ 1x2048x2048', m: 1, n: 2048, k: 2048, transA: false, transB: true }, 'bf16'],
    [{ name: 'decode x·W 1x2048x2048', m: 1, n: 2048, k: 2048, transA: false, transB: false }, 'f32'],
    [{ name: 'batch-4 x·Wᵀ 4x2048x2048', m: 4, n: 2048, k: 2048, transA: false, transB: true }, 'bf16'],
    [{ name: '64 rows x·Wᵀ 64x2048x2048', m: 64, n: 2048, k: 2048, transA: false, transB: true }, 'bf16'],
    [{ name: 'LoRA x·Aᵀ 2048x16x2048', m: 2048, n: 16, k: 2048, transA: false, transB: true }, 'f32'],
    [{ name: 'LoRA h·Bᵀ 2048x2048x16', m: 2048, n: 2048, k: 16, transA: false, transB: true }, 'f32'],
    [{ name: 'LoRA dA=dhᵀ·x 16x2048x2048', m: 16, n: 2048, k: 2048, transA: true, transB: false }, 'f32'],
    [{ name: 'dW=gᵀ·x 2048x2048x2048', m: 2048, n: 2048, k: 2048, transA: true, transB: false }, 'f32'],
    [{ name: 'dx=g·W 2048x2048x2048', m: 2048, n: 2048, k: 2048, transA: false, transB: false }, 'bf16'],
    [{ name: 'lm_head 512x49152x576', m: 512, n: 49152, k: 576, transA: false, transB: true }, 'bf16'],
  ];
  console.log('');
  const w2 = [28, 5, 15, 17, 15, 6, 6];
  console.log(
    row(
      ['shape (MxNxK)', 'B', 'lorakit GFLOP/s', 'numpy f32 GFLOP/s', 'lorakit / numpy', 'spread', 'others'],
      w2,
    ),
  );
  console.log(
    row(
      w2.map((w) => '-'.repeat(w)),
      w2,
    ).replace(/ /g, '-'),
  );
  for (const [s, bType] of shapes) {
    const r = settled(() => ours(s, bType))!;
    const np = settled(() => numpy(s));
    console.log(row([s.name, bType, fmt(r), fmt(np), ratio(r, np), spread(r, np), others(r, np)], w2));
  }
}

console.log('');
if (disturbed > 0)
  console.log(
    `note: ${disturbed} measurement(s) stayed disturbed by other processes after 3 tries (see "others").`,
  );
if (numpyError) console.log(`numpy: not measured — ${numpyError}`);
else if (numpyInfo) console.log(`numpy: ${JSON.stringify(numpyInfo)}`);
