#!/usr/bin/env node
// Builds the CPU backend (native/cpu/*.cc) into build/lorakit_cpu.node with the system C++ compiler.
// No node-gyp: it would download Node's headers, and the headers Node itself ships are all an N-API
// addon needs. Objects are rebuilt only when a source or header is newer, and compiled in parallel.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'native', 'cpu');
const outDir = join(root, 'build');
const objDir = join(outDir, 'obj-cpu');
const target = join(outDir, 'lorakit_cpu.node');
const cxx = process.env.CXX || 'g++';

function nodeInclude() {
  const candidates = [
    process.env.LORAKIT_NODE_INCLUDE,
    resolve(process.execPath, '..', '..', 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ].filter(Boolean);
  for (const dir of candidates) if (existsSync(join(dir, 'node_api.h'))) return dir;
  throw new Error(
    `node_api.h not found in ${candidates.join(', ')}; set LORAKIT_NODE_INCLUDE to the folder holding Node's headers.`,
  );
}

// -march=native: the addon is built on the machine that runs it (npm install), so it may use all of
// that CPU's SIMD. LORAKIT_MARCH overrides it for cross builds.
const march = process.env.LORAKIT_MARCH || 'native';
const flags = ['-O3', `-march=${march}`, '-std=c++17', '-fPIC', '-fopenmp', '-fvisibility=hidden', '-Wall', '-Wno-unused-function'];

// Several builds may start at once (parallel test runs); a lock folder serializes them.
async function withLock(fn) {
  const lock = join(outDir, '.lock');
  mkdirSync(outDir, { recursive: true });
  for (let waited = 0; ; waited += 200) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (waited > 600_000) rmSync(lock, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

async function main() {
  const include = nodeInclude();
  mkdirSync(objDir, { recursive: true });
  const files = readdirSync(srcDir);
  const sources = files.filter((f) => f.endsWith('.cc'));
  const newestHeader = Math.max(0, ...files.filter((f) => f.endsWith('.h')).map((f) => statSync(join(srcDir, f)).mtimeMs));
  const objects = sources.map((s) => join(objDir, s.replace(/\.cc$/, '.o')));
  const stale = sources.filter((s, i) => {
    const obj = objects[i];
    if (!existsSync(obj)) return true;
    const t = statSync(obj).mtimeMs;
    return t < statSync(join(srcDir, s)).mtimeMs || t < newestHeader;
  });
  const queue = [...stale];
  const workers = Array.from({ length: Math.max(1, Math.min(availableParallelism(), queue.length)) }, async () => {
    for (let s = queue.shift(); s !== undefined; s = queue.shift()) {
      const obj = join(objDir, s.replace(/\.cc$/, '.o'));
      process.stdout.write(`lorakit: compiling native/cpu/${s}\n`);
      await run(cxx, [...flags, '-I', include, '-c', join(srcDir, s), '-o', obj], { maxBuffer: 1 << 24 });
    }
  });
  await Promise.all(workers);
  if (stale.length > 0 || !existsSync(target)) {
    const tmp = `${target}.tmp`;
    await run(cxx, ['-shared', '-fopenmp', '-o', tmp, ...objects], { maxBuffer: 1 << 24 });
    renameSync(tmp, target);
    process.stdout.write(`lorakit: built ${target}\n`);
  }
}

withLock(main).catch((err) => {
  const detail = err && typeof err === 'object' && 'stderr' in err ? String(err.stderr) : '';
  process.stderr.write(`lorakit: native build failed: ${err instanceof Error ? err.message : String(err)}\n${detail}`);
  process.exit(1);
});
