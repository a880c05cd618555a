import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backward } from '../src/autograd/tape.js';
import { cpu } from '../src/backend/cpu/addon.js';
import { gemmInto, linear, matmul } from '../src/ops/matmul.js';
import { memoryStats, Tensor, tidy } from '../src/tensor/tensor.js';
import type { DType } from '../src/tensor/dtype.js';
import { assertClose, randn, rng } from './helpers.js';

type Arr = ArrayLike<number>;

// Element [r, c] of op(X) for an item at `off`, where op(X) is [R, C] (stored [C, R] when trans).
function opAt(x: Arr, off: number, trans: boolean, R: number, C: number, r: number, c: number): number {
  return trans ? x[off + c * R + r] : x[off + r * C + c];
}

interface Case {
  batch: number;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  /** b has a's batch dims (else 2-D, shared). */
  bBatched: boolean;
  bType: DType;
}

const label = (c: Case): string =>
  `batch ${c.batch} M ${c.m} N ${c.n} K ${c.k} transA ${c.transA} transB ${c.transB} b ${c.bBatched ? 'batched' : '2-D'} ${c.bType}`;

function inputs(c: Case, seed: number): { a: Tensor; b: Tensor; av: Float32Array; bv: Float32Array } {
  const lead = c.batch === 1 ? [] : [c.batch];
  const a = Tensor.from(randn(c.batch * c.m * c.k, seed), [...lead, ...(c.transA ? [c.k, c.m] : [c.m, c.k])]);
  const bItems = c.bBatched ? c.batch : 1;
  const b = Tensor.from(
    randn(bItems * c.k * c.n, seed + 1),
    [...(c.bBatched ? lead : []), ...(c.transB ? [c.n, c.k] : [c.k, c.n])],
    c.bType,
  );
  // The reference multiplies exactly the stored values (bf16-rounded for a bf16 b).
  return { a, b, av: a.toFloat32(), bv: b.toFloat32() };
}

// C = op(A) op(B) in float64, at the (item, row, col) positions `at` lists (all of them when null).
function refProduct(c: Case, av: Arr, bv: Arr, at: [number, number, number][] | null = null): Float64Array {
  const pos = at ?? allPositions(c.batch, c.m, c.n);
  const out = new Float64Array(pos.length);
  pos.forEach(([bi, i, j], p) => {
    const aOff = bi * c.m * c.k;
    const bOff = c.bBatched ? bi * c.k * c.n : 0;
    let s = 0;
    for (let kk = 0; kk < c.k; kk++)
      s += opAt(av, aOff, c.transA, c.m, c.k, i, kk) * opAt(bv, bOff, c.transB, c.k, c.n, kk, j);
    out[p] = s;
  });
  return out;
}

function allPositions(batch: number, m: number, n: number): [number, number, number][] {
  const pos: [number, number, number][] = [];
  for (let bi = 0; bi < batch; bi++)
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) pos.push([bi, i, j]);
  return pos;
}

function pick(c: Case, values: Float32Array, pos: [number, number, number][]): number[] {
  return pos.map(([bi, i, j]) => values[(bi * c.m + i) * c.n + j]);
}

function checkForward(c: Case, seed: number, sample = 0): void {
  tidy(() => {
    const { a, b, av, bv } = inputs(c, seed);
    const out = matmul(a, b, { transA: c.transA, transB: c.transB });
    assert.deepEqual(out.shape, [...(c.batch === 1 ? [] : [c.batch]), c.m, c.n], label(c));
    let pos: [number, number, number][] | null = null;
    if (sample > 0) {
      const r = rng(seed + 7);
      pos = Array.from({ length: sample }, () => [
        Math.floor(r() * c.batch),
        Math.floor(r() * c.m),
        Math.floor(r() * c.n),
      ]);
      // always include the last tile's corner
      pos.push([c.batch - 1, c.m - 1, c.n - 1]);
    }
    const ref = refProduct(c, av, bv, pos);
    const got = pos ? pick(c, out.as('f32'), pos) : out.as('f32');
    assertClose(got, ref, 1e-5, label(c));
  });
}

const base: Omit<Case, 'm' | 'n' | 'k' | 'transA' | 'transB'> = { batch: 1, bBatched: false, bType: 'f32' };

// (M, N, K): tiny, edge tiles, decode rows, few columns, skinny sides read in place, several A blocks,
// few rows against many columns (computed as Cᵀ).
const sizes: [number, number, number][] = [
  [1, 1, 1],
  [7, 33, 127],
  [33, 1, 7],
  [127, 129, 65],
  [1, 300, 257],
  [100, 3, 50],
  [9, 17, 40],
  [250, 40, 33],
  [20, 70, 1030],
  [16, 300, 50],
];

test('matmul forward: all four transposes against float64', () => {
  let seed = 1;
  for (const [m, n, k] of sizes)
    for (const transA of [false, true])
      for (const transB of [false, true]) checkForward({ ...base, m, n, k, transA, transB }, seed++);
});

test('matmul forward: bf16 b (stored values, widened while packing) against float64', () => {
  let seed = 100;
  for (const [m, n, k] of sizes)
    for (const transA of [false, true])
      for (const transB of [false, true])
        checkForward({ ...base, m, n, k, transA, transB, bType: 'bf16' }, seed++);
});

test('matmul forward: sizes that exercise every cache block and all threads', () => {
  // 300x520x700 all four ways; 130x2100x1100 crosses the N (2048) and K (1024) blocks (sampled);
  // 20x4200x300 crosses the wider N blocks of other paths (AVX2: 4096, NEON: 3072).
  for (const transA of [false, true])
    for (const transB of [false, true]) {
      checkForward({ ...base, m: 300, n: 520, k: 700, transA, transB }, 200, 3000);
      checkForward(
        { ...base, m: 130, n: 2100, k: 1100, transA, transB, bType: transB ? 'bf16' : 'f32' },
        300,
        2000,
      );
      checkForward(
        { ...base, m: 20, n: 4200, k: 300, transA, transB, bType: transA ? 'bf16' : 'f32' },
        400,
        2000,
      );
    }
});

test('matmul forward: batched b and broadcast 2-D b', () => {
  let seed = 400;
  for (const [batch, m, n, k] of [
    [2, 7, 33, 127],
    [6, 33, 17, 65],
    [3, 130, 70, 40],
    [4, 1, 50, 30],
    [5, 40, 1, 30],
  ])
    for (const transA of [false, true])
      for (const transB of [false, true])
        for (const bBatched of [true, false])
          for (const bType of ['f32', 'bf16'] as const)
            checkForward({ batch, m, n, k, transA, transB, bBatched, bType }, seed++);
  // several leading dims
  tidy(() => {
    const a = Tensor.from(randn(2 * 3 * 5 * 4, 9), [2, 3, 5, 4]);
    const b = Tensor.from(randn(2 * 3 * 4 * 6, 10), [2, 3, 4, 6]);
    const out = matmul(a, b);
    assert.deepEqual(out.shape, [2, 3, 5, 6]);
    const c: Case = {
      batch: 6,
      m: 5,
      n: 6,
      k: 4,
      transA: false,
      transB: false,
      bBatched: true,
      bType: 'f32',
    };
    assertClose(out.as('f32'), refProduct(c, a.toFloat32(), b.toFloat32()), 1e-5, 'leading dims');
  });
});

test('matmul forward: one thread gives the same result as all threads', () => {
  const threads = cpu.getThreads();
  try {
    cpu.setThreads(1);
    checkForward({ ...base, m: 127, n: 129, k: 65, transA: false, transB: true, bType: 'bf16' }, 500);
    checkForward(
      { ...base, batch: 3, m: 33, n: 40, k: 50, transA: true, transB: false, bBatched: true },
      501,
    );
    checkForward({ ...base, m: 1, n: 300, k: 257, transA: false, transB: false }, 502);
  } finally {
    cpu.setThreads(threads);
  }
});

test('gemmInto: alpha and beta; beta = 0 ignores NaN in c', () => {
  for (const [m, n, k, transA, transB] of [
    [7, 33, 127, false, true],
    [127, 129, 65, true, false],
    [1, 300, 257, false, false],
    [40, 2, 30, false, true],
    [300, 520, 70, true, true],
    [16, 300, 70, true, true],
    [33, 200, 20, false, true],
  ] as [number, number, number, boolean, boolean][]) {
    const c: Case = { ...base, m, n, k, transA, transB };
    tidy(() => {
      const { a, b, av, bv } = inputs(c, m + n);
      const prod = refProduct(c, av, bv);
      const c0 = Tensor.from(randn(m * n, 3), [m, n]);
      const c0v = c0.toFloat32();
      gemmInto(c0, a, b, { transA, transB, alpha: -0.5, beta: 0.75 });
      assertClose(
        c0.as('f32'),
        prod.map((v, i) => -0.5 * v + 0.75 * c0v[i]),
        1e-5,
        `alpha/beta ${label(c)}`,
      );
      const nan = Tensor.from(new Float32Array(m * n).fill(NaN), [m, n]);
      gemmInto(nan, a, b, { transA, transB, alpha: 2 });
      assertClose(
        nan.as('f32'),
        prod.map((v) => 2 * v),
        1e-5,
        `beta 0 ${label(c)}`,
      );
    });
  }
});

// ---- gradients ------------------------------------------------------------------------------------

function checkMatmulGrad(c: Case, seed: number, needA: boolean, needB: boolean): void {
  const { a, b, av, bv } = inputs(c, seed);
  a.requiresGrad = needA;
  b.requiresGrad = needB;
  const outShape = [...(c.batch === 1 ? [] : [c.batch]), c.m, c.n];
  const g64 = randn(c.batch * c.m * c.n, seed + 5);
  tidy(() => {
    const out = matmul(a, b, { transA: c.transA, transB: c.transB });
    backward(out, Tensor.from(g64, outShape));
  });
  const g = Float32Array.from(g64);
  // dop(A)[i, kk] = sum_j G[i, j] op(B)[kk, j];  dop(B)[kk, j] = sum_i op(A)[i, kk] G[i, j]
  const dA = new Float64Array(a.size);
  const dB = new Float64Array(b.size);
  for (let bi = 0; bi < c.batch; bi++) {
    const aOff = bi * c.m * c.k;
    const bOff = c.bBatched ? bi * c.k * c.n : 0;
    const gOff = bi * c.m * c.n;
    for (let i = 0; i < c.m; i++)
      for (let kk = 0; kk < c.k; kk++) {
        let sa = 0;
        for (let j = 0; j < c.n; j++) sa += g[gOff + i * c.n + j] * opAt(bv, bOff, c.transB, c.k, c.n, kk, j);
        dA[c.transA ? aOff + kk * c.m + i : aOff + i * c.k + kk] = sa;
      }
    for (let kk = 0; kk < c.k; kk++)
      for (let j = 0; j < c.n; j++) {
        let sb = 0;
        for (let i = 0; i < c.m; i++) sb += opAt(av, aOff, c.transA, c.m, c.k, i, kk) * g[gOff + i * c.n + j];
        dB[c.transB ? bOff + j * c.k + kk : bOff + kk * c.n + j] += sb;
      }
  }
  if (needA) assertClose(a.grad!.toFloat32(), dA, 1e-5, `dA ${label(c)}`);
  else assert.equal(a.grad, null, `no dA ${label(c)}`);
  if (needB) assertClose(b.grad!.toFloat32(), dB, 1e-5, `dB ${label(c)}`);
  else assert.equal(b.grad, null, `no dB ${label(c)}`);
  a.dispose();
  b.dispose();
}

test('matmul backward: dA and dB for all transposes, batched and broadcast, against float64', () => {
  let seed = 600;
  for (const [batch, m, n, k] of [
    [1, 1, 1, 1],
    [1, 7, 33, 127],
    [1, 33, 1, 7],
    [1, 127, 129, 65],
    [1, 1, 300, 257],
    [3, 9, 17, 40],
    [2, 130, 20, 33],
  ])
    for (const transA of [false, true])
      for (const transB of [false, true])
        for (const bBatched of batch === 1 ? [false] : [true, false])
          checkMatmulGrad({ batch, m, n, k, transA, transB, bBatched, bType: 'f32' }, seed++, true, true);
});

test('matmul backward: frozen inputs get no gradient; bf16 b gives dA only', () => {
  const c: Case = { ...base, m: 7, n: 33, k: 127, transA: false, transB: true };
  checkMatmulGrad(c, 700, true, false);
  checkMatmulGrad(c, 701, false, true);
  checkMatmulGrad({ ...c, bType: 'bf16' }, 702, true, false);
  checkMatmulGrad(
    { ...c, transA: true, transB: false, bType: 'bf16', batch: 3, bBatched: false },
    703,
    true,
    false,
  );
});

function checkLinear(
  rows: number[],
  inF: number,
  out: number,
  opts: { bias: boolean; wType: DType; needX: boolean; needW: boolean },
  seed: number,
): void {
  const what = `linear x [${rows}, ${inF}] w [${out}, ${inF}] ${opts.wType} bias ${opts.bias} needX ${opts.needX} needW ${opts.needW}`;
  const nRows = rows.reduce((p, d) => p * d, 1);
  const x = Tensor.from(randn(nRows * inF, seed), [...rows, inF]);
  const w = Tensor.from(randn(out * inF, seed + 1, 0.5), [out, inF], opts.wType);
  const bias = opts.bias ? Tensor.from(randn(out, seed + 2), [out]) : null;
  x.requiresGrad = opts.needX;
  w.requiresGrad = opts.needW;
  if (bias) bias.requiresGrad = true;
  const xv = x.toFloat32();
  const wv = w.toFloat32();
  const bv = bias?.toFloat32();
  const g64 = randn(nRows * out, seed + 3);
  const g = Float32Array.from(g64);
  tidy(() => {
    const y = linear(x, w, bias);
    assert.deepEqual(y.shape, [...rows, out], what);
    const ref = new Float64Array(nRows * out);
    for (let r = 0; r < nRows; r++)
      for (let o = 0; o < out; o++) {
        let s = bv ? bv[o] : 0;
        for (let i = 0; i < inF; i++) s += xv[r * inF + i] * wv[o * inF + i];
        ref[r * out + o] = s;
      }
    assertClose(y.as('f32'), ref, 1e-5, `forward ${what}`);
    backward(y, Tensor.from(g64, y.shape));
  });
  // dx = g w, dw = gᵀ x, dbias = column sums of g
  const dx = new Float64Array(nRows * inF);
  const dw = new Float64Array(out * inF);
  const db = new Float64Array(out);
  for (let r = 0; r < nRows; r++)
    for (let o = 0; o < out; o++) {
      const gv = g[r * out + o];
      db[o] += gv;
      for (let i = 0; i < inF; i++) {
        dx[r * inF + i] += gv * wv[o * inF + i];
        dw[o * inF + i] += gv * xv[r * inF + i];
      }
    }
  if (opts.needX) assertClose(x.grad!.toFloat32(), dx, 1e-5, `dx ${what}`);
  else assert.equal(x.grad, null, `no dx ${what}`);
  if (opts.needW) assertClose(w.grad!.toFloat32(), dw, 1e-5, `dw ${what}`);
  else assert.equal(w.grad, null, `no dw ${what}`);
  if (bias) assertClose(bias.grad!.toFloat32(), db, 1e-5, `dbias ${what}`);
  x.dispose();
  w.dispose();
  bias?.dispose();
}

test('linear forward and backward against float64 (bias or not, frozen or trainable)', () => {
  let seed = 800;
  for (const [rows, inF, out] of [
    [[1], 1, 1],
    [[1], 257, 300],
    [[2, 3], 33, 7],
    [[5], 127, 129],
    [[65], 127, 33],
    [[3, 43], 64, 16],
    [[65], 33, 3],
    [[16], 40, 300],
    [[2, 12], 20, 200],
  ] as [number[], number, number][])
    for (const bias of [false, true]) {
      checkLinear(rows, inF, out, { bias, wType: 'f32', needX: true, needW: true }, seed++);
      checkLinear(rows, inF, out, { bias, wType: 'bf16', needX: true, needW: false }, seed++);
      checkLinear(rows, inF, out, { bias, wType: 'f32', needX: false, needW: true }, seed++);
    }
  // 1-D x, a bf16 weight with nothing trainable (inference: nothing recorded)
  checkLinear([], 33, 7, { bias: true, wType: 'bf16', needX: false, needW: false }, seed++);
});

test('bad inputs throw clear errors', () => {
  tidy(() => {
    const a = Tensor.from(randn(6, 1), [2, 3]);
    const b = Tensor.from(randn(8, 2), [4, 2]);
    assert.throws(
      () => matmul(a, b),
      /lorakit: matmul: inner dimensions differ \(3 and 4\) between a \[2, 3\] and b \[4, 2\]/,
    );
    assert.throws(() => matmul(a, b, { transB: true }), /inner dimensions differ/);
    assert.doesNotThrow(() => matmul(a, b, { transA: true, transB: true }).dispose());
    assert.throws(
      () => matmul(a, Tensor.from([1, 2, 3], [3])),
      /lorakit: matmul: .* must both have at least 2 dimensions/,
    );
    const a3 = Tensor.from(randn(2 * 2 * 3, 3), [2, 2, 3]);
    const b3 = Tensor.from(randn(3 * 3 * 2, 4), [3, 3, 2]);
    assert.throws(
      () => matmul(a3, b3),
      /lorakit: matmul: batch dimensions of a \[2, 2, 3\] and b \[3, 3, 2\] differ/,
    );
    const ai = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3], 'i32');
    assert.throws(
      () => matmul(ai, Tensor.from(randn(6, 5), [3, 2])),
      /lorakit: matmul: a must be f32, got i32/,
    );
    assert.throws(
      () => matmul(a, Tensor.from(randn(6, 5), [3, 2], 'f16')),
      /lorakit: matmul: b must be f32 or bf16, got f16/,
    );
    const frozen = Tensor.from(randn(6, 6), [3, 2], 'bf16');
    frozen.requiresGrad = true;
    assert.throws(
      () => matmul(a, frozen),
      /lorakit: matmul: b \[3, 2\] is bf16, which is frozen storage and cannot require grad/,
    );
    assert.throws(() => linear(a, frozen), /lorakit: linear: w \[3, 2\] is bf16/);

    const x = Tensor.from(randn(10, 7), [2, 5]);
    const w = Tensor.from(randn(12, 8), [3, 4]);
    assert.throws(
      () => linear(x, w),
      /lorakit: linear: x \[2, 5\] does not match w \[3, 4\]; w must be \[out, 5\]/,
    );
    const w5 = Tensor.from(randn(15, 9), [3, 5]);
    assert.throws(
      () => linear(x, w5, Tensor.from([1, 2], [2])),
      /lorakit: linear: bias \[2\] does not match w \[3, 5\]; expected \[3\]/,
    );
    assert.throws(
      () => linear(x, w5, Tensor.from([1, 2, 3], [3], 'bf16')),
      /lorakit: linear: bias must be f32, got bf16/,
    );
    assert.throws(
      () => linear(Tensor.from(randn(10, 1), [2, 5], 'bf16'), w5),
      /lorakit: linear: x must be f32, got bf16/,
    );

    const c = Tensor.from(randn(4, 3), [2, 2]);
    assert.throws(
      () => gemmInto(c, a, Tensor.from(randn(9, 2), [3, 3])),
      /lorakit: gemmInto: c \[2, 2\] does not match the product .* \[2, 3\]/,
    );
  });
  // the native entry re-checks lengths, so a wrong call cannot read out of bounds
  assert.throws(
    () =>
      cpu.gemm(
        new Float32Array(4),
        new Float32Array(6),
        new Float32Array(5),
        null,
        1,
        2,
        2,
        3,
        false,
        false,
        1,
        0,
        6,
        6,
        4,
      ),
    /gemm: argument 2 has 5 elements, needs 6/,
  );
  assert.throws(
    () =>
      cpu.gemm(
        new Float32Array(8),
        new Float32Array(12),
        new Float32Array(6),
        null,
        2,
        2,
        2,
        3,
        false,
        false,
        1,
        0,
        6,
        0,
        3,
      ),
    /strideC is smaller than one output item/,
  );
});

test('forward and backward leave no native memory behind', () => {
  const before = memoryStats().liveBytes;
  const w = Tensor.from(randn(33 * 17, 1), [33, 17]);
  const wb = Tensor.from(randn(33 * 17, 2), [33, 17], 'bf16');
  const bias = Tensor.from(randn(33, 3), [33]);
  const b3 = Tensor.from(randn(3 * 17 * 5, 4), [3, 17, 5]);
  w.requiresGrad = bias.requiresGrad = b3.requiresGrad = true;
  const step = (): void =>
    tidy(() => {
      const x = Tensor.from(randn(3 * 9 * 17, 5), [3, 9, 17]);
      x.requiresGrad = true;
      const y = linear(x, w, bias); // [3, 9, 33]
      const yb = linear(x, wb); // [3, 9, 33], frozen bf16 weight
      const z = matmul(x, b3); // [3, 9, 5]
      const u = matmul(z, matmul(y, yb, { transB: true }), { transA: true }); // [3, 5, 9]
      backward(u, Tensor.from(randn(u.size, 6), u.shape));
      x.dispose();
    });
  step();
  for (const t of [w, bias, b3]) {
    t.grad?.dispose();
    t.grad = null;
  }
  const after1 = memoryStats().liveBytes;
  for (let i = 0; i < 5; i++) step();
  for (const t of [w, bias, b3]) {
    t.grad?.dispose();
    t.grad = null;
  }
  assert.equal(memoryStats().liveBytes, after1);
  for (const t of [w, wb, bias, b3]) t.dispose();
  assert.equal(memoryStats().liveBytes, before);
});
