// Quantization kernels: NF4/FP4 blockwise quantize/dequantize bit-exact with bitsandbytes (fixtures from
// scripts/reference/quant_ref.py: random and real stories260K weights, odd sizes, with and without
// double quantization), the 8-bit dynamic quantizer and torch's mean behind double quantization, int8
// rows, native kernels against plain TypeScript references, and the quantized linear op forward and
// backward against float64 references. Real weights come from ../shared/data (stories260K).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { backward } from '../src/autograd/tape.js';
import { cpu } from '../src/backend/cpu/addon.js';
import { openSafetensors, type SafetensorsFile } from '../src/io/safetensors.js';
import { sum, mul } from '../src/ops/elementwise.js';
import { code4, code4Bounds, DYNAMIC_MAP, torchMeanF32, type Quant4Type } from '../src/quant/codes.js';
import { dequantizeBlockwise8, quantizeBlockwise8 } from '../src/quant/blockwise8.js';
import { quantizedLinear } from '../src/ops/quant-linear.js';
import {
  dequantizeRows,
  dequantizeWeight,
  QuantizedWeight,
  quantizeWeight,
  type QuantType,
} from '../src/quant/weight.js';
import { Tensor, tidy } from '../src/tensor/tensor.js';
import { assertClose, fixture, randn } from './helpers.js';

interface Case {
  name: string;
  input: string;
  shape: number[];
  blocksize: number;
  type: Quant4Type;
  double_quant: boolean;
  bnb_cpu_kernel_agrees: boolean;
  offset?: number;
}
interface Meta {
  cases: Case[];
  blockwise8: { name: string; n: number }[];
  means: { name: string; mean: number }[];
  int8: { name: string; input: string; shape: number[] }[];
  torch_cpu_capability: string;
}

const dir = fixture('quant');
const meta: Meta | null = dir
  ? (JSON.parse(readFileSync(join(dir, 'blockwise.json'), 'utf8')) as Meta)
  : null;
const SKIP = 'fixture missing: run scripts/reference/make-all.sh';

function readF32(f: SafetensorsFile, name: string): Float32Array {
  const t = f.read(name, 'f32');
  try {
    return Float32Array.from(t.as('f32'));
  } finally {
    t.dispose();
  }
}
function readU8(f: SafetensorsFile, name: string): Uint8Array {
  const t = f.read(name, 'native');
  try {
    return Uint8Array.from(t.as('u8'));
  } finally {
    t.dispose();
  }
}
/** Bitwise equality of fp32 arrays (so -0 and +0, and NaN payloads, count as different). */
function assertSameBits(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++)
    if (a[i] !== b[i])
      assert.fail(
        `${what}: element ${i} is ${actual[i]}, bitsandbytes has ${expected[i]} (${a.length} values)`,
      );
}
function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++)
    if (actual[i] !== expected[i])
      assert.fail(`${what}: byte ${i} is ${actual[i]}, bitsandbytes has ${expected[i]}`);
}
function shape2(shape: number[]): [number, number] {
  return shape.length === 1 ? [1, shape[0]] : [shape[0], shape[1]];
}

test('NF4/FP4 quantize and dequantize are bit-exact with bitsandbytes', (t) => {
  if (!dir || !meta) return t.skip(SKIP);
  const f = openSafetensors(join(dir, 'blockwise.safetensors'));
  let real = 0;
  for (const c of meta.cases) {
    if (c.input.startsWith('stories')) real++;
    const x = readF32(f, `${c.input}.x`);
    const [rows, cols] = shape2(c.shape);
    tidy(() => {
      const w = Tensor.from(x, [rows, cols]);
      const qw = quantizeWeight(w, { type: c.type, blocksize: c.blocksize, doubleQuant: c.double_quant });
      try {
        assertSameBytes(qw.data.as('u8'), readU8(f, `${c.name}.q`), `${c.name} codes`);
        if (c.double_quant) {
          assert.equal(qw.nested!.offset, Math.fround(c.offset!), `${c.name} offset (torch mean)`);
          assertSameBytes(
            qw.nested!.qabsmax.as('u8'),
            readU8(f, `${c.name}.absmax`),
            `${c.name} 8-bit absmax`,
          );
          assertSameBits(
            qw.nested!.absmax2.as('f32'),
            readF32(f, `${c.name}.nested_absmax`),
            `${c.name} nested absmax`,
          );
          assertSameBits(
            qw.nested!.code.as('f32'),
            readF32(f, `${c.name}.nested_quant_map`),
            `${c.name} nested code`,
          );
          assertSameBits(qw.absmaxF32(), readF32(f, `${c.name}.absmax_deq`), `${c.name} dequantized absmax`);
        } else assertSameBits(qw.absmax!.as('f32'), readF32(f, `${c.name}.absmax`), `${c.name} absmax`);
        // bitsandbytes' own CPU dequantize kernel mis-scales rows that are a multiple of 16 long but
        // not of the block size (it indexes absmax per row); the fixture holds its reference semantics.
        const deq = dequantizeWeight(qw);
        assertSameBits(deq.as('f32'), readF32(f, `${c.name}.deq`), `${c.name} dequantized`);
      } finally {
        qw.dispose();
      }
    });
  }
  if (real === 0)
    t.diagnostic('real stories260K weights: ../shared/data is absent (only random inputs tested)');
});

test('dequantizing bitsandbytes-made codes reproduces its values, also row by row', (t) => {
  if (!dir || !meta) return t.skip(SKIP);
  const f = openSafetensors(join(dir, 'blockwise.safetensors'));
  for (const c of meta.cases.filter((k) => k.shape.length === 2 && k.shape[0] > 2)) {
    const [rows, cols] = shape2(c.shape);
    tidy(() => {
      const q = readU8(f, `${c.name}.q`);
      const data = Tensor.from(q, [q.length], 'u8');
      let qw: QuantizedWeight;
      if (c.double_quant) {
        const qa = readU8(f, `${c.name}.absmax`);
        const nested = {
          qabsmax: Tensor.from(qa, [qa.length], 'u8'),
          absmax2: Tensor.from(readF32(f, `${c.name}.nested_absmax`), [Math.ceil(qa.length / 256)]),
          code: Tensor.from(readF32(f, `${c.name}.nested_quant_map`), [256]),
          offset: Math.fround(c.offset!),
          blocksize: 256,
        };
        qw = new QuantizedWeight(c.type, [rows, cols], data, null, nested, c.blocksize);
      } else {
        const a = readF32(f, `${c.name}.absmax`);
        qw = new QuantizedWeight(c.type, [rows, cols], data, Tensor.from(a, [a.length]), null, c.blocksize);
      }
      try {
        const want = readF32(f, `${c.name}.deq`);
        const r0 = Math.floor(rows / 3);
        const r1 = rows - 1;
        const part = dequantizeRows(qw, r0, r1);
        assertSameBits(part.as('f32'), want.subarray(r0 * cols, r1 * cols), `${c.name} rows ${r0}..${r1}`);
      } finally {
        qw.dispose();
      }
    });
  }
});

test('8-bit dynamic blockwise quantization and torch mean match bitsandbytes and torch', (t) => {
  if (!dir || !meta) return t.skip(SKIP);
  const f = openSafetensors(join(dir, 'blockwise.safetensors'));
  assertSameBits(DYNAMIC_MAP, readF32(f, 'dynamic_map'), 'dynamic map');
  for (const c of meta.blockwise8) {
    const x = readF32(f, `${c.name}.x`);
    const { q, absmax } = quantizeBlockwise8(x, 256);
    assertSameBytes(q, readU8(f, `${c.name}.q`), `${c.name} codes`);
    assertSameBits(absmax, readF32(f, `${c.name}.absmax`), `${c.name} absmax`);
    assertSameBits(
      dequantizeBlockwise8(q, absmax, 256),
      readF32(f, `${c.name}.deq`),
      `${c.name} dequantized`,
    );
  }
  if (meta.torch_cpu_capability.startsWith('AVX') || meta.torch_cpu_capability === 'DEFAULT')
    for (const m of meta.means)
      assert.equal(torchMeanF32(readF32(f, m.name)), Math.fround(m.mean), `${m.name}: torch mean`);
});

test('int8 rows match bitsandbytes int8_vectorwise_quant / dequant', (t) => {
  if (!dir || !meta) return t.skip(SKIP);
  const f = openSafetensors(join(dir, 'blockwise.safetensors'));
  for (const c of meta.int8) {
    const [rows, cols] = c.shape;
    tidy(() => {
      const qw = quantizeWeight(Tensor.from(readF32(f, `${c.input}.x`), [rows, cols]), { type: 'int8' });
      try {
        const cb = f.read(`${c.name}.cb`, 'native');
        const want = Int8Array.from(cb.as('i32'));
        cb.dispose();
        assertSameBytes(new Uint8Array(qw.data.as('u8')), new Uint8Array(want.buffer), `${c.name} codes`);
        assertSameBits(qw.absmax!.as('f32'), readF32(f, `${c.name}.scb`), `${c.name} row absmax`);
        assertSameBits(dequantizeWeight(qw).as('f32'), readF32(f, `${c.name}.deq`), `${c.name} dequantized`);
      } finally {
        qw.dispose();
      }
    });
  }
});

// ---- native kernels against plain TypeScript references (no fixtures needed) ----------------------

/** bitsandbytes' quantize_4bit written plainly: absmax, scale, bucketize on code midpoints, pack. */
function refQuantize4(
  x: Float32Array,
  bs: number,
  type: Quant4Type,
): { q: Uint8Array; absmax: Float32Array } {
  const f = Math.fround;
  const { order, mid } = code4Bounds(type);
  const n = x.length;
  const nb = Math.ceil(n / bs);
  const absmax = new Float32Array(nb);
  const idx = new Uint8Array(n + (n % 2));
  for (let b = 0; b < nb; b++) {
    const s = b * bs;
    const e = Math.min(n, s + bs);
    let am = 0;
    for (let i = s; i < e; i++) am = Math.max(am, Math.abs(x[i]));
    absmax[b] = am;
    const d = Math.max(am, f(1e-38));
    for (let i = s; i < e; i++) {
      const v = Math.min(1, Math.max(-1, e - s === bs ? f(x[i] * f(1 / d)) : f(x[i] / d)));
      let k = 0;
      while (k < 15 && mid[k] < v) k++;
      idx[i] = order[k];
    }
  }
  if (n % 2) {
    let k = 0;
    while (k < 15 && mid[k] < 0) k++;
    idx[n] = order[k];
  }
  const q = new Uint8Array(Math.ceil(n / 2));
  for (let i = 0; i < q.length; i++) q[i] = (idx[2 * i] << 4) | idx[2 * i + 1];
  return { q, absmax };
}

function refDequantize4(
  q: Uint8Array,
  absmax: Float32Array,
  bs: number,
  type: Quant4Type,
  n: number,
): Float32Array {
  const code = code4(type);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++)
    out[i] = code[i % 2 ? q[i >> 1] & 15 : q[i >> 1] >> 4] * absmax[Math.floor(i / bs)];
  return out;
}

test('native 4-bit quantize/dequantize equal the TypeScript reference on odd sizes', () => {
  for (const [rows, cols, bs] of [
    [1, 1, 64],
    [1, 7, 32],
    [7, 33, 64],
    [33, 127, 128],
    [127, 33, 32],
    [3, 4099, 4096],
  ]) {
    for (const type of ['nf4', 'fp4'] as const) {
      const x = Float32Array.from(randn(rows * cols, rows * 31 + cols, 0.7));
      tidy(() => {
        const qw = quantizeWeight(Tensor.from(x, [rows, cols]), { type, blocksize: bs });
        try {
          const ref = refQuantize4(x, bs, type);
          assertSameBytes(qw.data.as('u8'), ref.q, `${type} ${rows}x${cols}/${bs} codes`);
          assertSameBits(qw.absmax!.as('f32'), ref.absmax, `${type} ${rows}x${cols}/${bs} absmax`);
          assertSameBits(
            dequantizeWeight(qw).as('f32'),
            refDequantize4(ref.q, ref.absmax, bs, type, x.length),
            `${type} dequantized`,
          );
        } finally {
          qw.dispose();
        }
      });
    }
  }
});

test('double quantization: ≈4.13 bits per weight, absmax within the 8-bit code error', () => {
  const x = Float32Array.from(randn(300 * 257, 9, 0.05));
  tidy(() => {
    const plain = quantizeWeight(Tensor.from(x, [300, 257]), { type: 'nf4' });
    const dq = quantizeWeight(Tensor.from(x, [300, 257]), { type: 'nf4', doubleQuant: true });
    try {
      assert.ok(Math.abs(plain.bitsPerParameter - 4.5) < 0.01, `nf4: ${plain.bitsPerParameter} bits`);
      assert.ok(Math.abs(dq.bitsPerParameter - 4.127) < 0.01, `nf4+dq: ${dq.bitsPerParameter} bits`);
      assertClose(dq.absmaxF32(), plain.absmax!.as('f32'), 0.02, 'double-quantized absmax');
    } finally {
      plain.dispose();
      dq.dispose();
    }
  });
});

// ---- quantized linear --------------------------------------------------------------------------------

/** y = x Wᵀ + b and the gradients of sum(y ⊙ r), in float64 on the dequantized W. */
function refLinear(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array | null,
  r: Float32Array,
  m: number,
  inF: number,
  outF: number,
) {
  const y = new Float64Array(m * outF);
  const dx = new Float64Array(m * inF);
  const db = new Float64Array(outF);
  for (let i = 0; i < m; i++)
    for (let o = 0; o < outF; o++) {
      let acc = b ? b[o] : 0;
      for (let k = 0; k < inF; k++) acc += x[i * inF + k] * w[o * inF + k];
      y[i * outF + o] = acc;
      const g = r[i * outF + o];
      db[o] += g;
      for (let k = 0; k < inF; k++) dx[i * inF + k] += g * w[o * inF + k];
    }
  return { y, dx, db };
}

const LINEAR_CASES: [QuantType, boolean, number, number, number, number][] = [
  // type, double quant, m (rows of x), in, out, blocksize
  ['nf4', false, 1, 64, 7, 64],
  ['nf4', true, 7, 33, 127, 64],
  ['fp4', false, 33, 130, 31, 32],
  ['nf4', true, 5, 1000, 601, 64], // several row tiles
  ['int8', false, 3, 1111, 257, 64], // several row tiles
  ['fp4', true, 2, 4097, 67, 4096],
];

for (const [type, dq, m, inF, outF, bs] of LINEAR_CASES) {
  test(`quantizedLinear ${type}${dq ? '+dq' : ''} x[${m}, ${inF}] W[${outF}, ${inF}]: forward and backward vs float64`, () => {
    const seed = m * 1000 + inF + outF;
    tidy(() => {
      const qw = quantizeWeight(Tensor.from(Float32Array.from(randn(outF * inF, seed, 0.1)), [outF, inF]), {
        type,
        blocksize: bs,
        doubleQuant: dq,
      });
      try {
        const wd = dequantizeWeight(qw).as('f32');
        const xv = Float32Array.from(randn(m * inF, seed + 1));
        const bv = Float32Array.from(randn(outF, seed + 2, 0.5));
        const rv = Float32Array.from(randn(m * outF, seed + 3));
        const x = Tensor.from(xv, [m, inF]);
        const bias = Tensor.from(bv, [outF]);
        x.requiresGrad = true;
        bias.requiresGrad = true;
        const y = quantizedLinear(x, qw, bias);
        backward(sum(mul(y, Tensor.from(rv, [m, outF]))));
        const ref = refLinear(xv, wd, bv, rv, m, inF, outF);
        assertClose(y.as('f32'), ref.y, 1e-5, 'y');
        assertClose(x.grad!.as('f32'), ref.dx, 1e-5, 'dx');
        assertClose(bias.grad!.as('f32'), ref.db, 1e-5, 'dbias');
        // Leading batch dimensions and no bias.
        const y3 = quantizedLinear(x.reshape([1, m, inF]), qw);
        assert.deepEqual(y3.shape, [1, m, outF]);
        assertClose(y3.as('f32'), refLinear(xv, wd, null, rv, m, inF, outF).y, 1e-5, 'y without bias');
      } finally {
        qw.dispose();
      }
    });
  });
}

test('quantization and quantizedLinear reject bad inputs with clear errors', () => {
  tidy(() => {
    const w = Tensor.from(Float32Array.from(randn(8 * 64, 3)), [8, 64]);
    assert.throws(
      () => quantizeWeight(w, { type: 'nf4', blocksize: 48 }),
      /lorakit: quantization block size 48 is not supported/,
    );
    assert.throws(() => quantizeWeight(w, { type: 'q4' as QuantType }), /lorakit: unknown quantization 'q4'/);
    assert.throws(
      () => quantizeWeight(w, { type: 'int8', doubleQuant: true }),
      /lorakit: double quantization applies to nf4 and fp4/,
    );
    assert.throws(
      () => quantizeWeight(Tensor.from([1, 2], [2], 'i32'), { type: 'nf4' }),
      /lorakit: only f32 or bf16 weights/,
    );
    assert.throws(
      () => quantizeWeight(Tensor.zeros([2, 2, 2]), { type: 'nf4' }),
      /lorakit: quantizeWeight expects a 1-D or 2-D weight/,
    );
    const qw = quantizeWeight(w, { type: 'nf4' });
    try {
      assert.throws(
        () => quantizedLinear(Tensor.zeros([3, 63]), qw),
        /lorakit: quantizedLinear: x \[3, 63\] does not match the weight \[8, 64\]/,
      );
      assert.throws(
        () => quantizedLinear(Tensor.zeros([3, 64], 'bf16'), qw),
        /lorakit: quantizedLinear: x must be f32, got bf16/,
      );
      assert.throws(
        () => quantizedLinear(Tensor.zeros([3, 64]), qw, Tensor.zeros([7])),
        /lorakit: quantizedLinear: bias \[7\] does not match/,
      );
      assert.throws(() => dequantizeRows(qw, 3, 9), /lorakit: rows \[3, 9\) are outside the weight's 8 rows/);
    } finally {
      qw.dispose();
    }
    assert.throws(
      () => quantizedLinear(Tensor.zeros([1, 64]), qw),
      /lorakit: quantizedLinear: the quantized weight was disposed/,
    );
  });
});

// The native kernel on every route: up to 8 rows of x read the packed weight directly (rows of whole
// blocks; odd widths that start rows and blocks mid-byte, blocks across rows, tails shorter than a
// vector; threads split rows or columns), 9 rows go through dequantized tiles and the GEMM; backward
// with and without accumulating.
test('quantLinear kernels for 1..9 rows of x on odd shapes: forward and backward vs float64', () => {
  const SHAPES: [QuantType, boolean, number, number, number][] = [
    // type, double quant, in, out, blocksize
    ['nf4', false, 77, 13, 32],
    ['nf4', true, 96, 21, 32], // whole blocks per row: x stored in the split order
    ['fp4', false, 256, 600, 64],
    ['fp4', true, 200, 9, 64],
    ['nf4', true, 1100, 5, 1024],
    ['nf4', false, 230, 600, 64],
    ['int8', false, 45, 11, 64],
    ['int8', false, 230, 600, 64],
  ];
  for (const [type, dq, inF, outF, bs] of SHAPES) {
    const seed = inF * 7 + outF;
    tidy(() => {
      const qw = quantizeWeight(Tensor.from(Float32Array.from(randn(outF * inF, seed, 0.1)), [outF, inF]), {
        type,
        blocksize: bs,
        doubleQuant: dq,
      });
      try {
        const wd = dequantizeWeight(qw).as('f32');
        const bv = Float32Array.from(randn(outF, seed + 2, 0.5));
        for (const m of outF >= 600 ? [1, 3, 8, 9] : [1, 2, 3, 4, 5, 6, 7, 8, 9]) {
          const what = `${type}${dq ? '+dq' : ''} m=${m} W[${outF}, ${inF}]/${bs}`;
          const xv = Float32Array.from(randn(m * inF, seed + m));
          const gv = Float32Array.from(randn(m * outF, seed + m + 1));
          const ref = refLinear(xv, wd, bv, gv, m, inF, outF);
          const y = new Float32Array(m * outF).fill(NaN);
          cpu.quantLinear(y, xv, bv, ...qw.args(), m);
          assertClose(y, ref.y, 1e-5, `${what}: y`);
          const dx = new Float32Array(m * inF).fill(NaN);
          cpu.quantLinearBackward(dx, gv, ...qw.args(), m, false);
          assertClose(dx, ref.dx, 1e-5, `${what}: dx`);
          const base = Float32Array.from(randn(m * inF, seed + m + 2));
          const acc = Float32Array.from(base);
          cpu.quantLinearBackward(acc, gv, ...qw.args(), m, true);
          assertClose(
            acc,
            ref.dx.map((v, i) => v + base[i]),
            1e-5,
            `${what}: dx accumulated`,
          );
        }
      } finally {
        qw.dispose();
      }
    });
  }
});
