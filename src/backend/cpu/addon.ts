import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
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

/** What the CPU reports about itself (native/cpu/cpu_features.cc), plus the model name the OS gives. */
export interface CpuInfo {
  arch: string;
  vendor: string;
  /** x86: cpuid family (25 Zen 3/4, 26 Zen 5, 6 Intel Core); arm64: MIDR architecture field. */
  family: number;
  model: number;
  stepping: number;
  /** Features that decide the kernel path, named as /proc/cpuinfo names them (avx2, avx512f, asimd...). */
  flags: string[];
}

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
  cpuInfo(): CpuInfo;
  /** The kernel path this addon was built for. */
  isa(): string;
  /** How many arguments each entry point takes, by name (checked against the declarations by test/bindings.test.ts). */
  readonly arities: Readonly<Record<string, number>>;
}

/** One kernel path of native/cpu/isa/isas.json. */
interface IsaEntry {
  name: string;
  arch: string;
  flags: string[];
  requires: string[];
}

/** The kernel path in use and why. */
export interface CpuPath {
  isa: string;
  /** How it was chosen: the best the CPU supports, or LORAKIT_CPU_ISA / useCpuIsa. */
  chosenBy: 'cpu' | 'LORAKIT_CPU_ISA' | 'useCpuIsa' | 'LORAKIT_CPU_ADDON';
  /** Paths of this architecture the CPU can run, best first. */
  supported: string[];
  cpu: CpuInfo & { modelName: string };
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'native', 'cpu', 'isa', 'isas.json'))) return dir;
    dir = resolve(dir, '..');
  }
  throw new Error('lorakit: native/cpu/isa/isas.json not found above ' + fileURLToPath(import.meta.url));
}

// How long an OpenMP thread waits, spinning, for the next parallel region before it sleeps. libgomp's
// default spin is long: on a machine with few cores and anything else running (a test runner, a
// second process) that spinning steals the core the main thread needs, and 2 threads ran several
// times slower than 1. Sleeping at once (OMP_WAIT_POLICY=passive) instead costs a futex wake-up per
// region, and a decode step is about 150 short regions a token: 35-37 tok/s against 47-64 with a
// spin of 1000 iterations (a few microseconds, enough to bridge two back-to-back kernel calls) on
// SmolLM2-135M bf16 (bench/RESULTS.md). With two such processes on two cores the short spin costs
// about a fifth of each one's speed; a value the user sets (either variable) wins. Read by libgomp
// when the first addon loads.
if (process.env.OMP_WAIT_POLICY === undefined && process.env.GOMP_SPINCOUNT === undefined)
  process.env.GOMP_SPINCOUNT = '1000';

const require = createRequire(import.meta.url);
const root = packageRoot();
const isas: IsaEntry[] = (
  JSON.parse(readFileSync(join(root, 'native', 'cpu', 'isa', 'isas.json'), 'utf8')) as { isas: IsaEntry[] }
).isas.filter((i) => i.arch === process.arch);

// LORAKIT_CPU_BUILD_DIR: the folder holding lorakit_cpu-<isa>.node, when it is not the package's build/
// (a cross build tested under an emulator: scripts/arm64/test.sh points it at build-arm64/).
const buildDir = process.env.LORAKIT_CPU_BUILD_DIR
  ? resolve(process.env.LORAKIT_CPU_BUILD_DIR)
  : join(root, 'build');

function addonFile(isa: string): string {
  return join(buildDir, `lorakit_cpu-${isa}.node`);
}

function loadAddon(file: string): CpuAddon {
  if (!existsSync(file))
    throw new Error(
      `lorakit: the native CPU addon ${file} is not built; run \`npm run build:native\` in the lorakit package.`,
    );
  return require(file) as CpuAddon;
}

// The portable addon runs on any CPU of its architecture, so it is loaded first and asked what the
// CPU supports; an addon built for an ISA the CPU lacks may fault as soon as it loads.
const debugAddon = process.env.LORAKIT_CPU_ADDON; // another build (e.g. with sanitizers), for debugging
const first = loadAddon(debugAddon ?? addonFile('portable'));
const info = { ...first.cpuInfo(), modelName: cpus()[0]?.model.trim() || 'unknown' };
const supported = isas.filter((i) => i.requires.every((f) => info.flags.includes(f))).map((i) => i.name);
const loaded = new Map<string, CpuAddon>([[first.isa(), first]]);

function addonFor(isa: string, flag: string): CpuAddon {
  const entry = isas.find((i) => i.name === isa);
  if (!entry)
    throw new Error(
      `lorakit: ${flag}=${isa} is not a CPU kernel path on ${process.arch}; choose one of ${isas.map((i) => i.name).join(', ')}.`,
    );
  const missing = entry.requires.filter((f) => !info.flags.includes(f));
  if (missing.length > 0)
    throw new Error(
      `lorakit: ${flag}=${isa} needs CPU features this CPU (${info.modelName}) lacks: ${missing.join(', ')}.`,
    );
  let addon = loaded.get(isa);
  if (!addon) {
    addon = loadAddon(addonFile(isa));
    loaded.set(isa, addon);
  }
  return addon;
}

function initialPath(): CpuPath {
  if (debugAddon) return { isa: first.isa(), chosenBy: 'LORAKIT_CPU_ADDON', supported, cpu: info };
  const forced = process.env.LORAKIT_CPU_ISA;
  if (forced) {
    addonFor(forced, 'LORAKIT_CPU_ISA');
    return { isa: forced, chosenBy: 'LORAKIT_CPU_ISA', supported, cpu: info };
  }
  return { isa: supported[0] ?? 'portable', chosenBy: 'cpu', supported, cpu: info };
}

let path = initialPath();

/**
 * Why there is no CPU addon, or null: here it loaded (importing this module throws otherwise). The
 * browser bundle's addon.browser.ts, which has no native code, gives the sentence instead.
 */
export const CPU_ADDON_MISSING: string | null = null;

/**
 * The CPU addon in use. Memory and thread entry points always come from the first addon loaded (native
 * buffers must be freed by the allocator that made them); kernel entry points from the chosen path,
 * swapped in place by useCpuIsa so that every module holding `cpu` follows.
 */
export const cpu: CpuAddon = { ...first, ...kernelsOf(addonFor(path.isa, 'LORAKIT_CPU_ISA')) };

function kernelsOf(addon: CpuAddon): Partial<CpuAddon> {
  const own = new Set(['alloc', 'free', 'memoryStats', 'trimCache', 'setThreads', 'getThreads', 'cpuInfo']);
  return Object.fromEntries(Object.entries(addon).filter(([k]) => !own.has(k))) as Partial<CpuAddon>;
}

/** The kernel path in use, the CPU that chose it and the paths it supports. */
export function cpuPath(): Readonly<CpuPath> {
  return path;
}

/**
 * Switches the CPU kernels to another path the CPU supports (benchmarks and tests compare paths in one
 * process). Tensors stay valid: memory is not the path's.
 */
export function useCpuIsa(isa: string): void {
  Object.assign(cpu, kernelsOf(addonFor(isa, 'useCpuIsa')));
  path = { ...path, isa, chosenBy: 'useCpuIsa' };
}

/** One line naming the path and the CPU, for `lorakit info`, help footers and benchmark headers. */
export function describeCpuPath(p: Readonly<CpuPath> = path): string {
  const c = p.cpu;
  const how = p.chosenBy === 'cpu' ? 'best this CPU supports' : `set by ${p.chosenBy}`;
  return (
    `CPU kernels: ${p.isa} (${how}; supported: ${p.supported.join(', ')}) on ${c.modelName}, ` +
    `${c.vendor || c.arch} family ${c.family} model ${c.model}, flags ${c.flags.join(' ') || 'none'}`
  );
}
