#!/usr/bin/env node
// Builds the CPU backend: one addon per kernel path of the target architecture (native/cpu/isa/isas.json),
// build/lorakit_cpu-<isa>.node, each from native/cpu/*.cc compiled with that path's flags and its folder
// native/cpu/isa/<isa>/ first on the include path. One x86-64 build thus carries AVX-512, AVX2 and
// portable code and src/backend/cpu/addon.ts picks at run time; nothing is tuned to the build machine.
// Objects are rebuilt only when a source or header is newer, and compiled in parallel.
//   CXX=aarch64-linux-gnu-g++ node scripts/build-native.mjs --out build-arm64   (a cross build)
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { newest, nodeInclude, parallel, withLock } from './build-util.mjs';

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'native', 'cpu');
const isaDir = join(srcDir, 'isa');
const cxx = process.env.CXX || 'g++';
const outArg = process.argv.indexOf('--out');
const outDir = outArg > 0 ? resolve(process.argv[outArg + 1]) : join(root, 'build');
// -fno-math-errno: std::sqrt and friends need not set errno, so one-lane (portable) loops over them
// vectorize; results are unchanged.
const common = [
  '-O3',
  '-fno-math-errno',
  '-std=c++17',
  '-fPIC',
  '-fopenmp',
  '-fvisibility=hidden',
  '-Wall',
  '-Wno-unused-function',
];

/** The architecture the compiler targets, in Node's naming (process.arch). */
async function targetArch() {
  const { stdout } = await run(cxx, ['-dumpmachine']);
  if (stdout.startsWith('x86_64')) return 'x64';
  if (stdout.startsWith('aarch64')) return 'arm64';
  throw new Error(`${cxx} targets ${stdout.trim()}; lorakit's CPU kernels are for x86-64 and arm64`);
}

async function buildIsa(isa, include) {
  const objDir = join(outDir, `obj-cpu-${isa.name}`);
  const target = join(outDir, `lorakit_cpu-${isa.name}.node`);
  const ownDir = join(isaDir, isa.name);
  mkdirSync(objDir, { recursive: true });
  const sources = readdirSync(srcDir).filter((f) => f.endsWith('.cc'));
  const newestHeader = Math.max(
    newest(srcDir, '.h'),
    newest(ownDir, '.h'),
    statSync(join(isaDir, 'isas.json')).mtimeMs,
  );
  const objects = sources.map((s) => join(objDir, s.replace(/\.cc$/, '.o')));
  const stale = sources.filter((s, i) => {
    if (!existsSync(objects[i])) return true;
    const t = statSync(objects[i]).mtimeMs;
    return t < statSync(join(srcDir, s)).mtimeMs || t < newestHeader;
  });
  const flags = [
    ...common,
    ...isa.flags,
    `-DLK_ISA_NAME="${isa.name}"`,
    '-I',
    ownDir,
    '-I',
    srcDir,
    '-I',
    include,
  ];
  await parallel(stale, async (s) => {
    process.stdout.write(`lorakit: compiling native/cpu/${s} (${isa.name})\n`);
    await run(cxx, [...flags, '-c', join(srcDir, s), '-o', join(objDir, s.replace(/\.cc$/, '.o'))], {
      maxBuffer: 1 << 24,
    });
  });
  if (stale.length > 0 || !existsSync(target)) {
    const tmp = `${target}.tmp`;
    await run(cxx, ['-shared', '-fopenmp', '-o', tmp, ...objects], { maxBuffer: 1 << 24 });
    renameSync(tmp, target);
    process.stdout.write(`lorakit: built ${target}\n`);
  }
}

async function main() {
  const include = nodeInclude();
  const arch = await targetArch();
  const { isas } = JSON.parse(readFileSync(join(isaDir, 'isas.json'), 'utf8'));
  for (const isa of isas.filter((i) => i.arch === arch)) await buildIsa(isa, include);
}

withLock(outDir, 'native', main).catch((err) => {
  const detail = err && typeof err === 'object' && 'stderr' in err ? String(err.stderr) : '';
  process.stderr.write(
    `lorakit: native build failed: ${err instanceof Error ? err.message : String(err)}\n${detail}`,
  );
  process.exit(1);
});
