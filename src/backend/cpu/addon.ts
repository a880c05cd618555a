import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The CPU addon's entry points. Each kernel group adds its own functions to this interface by
 * declaration merging (`declare module './addon.js' { interface CpuAddon { ... } }`), next to the
 * code that calls them. Convention: outputs first, then inputs, then sizes and attributes.
 */
export interface CpuAddon {
  /** out [n] bf16 bits = x [n] rounded to nearest even (file readers convert with it too). */
  f32ToBf16(out: Uint16Array, x: Float32Array, n: number): void;
  bf16ToF32(out: Float32Array, x: Uint16Array, n: number): void;
  alloc(bytes: number): ArrayBuffer;
  free(buffer: ArrayBuffer): void;
  /** [live bytes, peak bytes] of native tensor memory; `resetPeak` restarts the peak from now. */
  memoryStats(resetPeak: boolean): [number, number];
  /** Releases the cache of freed large buffers kept for reuse; returns the bytes it held. */
  trimCache(): number;
  setThreads(n: number): void;
  getThreads(): number;
}

function findAddon(): string {
  // LORAKIT_CPU_ADDON points at another build (e.g. one with sanitizers) for debugging.
  if (process.env.LORAKIT_CPU_ADDON) return process.env.LORAKIT_CPU_ADDON;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'build', 'lorakit_cpu.node');
    if (existsSync(candidate)) return candidate;
    dir = resolve(dir, '..');
  }
  throw new Error(
    'lorakit: the native CPU addon is not built; run `npm run build:native` in the lorakit package.',
  );
}

// OpenMP threads spin after each parallel region by default; on a machine with few cores and anything
// else running (a test runner, a second process) that spinning steals the core the main thread needs,
// and 2 threads ran several times slower than 1. Sleeping at once costs a wake-up per parallel region,
// about 1% of a training step. Read by libgomp when the addon loads; a value the user set wins.
if (process.env.OMP_WAIT_POLICY === undefined && process.env.GOMP_SPINCOUNT === undefined)
  process.env.OMP_WAIT_POLICY = 'passive';

const require = createRequire(import.meta.url);
export const cpu = require(findAddon()) as CpuAddon;
