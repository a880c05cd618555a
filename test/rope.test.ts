import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { backward } from '../src/autograd/tape.js';
import { parseRopeConfig, rope, ropeFrequencies, ropeTables } from '../src/ops/rope.js';
import { memoryStats, Tensor, tidy } from '../src/tensor/tensor.js';
import { assertClose, fixture, randn, rng } from './helpers.js';

interface RopeCase {
  name: string;
  config: Record<string, unknown>;
  head_dim: number;
  inv_freq: number[];
  attention_scaling: number;
  cos: number[][];
  sin: number[][];
}

test('rope frequencies, attention scaling and tables equal transformers (fixture)', (t) => {
  const path = fixture('rope', 'rope.json');
  if (!path) {
    t.skip('fixture test/fixtures/rope/rope.json is missing: run scripts/reference/make-all.sh');
    return;
  }
  const ref = JSON.parse(readFileSync(path, 'utf8')) as { positions: number[]; cases: RopeCase[] };
  assert.ok(ref.cases.length >= 10);
  const maxPos = Math.max(...ref.positions) + 1;
  for (const c of ref.cases) {
    const cfg = parseRopeConfig(c.config, c.head_dim);
    const { invFreq, attentionScaling } = ropeFrequencies(cfg, c.head_dim);
    assert.equal(invFreq.length, c.inv_freq.length, `${c.name}: number of frequencies`);
    for (let i = 0; i < invFreq.length; i++) {
      const rel = Math.abs(invFreq[i] - c.inv_freq[i]) / Math.abs(c.inv_freq[i]);
      assert.ok(
        rel < 1e-6,
        `${c.name}: inv_freq[${i}] = ${invFreq[i]}, transformers ${c.inv_freq[i]} (rel ${rel.toExponential(2)})`,
      );
    }
    const relScale = Math.abs(attentionScaling - c.attention_scaling) / c.attention_scaling;
    assert.ok(relScale < 1e-6, `${c.name}: attention scaling ${attentionScaling} vs ${c.attention_scaling}`);
    // cos/sin at the recorded positions, scaled as transformers scales them
    const { cos, sin } = ropeTables(cfg, c.head_dim, maxPos);
    const half = invFreq.length;
    assert.deepEqual(cos.shape, [maxPos, half]);
    const cv = cos.as('f32');
    const sv = sin.as('f32');
    const gotCos: number[] = [];
    const gotSin: number[] = [];
    const wantCos: number[] = [];
    const wantSin: number[] = [];
    ref.positions.forEach((p, k) => {
      for (let i = 0; i < half; i++) {
        gotCos.push(cv[p * half + i]);
        gotSin.push(sv[p * half + i]);
        wantCos.push(c.cos[k][i]);
        wantSin.push(c.sin[k][i]);
      }
    });
    assertClose(gotCos, wantCos, 1e-6, `${c.name}: cos`);
    assertClose(gotSin, wantSin, 1e-6, `${c.name}: sin`);
    cos.dispose();
    sin.dispose();
  }
});

test('parseRopeConfig reads v4 and v5 configs and resolves transformers defaults', () => {
  assert.deepEqual(parseRopeConfig({ max_position_embeddings: 2048 }, 64), { theta: 10000 });
  assert.deepEqual(parseRopeConfig({ rope_theta: 5e5, rope_scaling: null }, 64), { theta: 5e5 });
  assert.deepEqual(parseRopeConfig({ rope_parameters: { rope_type: 'default', rope_theta: 1e6 } }, 128), {
    theta: 1e6,
  });
  assert.deepEqual(parseRopeConfig({ rope_theta: 1e4, rope_scaling: { type: 'linear', factor: 2 } }, 64), {
    theta: 1e4,
    scaling: { type: 'linear', factor: 2 },
  });
  const llama3 = parseRopeConfig(
    {
      max_position_embeddings: 131072,
      rope_theta: 500000,
      rope_scaling: {
        rope_type: 'llama3',
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      },
    },
    128,
  );
  assert.deepEqual(llama3.scaling, {
    type: 'llama3',
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 8192,
  });
  // yarn without a factor: max_position_embeddings / original
  const yarn = parseRopeConfig(
    {
      max_position_embeddings: 8192,
      rope_parameters: { rope_type: 'yarn', rope_theta: 1e4, original_max_position_embeddings: 2048 },
    },
    64,
  );
  assert.equal(yarn.scaling?.factor, 4);
  assert.equal(parseRopeConfig({ partial_rotary_factor: 0.5 }, 64).partialRotaryFactor, 0.5);
});

test('parseRopeConfig and ropeTables reject what they cannot honour', () => {
  assert.throws(
    () => parseRopeConfig({ rope_scaling: { rope_type: 'longrope', factor: 2 } }, 64),
    /^Error: lorakit: unsupported rope type longrope\.$/,
  );
  assert.throws(
    () => parseRopeConfig({ rope_scaling: { type: 'su' } }, 64),
    /lorakit: unsupported rope type su/,
  );
  assert.throws(
    () => parseRopeConfig({ rope_scaling: { type: 'linear' } }, 64),
    /lorakit: rope type linear needs factor/,
  );
  assert.throws(
    () =>
      parseRopeConfig(
        { rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4 } },
        64,
      ),
    /lorakit: rope type llama3 needs original_max_position_embeddings/,
  );
  assert.throws(
    () => parseRopeConfig({ rope_theta: '10000' }, 64),
    /lorakit: config key rope_theta must be a number/,
  );
  assert.throws(
    () =>
      parseRopeConfig(
        {
          rope_parameters: {
            full_attention: { rope_type: 'default' },
            sliding_attention: { rope_type: 'default' },
          },
        },
        64,
      ),
    /lorakit: per-layer-type rope_parameters are not supported/,
  );
  assert.throws(
    () => parseRopeConfig({ partial_rotary_factor: 0.3 }, 10),
    /lorakit: rotary dimension 3 .* must be a positive even number/,
  );
  const dynamic = parseRopeConfig(
    { max_position_embeddings: 64, rope_scaling: { type: 'dynamic', factor: 2 } },
    16,
  );
  assert.throws(
    () => ropeTables(dynamic, 16, 65),
    /lorakit: dynamic rope scaling beyond max_position_embeddings \(64\)/,
  );
  assert.throws(
    () => ropeTables({ theta: 1e4 }, 16, 0),
    /lorakit: ropeTables: maxPositions must be a positive integer/,
  );
});

// float64 reference of out = R(θ) x (sign +1) or dx = R(−θ) dy (sign −1), rotating the first 2·half dims.
function rotateRef(
  x: Float32Array,
  cos: Float32Array,
  sin: Float32Array,
  pos: Int32Array,
  rows: number,
  H: number,
  Dh: number,
  half: number,
  sign: number,
): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < rows; r++)
    for (let h = 0; h < H; h++) {
      const o = (r * H + h) * Dh;
      const p = pos[r];
      for (let i = 0; i < half; i++) {
        const c = cos[p * half + i];
        const s = sign * sin[p * half + i];
        out[o + i] = x[o + i] * c - x[o + i + half] * s;
        out[o + i + half] = x[o + i + half] * c + x[o + i] * s;
      }
      for (let i = 2 * half; i < Dh; i++) out[o + i] = x[o + i];
    }
  return out;
}

test('rope forward and backward against float64 (odd sizes, packed positions, partial rotary)', () => {
  const cases: [B: number, T: number, H: number, Dh: number, half: number, P: number][] = [
    [1, 1, 1, 2, 1, 1],
    [2, 7, 3, 14, 7, 9],
    [1, 33, 2, 7, 3, 40],
    [3, 5, 1, 128, 64, 127],
    [1, 127, 4, 33, 16, 127],
  ];
  let seed = 10;
  for (const [B, T, H, Dh, half, P] of cases) {
    const rows = B * T;
    const x = Tensor.from(randn(rows * H * Dh, seed++), [B, T, H, Dh]);
    const cos = Tensor.from(randn(P * half, seed++), [P, half]);
    const sin = Tensor.from(randn(P * half, seed++), [P, half]);
    // packed sequences: positions restart at 0 at random boundaries
    const r = rng(seed++);
    const posArr = new Int32Array(rows);
    for (let i = 0, p = 0; i < rows; i++, p++) {
      if (r() < 0.15 || p >= P) p = 0;
      posArr[i] = p;
    }
    const positions = Tensor.from(posArr, [B, T], 'i32');
    x.requiresGrad = true;
    const dy = Float32Array.from(randn(rows * H * Dh, seed++));
    tidy(() => {
      const out = rope(x, cos, sin, positions);
      const want = rotateRef(x.as('f32'), cos.as('f32'), sin.as('f32'), posArr, rows, H, Dh, half, 1);
      assertClose(out.toFloat32(), want, 1e-6, `forward ${[B, T, H, Dh, half]}`);
      backward(out, Tensor.from(dy, out.shape));
    });
    const wantDx = rotateRef(dy, cos.as('f32'), sin.as('f32'), posArr, rows, H, Dh, half, -1);
    assertClose(x.grad!.toFloat32(), wantDx, 1e-6, `backward ${[B, T, H, Dh, half]}`);
    for (const t of [x, cos, sin, positions]) t.dispose();
  }
});

test('rope with real tables: a rotation keeps norms and relative positions', () => {
  const { cos, sin } = ropeTables({ theta: 10000 }, 16, 64);
  const q = Tensor.from(randn(16, 3), [1, 1, 1, 16]);
  const k = Tensor.from(randn(16, 4), [1, 1, 1, 16]);
  const dot = (a: number, b: number): number =>
    tidy(() => {
      const qa = rope(q, cos, sin, Tensor.from([a], [1, 1], 'i32')).toFloat32();
      const kb = rope(k, cos, sin, Tensor.from([b], [1, 1], 'i32')).toFloat32();
      return qa.reduce((s, v, i) => s + v * kb[i], 0);
    });
  // <R(a) q, R(b) k> depends only on a − b
  assert.ok(Math.abs(dot(5, 2) - dot(40, 37)) < 1e-4);
  assert.ok(Math.abs(dot(0, 0) - q.toFloat32().reduce((s, v, i) => s + v * k.toFloat32()[i], 0)) < 1e-5);
  for (const t of [cos, sin, q, k]) t.dispose();
});

test('rope rejects bad shapes, dtypes and positions with clear errors', () => {
  const x = Tensor.from(randn(2 * 3 * 2 * 8, 5), [2, 3, 2, 8]);
  const cos = Tensor.from(randn(10 * 4, 6), [10, 4]);
  const sin = Tensor.from(randn(10 * 4, 7), [10, 4]);
  const pos = Tensor.from([0, 1, 2, 0, 1, 2], [2, 3], 'i32');
  tidy(() => {
    assert.throws(
      () => rope(x.reshape([6, 2, 8]), cos, sin, pos),
      /lorakit: rope: x must be \[batch, seq, heads, headDim\]/,
    );
    assert.throws(
      () => rope(x, cos, sin, pos.reshape([6])),
      /lorakit: rope: positions has shape \[6\], expected \[2, 3\]/,
    );
    assert.throws(
      () => rope(x, cos, sin, Tensor.from([0, 1, 2, 0, 1, 2], [2, 3])),
      /lorakit: rope: positions must be i32, got f32/,
    );
    assert.throws(
      () => rope(x, cos, sin.reshape([20, 2]), pos),
      /lorakit: rope: cos \[10, 4\] and sin \[20, 2\] must both be/,
    );
    assert.throws(
      () => rope(x, cos.reshape([5, 8]), sin.reshape([5, 8]), pos),
      /lorakit: rope: tables of width 8 do not fit head dimension 8/,
    );
    assert.throws(
      () => rope(x, cos, sin, Tensor.from([0, 1, 2, 0, 10, 2], [2, 3], 'i32')),
      /lorakit: rope: position 10 is outside the rope tables, which cover positions 0 to 9/,
    );
    assert.throws(
      () => rope(x, cos, sin, Tensor.from([0, -1, 2, 0, 1, 2], [2, 3], 'i32')),
      /position -1 is outside/,
    );
  });
  for (const t of [x, cos, sin, pos]) t.dispose();
});

test('rope training steps do not grow native memory', () => {
  const { cos, sin } = ropeTables({ theta: 10000 }, 8, 16);
  const x = Tensor.from(randn(2 * 5 * 3 * 8, 9), [2, 5, 3, 8]);
  const pos = Tensor.from(
    Int32Array.from({ length: 10 }, (_, i) => i % 5),
    [2, 5],
    'i32',
  );
  x.requiresGrad = true;
  const step = (): void =>
    tidy(() => {
      const out = rope(x, cos, sin, pos);
      backward(out, Tensor.from(randn(out.size, 11), out.shape));
    });
  step();
  const before = memoryStats().liveBytes;
  for (let i = 0; i < 5; i++) step();
  assert.equal(memoryStats().liveBytes, before);
  for (const t of [cos, sin, x, pos]) t.dispose();
});
