// Shared test utilities: a seeded RNG, float64 references and error measures.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** mulberry32: a small seeded generator, so every random test input is reproducible. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n standard-normal values (Box-Muller) scaled by `std`. */
export function randn(n: number, seed: number, std = 1): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

/** max |a - b| / max(max |b|, tiny): relative to the reference's scale. */
export function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length, 'length mismatch');
  let maxDiff = 0;
  let maxRef = 1e-30;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
  }
  return maxDiff / maxRef;
}

export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: number,
  what = '',
): void {
  for (let i = 0; i < actual.length; i++)
    if (!Number.isFinite(actual[i])) assert.fail(`${what}: non-finite value ${actual[i]} at ${i}`);
  const err = relError(actual, expected);
  assert.ok(err < tol, `${what}: relative error ${err.toExponential(3)} exceeds ${tol}`);
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const projectRoot = root;

/** ../shared/data, the real test data kept beside the project, or null (tests then skip visibly). */
export function sharedData(...parts: string[]): string | null {
  const base = process.env.LORAKIT_SHARED_DATA ?? join(root, '..', 'shared', 'data');
  const p = join(base, ...parts);
  return existsSync(p) ? p : null;
}

/**
 * Writes paragraphs [from, from + count) of the TinyStories validation text in ../shared/data (those
 * over 50 characters) to `path` as {"text"} JSONL rows; returns path, or null when the data is absent.
 */
export function writeStoriesJsonl(path: string, from: number, count: number): string | null {
  const src = sharedData('datasets', 'tinystories', 'tinystories_val.txt');
  if (!src) return null;
  const paras = readFileSync(src, 'utf8')
    .split('\n\n')
    .map((p) => p.trim())
    .filter((p) => p.length > 50);
  const rows = paras.slice(from, from + count).map((text) => JSON.stringify({ text }));
  writeFileSync(path, `${rows.join('\n')}\n`);
  return path;
}

/** Reference outputs made by scripts/reference (test/fixtures), or null when not generated. */
export function fixture(...parts: string[]): string | null {
  const p = join(root, 'test', 'fixtures', ...parts);
  return existsSync(p) ? p : null;
}

/** rows × cols values with many ties, a NaN inside row 1, a NaN first in row 2 and a row of -inf. */
export function argmaxInput(rows: number, cols: number, seed: number): Float32Array {
  const x = Float32Array.from(randn(rows * cols, seed), (v, i) =>
    Math.floor(i / cols) % 3 ? Math.floor(v * 2) : v,
  );
  if (rows > 1) x[cols + (cols >> 1)] = NaN;
  if (rows > 2) x[2 * cols] = NaN;
  if (rows > 3) x.fill(-Infinity, 3 * cols, 4 * cols);
  return x;
}
