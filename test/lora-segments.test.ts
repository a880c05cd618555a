// The LoRA term of many adapters over one batch (src/ops/lora-segments.ts) on the CPU: against a float64
// reference with mixed ranks, gaps between segments and f32 and bf16 factors; against the per-segment
// linear + gemmInto path (src/serve/batch-forward.ts); each row's bits the same alone as in a batch;
// and bad inputs, each refused with one sentence.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { noGrad } from '../src/autograd/tape.js';
import { loraSegments, type LoraSegment } from '../src/ops/lora-segments.js';
import { gemmInto, linear } from '../src/ops/matmul.js';
import { Tensor, tidy } from '../src/tensor/tensor.js';
import { assertClose, randn } from './helpers.js';

const IN = 91;
const OUT = 53;

function rand(shape: number[], seed: number, std = 1, dtype: 'f32' | 'bf16' = 'f32'): Tensor {
  return Tensor.from(
    randn(
      shape.reduce((a, b) => a * b, 1),
      seed,
      std,
    ),
    shape,
    dtype,
  );
}

interface Adapter {
  A: Tensor;
  B: Tensor;
  s: number;
}

function adapter(rank: number, seed: number, dtype: 'f32' | 'bf16', inF = IN, out = OUT): Adapter {
  return {
    A: rand([rank, inF], seed, 1 / Math.sqrt(inF), dtype),
    B: rand([out, rank], seed + 1, 1 / Math.sqrt(rank), dtype),
    s: 0.5 + (seed % 7) / 4,
  };
}

/** Segments with these row counts, a gap of `gap(i)` rows before each, cycling through the adapters. */
function layout(lengths: number[], adapters: Adapter[], gap: (i: number) => number): LoraSegment[] {
  const segs: LoraSegment[] = [];
  let row = 0;
  lengths.forEach((len, i) => {
    row += gap(i);
    const a = adapters[i % adapters.length];
    segs.push({ start: row, end: row + len, A: a.A, B: a.B, s: a.s });
    row += len;
  });
  return segs;
}

const rowsOf = (segs: readonly LoraSegment[], extra: number) => Math.max(...segs.map((g) => g.end)) + extra;

/** y0 + every segment's term, in float64. */
function reference(x: Tensor, y0: Tensor, segs: readonly LoraSegment[]): Float64Array {
  const xs = x.toFloat32();
  const y = Float64Array.from(y0.toFloat32());
  const inF = x.shape[1];
  const out = y0.shape[1];
  for (const { start, end, A, B, s } of segs) {
    const a = A.toFloat32();
    const b = B.toFloat32();
    const r = A.shape[0];
    for (let i = start; i < end; i++) {
      const h = new Float64Array(r);
      for (let j = 0; j < r; j++) for (let k = 0; k < inF; k++) h[j] += xs[i * inF + k] * a[j * inF + k];
      for (let o = 0; o < out; o++) {
        let acc = 0;
        for (let j = 0; j < r; j++) acc += h[j] * b[o * r + j];
        y[i * out + o] += s * acc;
      }
    }
  }
  return y;
}

/** loraSegments on a copy of y0. */
function run(x: Tensor, y0: Tensor, segs: readonly LoraSegment[]): Float32Array {
  return tidy(() => {
    const y = Tensor.from(y0.toFloat32(), y0.shape);
    loraSegments(y, x, segs);
    return y.toFloat32();
  });
}

const mixed = (dtype: 'f32' | 'bf16') => [1, 5, 16, 64].map((r, i) => adapter(r, 10 + 3 * i, dtype));

for (const dtype of ['f32', 'bf16'] as const)
  test(`loraSegments (${dtype} factors): mixed ranks and gaps against a float64 reference`, () => {
    const segs = layout([3, 1, 12, 7, 2, 9, 1], mixed(dtype), (i) => i % 3);
    const N = rowsOf(segs, 2);
    const x = rand([N, IN], 1);
    const y0 = rand([N, OUT], 2, 0.5);
    const got = run(x, y0, segs);
    assertClose(got, reference(x, y0, segs), 1e-5, 'y');
    // Rows in no segment (the gaps and the tail) keep their bits.
    const covered = new Set(
      segs.flatMap(({ start, end }) => Array.from({ length: end - start }, (_, k) => start + k)),
    );
    const before = y0.toFloat32();
    for (let i = 0; i < N; i++)
      if (!covered.has(i))
        for (let o = 0; o < OUT; o++) assert.equal(got[i * OUT + o], before[i * OUT + o], `row ${i} changed`);
  });

test('loraSegments equals the per-segment linear + gemmInto path (bitwise for segments of up to 8 rows)', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    const segs = layout([1, 8, 3, 20, 5], mixed(dtype), (i) => (i === 2 ? 4 : 1));
    const N = rowsOf(segs, 1);
    const x = rand([N, IN], 3);
    const y0 = rand([N, OUT], 4, 0.5);
    const got = run(x, y0, segs);
    const want = tidy(() => {
      const y = Tensor.from(y0.toFloat32(), y0.shape);
      for (const { start, end, A, B, s } of segs) {
        const yr = y.sliceRows(start, end);
        gemmInto(yr, linear(x.sliceRows(start, end), A), B, { transB: true, alpha: s, beta: 1 });
      }
      return y.toFloat32();
    });
    for (const { start, end } of segs) {
      const a = got.subarray(start * OUT, end * OUT);
      const b = want.subarray(start * OUT, end * OUT);
      if (end - start <= 8) assert.deepEqual(a, b, `${dtype}: rows [${start}, ${end})`);
      else assertClose(a, b, 1e-6, `${dtype}: rows [${start}, ${end})`);
    }
  }
});

test("loraSegments: each row's result is bitwise the same alone as in a batch", () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    const segs = layout([20, 1, 9, 3], mixed(dtype), (i) => i);
    const N = rowsOf(segs, 0);
    const x = rand([N, IN], 5);
    const y0 = rand([N, OUT], 6, 0.5);
    const batch = run(x, y0, segs);
    for (const { start, end, A, B, s } of segs)
      for (let i = start; i < end; i++)
        tidy(() => {
          const alone = run(x.sliceRows(i, i + 1), y0.sliceRows(i, i + 1), [{ start: 0, end: 1, A, B, s }]);
          assert.deepEqual(alone, batch.subarray(i * OUT, (i + 1) * OUT), `${dtype}: row ${i}`);
        });
  }
});

test('loraSegments: leading dimensions flatten into rows, and empty segments do nothing', () => {
  const a = adapter(4, 40, 'f32');
  const x = rand([6, 1, IN], 7);
  const y0 = rand([6, 1, OUT], 8, 0.5);
  const segs: LoraSegment[] = [
    { start: 1, end: 4, ...a },
    { start: 5, end: 5, ...a },
  ];
  const y = Tensor.from(y0.toFloat32(), y0.shape);
  loraSegments(y, x, segs);
  assertClose(y.toFloat32(), reference(x.reshape([6, IN]), y0.reshape([6, OUT]), segs), 1e-5, 'y');
});

/** Runs loraSegments and returns the message it throws. */
function refusal(fn: () => void): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  assert.fail('expected an error');
}

test('loraSegments: bad inputs are refused with one clear sentence', () => {
  const x = rand([10, IN], 9);
  const y = rand([10, OUT], 10);
  const a = adapter(4, 50, 'f32');
  const seg = (start: number, end: number, f: Partial<Adapter> = {}): LoraSegment => ({
    start,
    end,
    ...a,
    ...f,
  });
  const cases: [string, () => void, RegExp][] = [
    [
      'overlap',
      () => loraSegments(y, x, [seg(0, 4), seg(3, 6)]),
      /segments 0 \[0, 4\) and 1 \[3, 6\) overlap/,
    ],
    ['past the end', () => loraSegments(y, x, [seg(8, 11)]), /segment 0 covers rows \[8, 11\)/],
    ['negative start', () => loraSegments(y, x, [seg(-1, 2)]), /segment 0 covers rows \[-1, 2\)/],
    ['reversed', () => loraSegments(y, x, [seg(5, 3)]), /covers rows \[5, 3\)/],
    ['fractional', () => loraSegments(y, x, [seg(0.5, 3)]), /covers rows \[0\.5, 3\)/],
    [
      'A features',
      () => loraSegments(y, x, [seg(0, 2, { A: rand([4, IN + 1], 1) })]),
      /A \[4, 92\] must be \[r, 91\]/,
    ],
    [
      'A not 2-D',
      () => loraSegments(y, x, [seg(0, 2, { A: rand([4, IN, 1], 1) })]),
      /A \[4, 91, 1\] must be/,
    ],
    [
      'B outputs',
      () => loraSegments(y, x, [seg(0, 2, { B: rand([OUT + 1, 4], 1) })]),
      /B \[54, 4\] must be \[53, 4\]/,
    ],
    [
      'rank mismatch',
      () => loraSegments(y, x, [seg(0, 2, { B: rand([OUT, 5], 1) })]),
      /B \[53, 5\] must be \[53, 4\].*rank 4/,
    ],
    [
      'rank too large',
      () => loraSegments(y, x, [seg(0, 2, { A: rand([257, IN], 1), B: rand([OUT, 257], 1) })]),
      /rank 257; ranks must be in \[1, 256\]/,
    ],
    ['scale', () => loraSegments(y, x, [seg(0, 2, { s: Number.NaN })]), /scale s must be a finite number/],
    [
      'factor dtype',
      () => loraSegments(y, x, [seg(0, 2, { A: Tensor.zeros([4, IN], 'i32') })]),
      /A must be f32 or bf16/,
    ],
    [
      'y dtype',
      () => loraSegments(Tensor.zeros([10, OUT], 'bf16'), x, [seg(0, 2)]),
      /y must have x's dtype f32/,
    ],
    ['leading dims', () => loraSegments(rand([9, OUT], 1), x, [seg(0, 2)]), /same leading dimensions/],
  ];
  for (const [what, fn, re] of cases) {
    const msg = refusal(fn);
    assert.match(msg, /^lorakit: loraSegments/, `${what}: ${msg}`);
    assert.match(msg, re, `${what}: ${msg}`);
    assert.equal(msg.match(/\.( |$)/g)?.length, 1, `${what}: one sentence: ${msg}`);
  }
});

test('loraSegments is inference only: recording gradients is refused, noGrad runs', () => {
  const x = rand([4, IN], 11);
  const y = rand([4, OUT], 12);
  const a = adapter(4, 60, 'f32');
  a.A.requiresGrad = true;
  const segs = [{ start: 0, end: 4, ...a }];
  assert.throws(
    () => loraSegments(y, x, segs),
    /^Error: lorakit: loraSegments is inference only and records no gradients; run it under noGrad\(\) or on tensors that do not require grad\.$/,
  );
  noGrad(() => loraSegments(y, x, segs));
  x.requiresGrad = true;
  a.A.requiresGrad = false;
  assert.throws(() => loraSegments(y, x, segs), /inference only/);
});
