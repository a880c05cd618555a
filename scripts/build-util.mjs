// What scripts/build-native.mjs and scripts/build-cuda.mjs share: Node's N-API headers, newest-file
// times for rebuild checks, a bounded parallel loop and a lock folder.
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * The folder holding node_api.h. No node-gyp: it would download Node's headers, and the headers Node
 * itself ships are all an N-API addon needs.
 */
export function nodeInclude() {
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

/** The newest modification time of the files in dir ending with ext (0 when there are none). */
export function newest(dir, ext) {
  return Math.max(
    0,
    ...readdirSync(dir)
      .filter((f) => f.endsWith(ext))
      .map((f) => statSync(join(dir, f)).mtimeMs),
  );
}

/** Runs fn over items with as many in flight as there are CPUs. */
export async function parallel(items, fn) {
  const queue = [...items];
  const workers = Array.from(
    { length: Math.max(1, Math.min(availableParallelism(), queue.length)) },
    async () => {
      for (let it = queue.shift(); it !== undefined; it = queue.shift()) await fn(it);
    },
  );
  await Promise.all(workers);
}

/** Several builds may start at once (parallel test runs); a lock folder in outDir serializes them. */
export async function withLock(outDir, name, fn) {
  const lock = join(outDir, `.${name}.lock`);
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
