#!/usr/bin/env node
// Builds the CPU backend (native/cpu/*.cc) into build/lorakit_cpu.node with the system C++ compiler and
// Node's own N-API headers (scripts/build-util.mjs). Objects are rebuilt only when a source or header
// is newer, and compiled in parallel.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { newest, nodeInclude, parallel, withLock } from './build-util.mjs';

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'native', 'cpu');
const outDir = join(root, 'build');
const objDir = join(outDir, 'obj-cpu');
const target = join(outDir, 'lorakit_cpu.node');
const cxx = process.env.CXX || 'g++';

// -march=native: the addon is built on the machine that runs it (npm install), so it may use all of
// that CPU's SIMD. LORAKIT_MARCH overrides it for cross builds.
const march = process.env.LORAKIT_MARCH || 'native';
const flags = ['-O3', `-march=${march}`, '-std=c++17', '-fPIC', '-fopenmp', '-fvisibility=hidden', '-Wall', '-Wno-unused-function'];


async function main() {
  const include = nodeInclude();
  mkdirSync(objDir, { recursive: true });
  const files = readdirSync(srcDir);
  const sources = files.filter((f) => f.endsWith('.cc'));
  const newestHeader = newest(srcDir, '.h');
  const objects = sources.map((s) => join(objDir, s.replace(/\.cc$/, '.o')));
  const stale = sources.filter((s, i) => {
    const obj = objects[i];
    if (!existsSync(obj)) return true;
    const t = statSync(obj).mtimeMs;
    return t < statSync(join(srcDir, s)).mtimeMs || t < newestHeader;
  });
  await parallel(stale, async (s) => {
    process.stdout.write(`lorakit: compiling native/cpu/${s}\n`);
    await run(cxx, [...flags, '-I', include, '-c', join(srcDir, s), '-o', join(objDir, s.replace(/\.cc$/, '.o'))], {
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

withLock(outDir, 'native', main).catch((err) => {
  const detail = err && typeof err === 'object' && 'stderr' in err ? String(err.stderr) : '';
  process.stderr.write(`lorakit: native build failed: ${err instanceof Error ? err.message : String(err)}\n${detail}`);
  process.exit(1);
});
