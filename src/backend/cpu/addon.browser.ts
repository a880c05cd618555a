// The browser bundle's addon.ts: a page has no native addon, so host (CPU) memory is plain
// ArrayBuffers, counted as the addon counts its native memory, and the host converts f32 to bf16 in
// JavaScript; every kernel entry point throws one sentence (the CPU backend's kernels() does first).
// scripts/build-browser.mjs puts this file in addon.ts's place.
import { CPU_BINDINGS } from '../../ops/spec/index.js';
import { f32ArrayToBf16 } from '../../tensor/dtype.js';
import type * as NodeAddon from './addon.js';
import type { CpuAddon, CpuKernelEntries, CpuPath } from './addon.js';

export type { CpuAddon, CpuInfo, CpuKernelEntries, CpuPath } from './addon.js';

export const CPU_ADDON_MISSING: string | null =
  "lorakit: the CPU backend needs its native addon (Node); in a browser use the 'webgpu' device.";

const missing = (): never => {
  throw new Error(CPU_ADDON_MISSING!);
};

let liveBytes = 0;
let peakBytes = 0;
// A buffer nobody freed is still given back to the count when collected, as the addon's finalizer does.
const uncounted = new FinalizationRegistry<number>((bytes) => (liveBytes -= bytes));

function alloc(bytes: number): ArrayBuffer {
  const buffer = new ArrayBuffer(bytes);
  liveBytes += bytes;
  peakBytes = Math.max(peakBytes, liveBytes);
  uncounted.register(buffer, bytes, buffer);
  return buffer;
}

function free(buffer: ArrayBuffer): void {
  if (uncounted.unregister(buffer)) liveBytes -= buffer.byteLength;
}

// Every entry point the CPU kernels call throws, except the one conversion the host itself makes.
// Object.fromEntries cannot carry the names, hence the one cast; a function of no parameters that never
// returns stands for any entry point.
const kernels = Object.fromEntries(Object.keys(CPU_BINDINGS).map((name) => [name, missing])) as Record<
  keyof CpuKernelEntries,
  () => never
>;

export const cpu: CpuAddon = {
  ...kernels,
  f32ToBf16: (out, x, n) => f32ArrayToBf16(out, x, n),
  alloc,
  free,
  memoryStats: (resetPeak) => {
    if (resetPeak) peakBytes = liveBytes;
    return [liveBytes, peakBytes];
  },
  trimCache: () => 0,
  setThreads: () => {},
  getThreads: () => 1,
  cpuInfo: missing,
  isa: () => 'none',
  arities: {},
};

export function cpuPath(): Readonly<CpuPath> {
  return missing();
}

export function useCpuIsa(_isa: string): void {
  missing();
}

export function describeCpuPath(_p?: Readonly<CpuPath>): string {
  return 'CPU kernels: none (no native addon in a browser)';
}

// The twin must export what addon.ts does, with the same types.
({ CPU_ADDON_MISSING, cpu, cpuPath, useCpuIsa, describeCpuPath }) satisfies typeof NodeAddon;
