#!/usr/bin/env node
// Builds the CUDA backend (native/cuda/*.cu) into build/liblorakit_cuda.a for sm_90 (Hopper) with
// nvcc, for the N-API CUDA addon to link (with -lcudart -ldl; cuBLASLt is loaded at run time).
// With --harness it also builds the check-and-time harnesses (native/cuda/harness/*_check.cu) into
// build/cuda-harness/. Without nvcc it prints a message and exits 0: the CPU backend works alone.
//   LORAKIT_NVCC       nvcc to use (default: $CUDA_HOME/bin/nvcc, /usr/local/cuda/bin/nvcc, nvcc on PATH)
//   LORAKIT_CUDA_ARCH  -gencode targets (default: arch=compute_90,code=sm_90)
// Objects are rebuilt only when their source or a header is newer, and compiled in parallel.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'native', 'cuda');
const harnessDir = join(srcDir, 'harness');
const outDir = join(root, 'build');
const objDir = join(outDir, 'obj-cuda');
const binDir = join(outDir, 'cuda-harness');
const lib = join(outDir, 'liblorakit_cuda.a');
const withHarness = process.argv.includes('--harness');

function findNvcc() {
  const candidates = [
    process.env.LORAKIT_NVCC,
    process.env.CUDA_HOME && join(process.env.CUDA_HOME, 'bin', 'nvcc'),
    '/usr/local/cuda/bin/nvcc',
  ].filter(Boolean);
  for (const c of candidates) if (existsSync(c)) return c;
  try {
    execFileSync('nvcc', ['--version'], { stdio: 'ignore' });
    return 'nvcc';
  } catch {
    return null;
  }
}

const arch = (process.env.LORAKIT_CUDA_ARCH || 'arch=compute_90,code=sm_90').split(/\s+/).filter(Boolean);
const flags = [
  '-std=c++17',
  '-O3',
  ...arch.flatMap((a) => ['-gencode', a]),
  '-lineinfo',
  '-Xcompiler',
  '-fPIC',
  '-Xcompiler',
  '-Wall',
  '-Werror',
  'all-warnings',
];

const newest = (dir, ext) =>
  Math.max(
    0,
    ...readdirSync(dir)
      .filter((f) => f.endsWith(ext))
      .map((f) => statSync(join(dir, f)).mtimeMs),
  );

async function parallel(items, fn) {
  const queue = [...items];
  const workers = Array.from(
    { length: Math.max(1, Math.min(availableParallelism(), queue.length)) },
    async () => {
      for (let it = queue.shift(); it !== undefined; it = queue.shift()) await fn(it);
    },
  );
  await Promise.all(workers);
}

async function main() {
  const nvcc = findNvcc();
  if (!nvcc) {
    process.stdout.write(
      'lorakit: nvcc not found; skipping the CUDA backend (the CPU backend works without it).\n',
    );
    return;
  }
  mkdirSync(objDir, { recursive: true });
  const headers = Math.max(newest(srcDir, '.h'), newest(srcDir, '.cuh'));
  const sources = readdirSync(srcDir).filter((f) => f.endsWith('.cu'));
  const stale = sources.filter((s) => {
    const obj = join(objDir, s.replace(/\.cu$/, '.o'));
    if (!existsSync(obj)) return true;
    const t = statSync(obj).mtimeMs;
    return t < statSync(join(srcDir, s)).mtimeMs || t < headers;
  });
  await parallel(stale, async (s) => {
    process.stdout.write(`lorakit: nvcc native/cuda/${s}\n`);
    await run(nvcc, [...flags, '-c', join(srcDir, s), '-o', join(objDir, s.replace(/\.cu$/, '.o'))], {
      maxBuffer: 1 << 24,
    });
  });
  if (stale.length > 0 || !existsSync(lib)) {
    const tmp = `${lib}.tmp`;
    rmSync(tmp, { force: true });
    await run('ar', ['rcs', tmp, ...sources.map((s) => join(objDir, s.replace(/\.cu$/, '.o')))]);
    renameSync(tmp, lib);
    process.stdout.write(`lorakit: built ${lib}\n`);
  }
  if (!withHarness) return;
  mkdirSync(binDir, { recursive: true });
  const libTime = statSync(lib).mtimeMs;
  const harnessHeaders = newest(harnessDir, '.h');
  const mains = readdirSync(harnessDir).filter((f) => f.endsWith('_check.cu'));
  const staleMains = mains.filter((m) => {
    const bin = join(binDir, m.replace(/\.cu$/, ''));
    if (!existsSync(bin)) return true;
    const t = statSync(bin).mtimeMs;
    return t < statSync(join(harnessDir, m)).mtimeMs || t < harnessHeaders || t < libTime;
  });
  await parallel(staleMains, async (m) => {
    process.stdout.write(`lorakit: nvcc native/cuda/harness/${m}\n`);
    const bin = join(binDir, m.replace(/\.cu$/, ''));
    await run(nvcc, [...flags, join(harnessDir, m), '-o', bin, lib, '-ldl'], { maxBuffer: 1 << 24 });
  });
}

main().catch((err) => {
  const detail = err && typeof err === 'object' && 'stderr' in err ? String(err.stderr) : '';
  process.stderr.write(
    `lorakit: CUDA build failed: ${err instanceof Error ? err.message : String(err)}\n${detail}`,
  );
  process.exit(1);
});
