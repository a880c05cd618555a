// The paged KV cache ops (native/cpu/paged_attention.cc through src/ops/paged-attention.ts) against a
// float64 reference on odd sizes (vector tails, GQA groups of 1, 4 and 7, block sizes 16, 7 and 1,
// shuffled non-contiguous block tables, rows of several sequences mixed), against the dense attention
// op on the same sequences packed contiguously, and their refusals of bad inputs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { noGrad } from '../src/autograd/tape.js';
import { cpu } from '../src/backend/cpu/addon.js';
import { attention } from '../src/ops/attention.js';
import { pagedAttention, pagedKvWrite } from '../src/ops/paged-attention.js';
import { Tensor } from '../src/tensor/tensor.js';
import { assertClose, randn, rng } from './helpers.js';

/** A paged cache holding some sequences: the pools, the block table and each sequence's dense k, v. */
interface Cache {
  Hkv: number;
  D: number;
  blockSize: number;
  kPool: Tensor; // [numBlocks, blockSize, Hkv, D]
  vPool: Tensor;
  blockTables: Tensor; // [S, maxBlocks] i32
  /** Per sequence: k, v [len, Hkv, D] as written (float32 values). */
  k: Float32Array[];
  v: Float32Array[];
  /** The slot of each sequence's positions. */
  slots: number[][];
}

function shuffle<T>(xs: T[], r: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

/**
 * Pools with spare blocks, filled with noise (unused slots must never be read), blocks handed out in
 * a shuffled order, table entries past a sequence's blocks set to -1; every position's k and v written
 * with one pagedKvWrite call over all sequences' rows in a shuffled order.
 */
function buildCache(lens: number[], Hkv: number, D: number, blockSize: number, seed: number): Cache {
  const r = rng(seed);
  const blocksOf = lens.map((n) => Math.ceil(n / blockSize));
  const numBlocks = blocksOf.reduce((a, b) => a + b, 0) + 3;
  const maxBlocks = Math.max(...blocksOf) + 1;
  const free = shuffle(
    Array.from({ length: numBlocks }, (_, i) => i),
    r,
  );
  const table = new Int32Array(lens.length * maxBlocks).fill(-1);
  lens.forEach((_, s) => {
    for (let b = 0; b < blocksOf[s]; b++) table[s * maxBlocks + b] = free.pop()!;
  });
  const poolShape = [numBlocks, blockSize, Hkv, D];
  const poolSize = numBlocks * blockSize * Hkv * D;
  const kPool = Tensor.from(randn(poolSize, seed + 1, 50), poolShape);
  const vPool = Tensor.from(randn(poolSize, seed + 2, 50), poolShape);
  const row = Hkv * D;
  const k = lens.map((n, s) => Float32Array.from(randn(n * row, seed + 10 + s)));
  const v = lens.map((n, s) => Float32Array.from(randn(n * row, seed + 50 + s)));
  const slots = lens.map((n, s) =>
    Array.from(
      { length: n },
      (_, p) => table[s * maxBlocks + Math.floor(p / blockSize)] * blockSize + (p % blockSize),
    ),
  );
  const order = shuffle(
    lens.flatMap((n, s) => Array.from({ length: n }, (_, p) => [s, p] as const)),
    r,
  );
  const kRows = new Float32Array(order.length * row);
  const vRows = new Float32Array(order.length * row);
  order.forEach(([s, p], i) => {
    kRows.set(k[s].subarray(p * row, (p + 1) * row), i * row);
    vRows.set(v[s].subarray(p * row, (p + 1) * row), i * row);
  });
  const kt = Tensor.from(kRows, [order.length, Hkv, D]);
  const vt = Tensor.from(vRows, [order.length, Hkv, D]);
  const st = Tensor.from(
    order.map(([s, p]) => slots[s][p]),
    [order.length],
    'i32',
  );
  pagedKvWrite(kPool, vPool, kt, vt, st);
  const blockTables = Tensor.from(table, [lens.length, maxBlocks], 'i32');
  return { Hkv, D, blockSize, kPool, vPool, blockTables, k, v, slots };
}

/** Float64 reference: out [N, Hq, D] over each row's sequence positions 0..rowPos. */
function reference(
  c: Cache,
  q: Float32Array,
  Hq: number,
  rowSeq: number[],
  rowPos: number[],
  scale: number,
): Float64Array {
  const { Hkv, D } = c;
  const G = Hq / Hkv;
  const out = new Float64Array(q.length);
  rowSeq.forEach((s, i) => {
    const L = rowPos[i] + 1;
    for (let h = 0; h < Hq; h++) {
      const g = Math.floor(h / G);
      const qo = (i * Hq + h) * D;
      const scores = new Float64Array(L);
      for (let p = 0; p < L; p++) {
        let acc = 0;
        for (let d = 0; d < D; d++) acc += q[qo + d] * c.k[s][(p * Hkv + g) * D + d];
        scores[p] = acc * scale;
      }
      const m = Math.max(...scores);
      let sum = 0;
      for (let p = 0; p < L; p++) sum += scores[p] = Math.exp(scores[p] - m);
      for (let p = 0; p < L; p++)
        for (let d = 0; d < D; d++) out[qo + d] += (scores[p] / sum) * c.v[s][(p * Hkv + g) * D + d];
    }
  });
  return out;
}

/** Query rows mixing the sequences: each one's last position, runs of consecutive positions, random ones. */
function pickRows(lens: number[], N: number, seed: number): { rowSeq: number[]; rowPos: number[] } {
  const r = rng(seed);
  const rows: [number, number][] = lens.map((n, s) => [s, n - 1]);
  while (rows.length < N) {
    const s = Math.floor(r() * lens.length);
    const run = Math.min(1 + Math.floor(r() * 4), N - rows.length);
    const start = Math.floor(r() * lens[s]);
    for (let p = start; p < Math.min(lens[s], start + run); p++) rows.push([s, p]);
  }
  const picked = shuffle(rows.slice(0, N), r);
  return { rowSeq: picked.map((x) => x[0]), rowPos: picked.map((x) => x[1]) };
}

const cases = [
  { lens: [5, 37, 130], Hq: 4, Hkv: 4, D: 64, blockSize: 16, N: 11 },
  { lens: [1, 3001, 77], Hq: 8, Hkv: 2, D: 13, blockSize: 7, N: 9 },
  { lens: [19, 45], Hq: 7, Hkv: 1, D: 80, blockSize: 1, N: 37 },
  { lens: [200, 3, 640, 1], Hq: 14, Hkv: 2, D: 128, blockSize: 16, N: 23 },
  { lens: [33], Hq: 4, Hkv: 1, D: 3, blockSize: 7, N: 1 },
];

test('pagedKvWrite then pagedAttention match a float64 reference', () => {
  cases.forEach((cs, ci) => {
    const c = buildCache(cs.lens, cs.Hkv, cs.D, cs.blockSize, 100 + ci);
    const { rowSeq, rowPos } = pickRows(cs.lens, cs.N, 200 + ci);
    // Position −1: a row another kernel answers (a prefill row through flash attention) is zeros.
    if (cs.N > 1) rowPos[ci % cs.N] = -1;
    const q = Float32Array.from(randn(cs.N * cs.Hq * cs.D, 300 + ci));
    const scale = 1.3 / Math.sqrt(cs.D);
    const out = pagedAttention(
      Tensor.from(q, [cs.N, cs.Hq, cs.D]),
      c.kPool,
      c.vPool,
      c.blockTables,
      Tensor.from(rowSeq, [cs.N], 'i32'),
      Tensor.from(rowPos, [cs.N], 'i32'),
      scale,
    );
    assert.deepEqual(out.shape, [cs.N, cs.Hq, cs.D]);
    const what = `lens ${cs.lens} Hq ${cs.Hq} Hkv ${cs.Hkv} D ${cs.D} blockSize ${cs.blockSize}`;
    assertClose(out.toFloat32(), reference(c, q, cs.Hq, rowSeq, rowPos, scale), 2e-5, what);
  });
});

test('pagedKvWrite takes k and v of any leading shape and writes only the given slots', () => {
  const [numBlocks, blockSize, Hkv, D] = [3, 4, 2, 5];
  const noise = randn(numBlocks * blockSize * Hkv * D, 7);
  const kPool = Tensor.from(noise, [numBlocks, blockSize, Hkv, D]);
  const vPool = Tensor.from(noise, [numBlocks, blockSize, Hkv, D]);
  const k = randn(2 * 3 * Hkv * D, 8);
  const v = randn(2 * 3 * Hkv * D, 9);
  const slots = [11, 0, 5, 6, 1, 9];
  pagedKvWrite(
    kPool,
    vPool,
    Tensor.from(k, [2, 3, Hkv, D]),
    Tensor.from(v, [2, 3, Hkv, D]),
    Tensor.from(slots, [6], 'i32'),
  );
  const expectK = Float32Array.from(noise);
  const expectV = Float32Array.from(noise);
  slots.forEach((s, i) => {
    expectK.set(Float32Array.from(k.subarray(i * Hkv * D, (i + 1) * Hkv * D)), s * Hkv * D);
    expectV.set(Float32Array.from(v.subarray(i * Hkv * D, (i + 1) * Hkv * D)), s * Hkv * D);
  });
  assert.deepEqual(kPool.toFloat32(), expectK);
  assert.deepEqual(vPool.toFloat32(), expectV);
});

test('pagedAttention over a pool equals dense attention over the same sequences packed contiguously', () => {
  const lens = [13, 40, 1, 7];
  const [Hq, Hkv, D, blockSize] = [6, 3, 24, 5];
  const T = lens.reduce((a, b) => a + b, 0);
  const c = buildCache(lens, Hkv, D, blockSize, 31);
  const q = Float32Array.from(randn(T * Hq * D, 32));
  const seqOf: number[] = [];
  const posOf: number[] = [];
  lens.forEach((n, s) => {
    for (let p = 0; p < n; p++) (seqOf.push(s), posOf.push(p));
  });
  // The dense layout: one batch row, the sequences back to back as packed segments 1, 2, 3, 4.
  const row = Hkv * D;
  const kd = new Float32Array(T * row);
  const vd = new Float32Array(T * row);
  let at = 0;
  lens.forEach((n, s) => {
    kd.set(c.k[s], at * row);
    vd.set(c.v[s], at * row);
    at += n;
  });
  const segments = Tensor.from(
    seqOf.map((s) => s + 1),
    [1, T],
    'i32',
  );
  const scale = 1 / Math.sqrt(D);
  const dense = noGrad(() =>
    attention(
      Tensor.from(q, [1, T, Hq, D]),
      Tensor.from(kd, [1, T, Hkv, D]),
      Tensor.from(vd, [1, T, Hkv, D]),
      segments,
      { scale },
    ),
  );
  const paged = pagedAttention(
    Tensor.from(q, [T, Hq, D]),
    c.kPool,
    c.vPool,
    c.blockTables,
    Tensor.from(seqOf, [T], 'i32'),
    Tensor.from(posOf, [T], 'i32'),
    scale,
  );
  assertClose(paged.toFloat32(), dense.toFloat32(), 1e-5, 'paged vs dense attention');
});

/** Expects fn to throw one sentence starting "lorakit: <op>: " and matching `pattern`. */
function throwsOneSentence(fn: () => unknown, op: string, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Error);
    assert.ok(e.message.startsWith(`lorakit: ${op}`), e.message);
    assert.match(e.message, /\.$/, e.message);
    assert.doesNotMatch(e.message, /\. [A-Z]/, `more than one sentence: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

test('bad inputs are refused with one clear sentence', () => {
  const lens = [9, 20];
  const [Hq, Hkv, D, blockSize] = [4, 2, 8, 4];
  const c = buildCache(lens, Hkv, D, blockSize, 41);
  const q = Tensor.from(randn(2 * Hq * D, 42), [2, Hq, D]);
  const i32 = (xs: number[], shape = [xs.length]) => Tensor.from(xs, shape, 'i32');
  const attend = (over: Partial<Record<'q' | 'vPool' | 'tables' | 'seq' | 'pos', Tensor>> = {}) =>
    pagedAttention(
      over.q ?? q,
      c.kPool,
      over.vPool ?? c.vPool,
      over.tables ?? c.blockTables,
      over.seq ?? i32([0, 1]),
      over.pos ?? i32([8, 19]),
      0.3,
    );
  attend(); // the valid call runs
  const op = 'pagedAttention';
  throwsOneSentence(
    () => attend({ q: Tensor.from(randn(Hq * D, 1), [1, 1, Hq, D]) }),
    op,
    /q must be \[N, Hq, 8\]/,
  );
  throwsOneSentence(
    () => attend({ q: Tensor.from(randn(2 * 3 * D, 1), [2, 3, D]) }),
    op,
    /multiple of the pools' kv heads/,
  );
  throwsOneSentence(
    () => attend({ vPool: Tensor.zeros([c.kPool.shape[0], blockSize, Hkv, D + 1]) }),
    op,
    /vPool has shape/,
  );
  throwsOneSentence(() => attend({ seq: i32([0, 1, 1]) }), op, /rowSeq has shape \[3\], expected \[2\]/);
  throwsOneSentence(() => attend({ pos: Tensor.from([8, 19], [2]) }), op, /rowPos must be i32, got f32/);
  throwsOneSentence(
    () => attend({ seq: i32([0, 2]) }),
    op,
    /rowSeq\[1\] is 2, outside the block table's sequences/,
  );
  // Sequence 0 owns 3 blocks, so its table row ends in -1: position 12 reaches that entry.
  throwsOneSentence(() => attend({ pos: i32([12, 19]) }), op, /blockTables\[0, 3\] is block -1/);
  const maxPositions = c.blockTables.shape[1] * blockSize;
  throwsOneSentence(() => attend({ pos: i32([maxPositions, 0]) }), op, /past the block table/);
  throwsOneSentence(() => attend({ pos: i32([-2, 0]) }), op, /rowPos\[0\] is -2/);
  const tables = c.blockTables.as('i32').slice();
  tables[c.blockTables.shape[1] + 2] = 99;
  throwsOneSentence(
    () => attend({ tables: Tensor.from(tables, c.blockTables.shape, 'i32') }),
    op,
    /blockTables\[1, 2\] is block 99, outside the pools' blocks/,
  );
  const trainable = Tensor.from(randn(2 * Hq * D, 43), [2, Hq, D]);
  trainable.requiresGrad = true;
  throwsOneSentence(() => attend({ q: trainable }), op, /inference only/);
  noGrad(() => attend({ q: trainable })); // without recording it runs

  const kv = () => Tensor.from(randn(2 * Hkv * D, 44), [2, Hkv, D]);
  const write = (k: Tensor, slots: Tensor) => pagedKvWrite(c.kPool, c.vPool, k, kv(), slots);
  const numSlots = c.kPool.shape[0] * blockSize;
  throwsOneSentence(
    () => write(kv(), i32([3, numSlots])),
    'pagedKvWrite',
    new RegExp(`slot ${numSlots} of row 1 is outside`),
  );
  throwsOneSentence(() => write(kv(), i32([-2, 0])), 'pagedKvWrite', /slot -2 of row 0/);
  throwsOneSentence(
    () => write(kv(), i32([1, 2, 3])),
    'pagedKvWrite',
    /slots has shape \[3\], expected \[2\]/,
  );
  throwsOneSentence(
    () => write(Tensor.from(randn(2 * Hkv * 3, 45), [2, Hkv, 3]), i32([0, 1])),
    'pagedKvWrite',
    /k has shape \[2, 2, 3\], expected \[\.\.\., 2, 8\]/,
  );
  const kGrad = kv();
  kGrad.requiresGrad = true;
  throwsOneSentence(() => write(kGrad, i32([0, 1])), 'pagedKvWrite', /inference only/);
});

test('the native kernels check indices themselves and leave the outputs untouched when they throw', () => {
  const pool = new Float32Array(4 * 2 * 3).fill(7);
  const rows = new Float32Array(2 * 2 * 3).fill(1);
  assert.throws(
    () => cpu.pagedKvWriteF32(pool, pool, rows, rows, Int32Array.from([1, 4]), 2, 2, 3, 4),
    /pagedKvWrite: slot 4 of row 1 is outside the pool's 4 slots/,
  );
  assert.ok(pool.every((x) => x === 7));
  const out = new Float32Array(2 * 3).fill(5);
  const q = new Float32Array(2 * 3);
  // pools of 2 blocks of 2 slots, Hkv 1, D 3; one sequence with table [1, 5]
  const attend = (seq: number, pos: number) =>
    cpu.pagedAttentionF32(
      out,
      q,
      pool,
      pool,
      Int32Array.from([1, 5]),
      Int32Array.of(seq),
      Int32Array.of(pos),
      1,
      2,
      1,
      3,
      2,
      2,
      1,
      2,
      1,
    );
  assert.throws(
    () => attend(0, 2),
    /pagedAttention: block 5 at blockTables\[0, 1\] is outside the pool's 2 blocks/,
  );
  assert.throws(() => attend(1, 0), /row 0 names sequence 1 but the block table has 1 rows/);
  assert.throws(() => attend(0, 4), /position 4 of row 0 is outside the block table's 4 positions/);
  assert.ok(out.every((x) => x === 5));
  attend(0, 1);
  assert.ok(out.every((x) => x === 7));
});
