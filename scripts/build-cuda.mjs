#!/usr/bin/env node
// Builds the CUDA backend (native/cuda/*.cu) into build/liblorakit_cuda.a for sm_90 (Hopper) with
// nvcc, then the N-API CUDA addon build/lorakit_cuda.node: native/cuda/addon.cc (with the entry points'
// wrappers scripts/gen-bindings.mjs generates) compiled with the host C++ compiler against Node's own
// headers and the toolkit's, linked with the static library and the
// static CUDA runtime (-lcudart_static -ldl -lpthread -lrt; cuBLASLt is loaded at run time), so the
// addon needs only the driver where it runs. With --harness it also builds the check-and-time harnesses
// (native/cuda/harness/*_check.cu) into build/cuda-harness/. Without nvcc it prints a message and
// exits 0: the CPU backend works alone. With --optional (npm install) a failed build warns and exits 0.
//   LORAKIT_NVCC          nvcc to use (default: $CUDA_HOME/bin/nvcc, /usr/local/cuda/bin/nvcc, nvcc on PATH)
//   LORAKIT_CUDA_ARCH     -gencode targets (default: arch=compute_90,code=sm_90)
//   CXX                   host C++ compiler for the addon (default: g++)
//   LORAKIT_NODE_INCLUDE  folder holding node_api.h (default: next to this Node, as build-native.mjs)
// Objects are rebuilt only when their source or a header is newer, and compiled in parallel; outputs
// are written to a temporary name and renamed.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { newest, nodeInclude, parallel, withLock } from './build-util.mjs';

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'native', 'cuda');
const harnessDir = join(srcDir, 'harness');
const outDir = join(root, 'build');
const objDir = join(outDir, 'obj-cuda');
const binDir = join(outDir, 'cuda-harness');
const lib = join(outDir, 'liblorakit_cuda.a');
const addonSrc = join(srcDir, 'addon.cc');
const addonBindings = join(srcDir, 'addon_bindings.inc');
const addonObj = join(objDir, 'addon.o');
const addon = join(outDir, 'lorakit_cuda.node');
const cxx = process.env.CXX || 'g++';
const withHarness = process.argv.includes('--harness');
const optional = process.argv.includes('--optional');

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

// nvcc's absolute path ('nvcc' alone is looked up on PATH).
function nvccPath(nvcc) {
  if (nvcc.includes('/')) return resolve(nvcc);
  for (const dir of (process.env.PATH || '').split(':').filter(Boolean)) {
    const candidate = join(dir, nvcc);
    if (existsSync(candidate)) return candidate;
  }
  return nvcc;
}

// The toolkit root (include/cuda_runtime.h) and its library folder (libcudart_static.a).
function cudaDirs(nvcc) {
  let fromNvcc = null;
  try {
    fromNvcc = resolve(dirname(realpathSync(nvccPath(nvcc))), '..');
  } catch {
    // not a file we can resolve: fall back to CUDA_HOME and the usual place
  }
  const roots = [fromNvcc, process.env.CUDA_HOME, '/usr/local/cuda'].filter(Boolean);
  for (const root of roots) {
    if (!existsSync(join(root, 'include', 'cuda_runtime.h'))) continue;
    const libs = [
      join(root, 'lib64'),
      join(root, 'targets', 'x86_64-linux', 'lib'),
      join(root, 'targets', 'sbsa-linux', 'lib'),
      join(root, 'lib'),
    ];
    const libDir = libs.find((d) => existsSync(join(d, 'libcudart_static.a')));
    if (libDir) return { include: join(root, 'include'), lib: libDir };
  }
  throw new Error(
    `the CUDA toolkit's include/cuda_runtime.h and libcudart_static.a were not found under ${roots.join(', ')}`,
  );
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
  await refreshBindings();
  await buildAddon(nvcc, headers);
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

// The kernel entry points' N-API wrappers (native/cuda/addon_bindings.inc) are generated from their
// declarations in src/ops/spec/ by scripts/gen-bindings.mjs, which reads TypeScript through tsx: a
// checkout without src/ or tsx (npm install of the package) builds the checked-in file as it is.
async function refreshBindings() {
  const generator = join(root, 'scripts', 'gen-bindings.mjs');
  if (!existsSync(generator) || !existsSync(join(root, 'src', 'ops', 'spec', 'index.ts'))) return;
  try {
    await import('tsx/esm/api');
  } catch {
    return;
  }
  const { generate } = await import(pathToFileURL(generator).href);
  await generate();
}

// build/lorakit_cuda.node: addon.cc with the host compiler (-Werror, as the .cu files), linked with the
// static library and the static CUDA runtime; the static libraries' symbols stay hidden in the addon.
async function buildAddon(nvcc, headers) {
  const cuda = cudaDirs(nvcc);
  const objTime = existsSync(addonObj) ? statSync(addonObj).mtimeMs : 0;
  const sources = Math.max(statSync(addonSrc).mtimeMs, statSync(addonBindings).mtimeMs, headers);
  if (objTime < sources) {
    process.stdout.write(`lorakit: ${cxx} native/cuda/addon.cc\n`);
    const tmp = `${addonObj}.tmp.o`;
    rmSync(tmp, { force: true });
    const cxxFlags = ['-std=c++17', '-O2', '-fPIC', '-fvisibility=hidden', '-Wall', '-Wextra', '-Werror'];
    const includes = ['-I', nodeInclude(), '-I', cuda.include, '-I', srcDir];
    await run(cxx, [...cxxFlags, ...includes, '-c', addonSrc, '-o', tmp], { maxBuffer: 1 << 24 });
    renameSync(tmp, addonObj);
  }
  const inputsTime = Math.max(statSync(addonObj).mtimeMs, statSync(lib).mtimeMs);
  if (existsSync(addon) && statSync(addon).mtimeMs >= inputsTime) return;
  const tmp = `${addon}.tmp`;
  rmSync(tmp, { force: true });
  const libs = ['-L', cuda.lib, '-lcudart_static', '-ldl', '-lpthread', '-lrt'];
  await run(cxx, ['-shared', '-o', tmp, addonObj, lib, '-Wl,--exclude-libs,ALL', ...libs], {
    maxBuffer: 1 << 24,
  });
  renameSync(tmp, addon);
  process.stdout.write(`lorakit: built ${addon}\n`);
}

withLock(outDir, 'cuda', main).catch((err) => {
  const detail = err && typeof err === 'object' && 'stderr' in err ? String(err.stderr) : '';
  process.stderr.write(
    `lorakit: CUDA build failed: ${err instanceof Error ? err.message : String(err)}\n${detail}`,
  );
  // npm install passes --optional: a toolkit that cannot build must not stop the CPU backend.
  if (optional) {
    process.stderr.write(
      'lorakit: continuing without the CUDA backend (the CPU backend works); `npm run build:cuda` retries.\n',
    );
    process.exit(0);
  }
  process.exit(1);
});
