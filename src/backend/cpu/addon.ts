import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HostParams } from '../../ops/spec/dsl.js';
import type { CpuBindings } from '../../ops/spec/index.js';
import type { QuantArgs } from '../../quant/weight.js';

/** The CPU addon's kernel entry points, as the op declarations (src/ops/spec/) give them. */
export type CpuKernelEntries = {
  [K in keyof CpuBindings]: (
    ...args: HostParams<CpuBindings[K]['signature'], QuantArgs>
  ) => CpuBindings[K]['returns'] extends 'number' ? number : void;
};

/**
 * The CPU addon: its kernel entry points (declared with their ops) and its memory and threads.
 * Convention: outputs first, then inputs, then sizes and attributes.
 */
export interface CpuAddon extends CpuKernelEntries {
  alloc(bytes: number): ArrayBuffer;
  free(buffer: ArrayBuffer): void;
  /** [live bytes, peak bytes] of native tensor memory; `resetPeak` restarts the peak from now. */
  memoryStats(resetPeak: boolean): [number, number];
  /** Releases the cache of freed large buffers kept for reuse; returns the bytes it held. */
  trimCache(): number;
  setThreads(n: number): void;
  getThreads(): number;
  /** How many arguments each entry point takes, by name (checked against the declarations by test/bindings.test.ts). */
  readonly arities: Readonly<Record<string, number>>;
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
