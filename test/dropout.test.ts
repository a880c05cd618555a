import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backward } from '../src/autograd/tape.js';
import { cpu, cpuPath, useCpuIsa } from '../src/backend/cpu/addon.js';
import { dropout } from '../src/ops/dropout.js';
import { memoryStats, Tensor, tidy } from '../src/tensor/tensor.js';
import { randn } from './helpers.js';

// The documented mask: element i is kept when the top 24 bits of splitmix64-mix(key + i·φ) are at
// least round(p·2²⁴), key = mix(seed ^ 0x6a09e667f3bcc909).
const M64 = (1n << 64n) - 1n;
function mix64(z: bigint): bigint {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}
function keptRef(seed: number, p: number, n: number): boolean[] {
  const key = mix64(BigInt(seed) ^ 0x6a09e667f3bcc909n);
  const threshold = BigInt(Math.round(Math.fround(p) * 16777216));
  return Array.from(
    { length: n },
    (_, i) => mix64((key + BigInt(i) * 0x9e3779b97f4a7c15n) & M64) >> 40n >= threshold,
  );
}

test('dropout applies the documented counter-based mask, scaled by 1/(1 − p), forward and backward', () => {
  let seed = 3;
  for (const n of [1, 7, 33, 127, 1000]) {
    for (const p of [0.1, 0.5, 0.9]) {
      const x32 = Float32Array.from(randn(n, seed++));
      const dy32 = Float32Array.from(randn(n, seed++));
      const keep = keptRef(1234 + n, p, n);
      const scale = Math.fround(1 / Math.fround(1 - Math.fround(p)));
      const x = Tensor.from(x32, [n]);
      x.requiresGrad = true;
      tidy(() => {
        const out = dropout(x, p, 1234 + n).toFloat32();
        for (let i = 0; i < n; i++)
          // + 0: a dropped negative x gives −0 (x·0, as torch)
          assert.equal(out[i] + 0, keep[i] ? Math.fround(x32[i] * scale) : 0, `n ${n} p ${p} i ${i}`);
        backward(dropout(x, p, 1234 + n), Tensor.from(dy32, [n]));
      });
      const dx = x.grad!.toFloat32();
      for (let i = 0; i < n; i++)
        assert.equal(dx[i] + 0, keep[i] ? Math.fround(dy32[i] * scale) : 0, `grad n ${n} p ${p} i ${i}`);
      x.dispose();
    }
  }
});

test('dropout: same seed same mask, other seeds other masks, and the drop rate is p', () => {
  const n = 200_000;
  const x = Tensor.from(new Float32Array(n).fill(1), [n]);
  tidy(() => {
    const a = dropout(x, 0.3, 7).toFloat32();
    const b = dropout(x, 0.3, 7).toFloat32();
    const c = dropout(x, 0.3, 8).toFloat32();
    assert.deepEqual(a, b);
    let dropped = 0;
    let differ = 0;
    for (let i = 0; i < n; i++) {
      if (a[i] === 0) dropped++;
      if ((a[i] === 0) !== (c[i] === 0)) differ++;
    }
    assert.ok(Math.abs(dropped / n - 0.3) < 0.005, `drop rate ${dropped / n}`);
    // independent masks disagree on 2·p·(1 − p) = 42% of elements
    assert.ok(Math.abs(differ / n - 0.42) < 0.01, `masks differ on ${differ / n}`);
    // a prefix of a longer tensor gets the same mask (it depends on the index only)
    const short = dropout(x.sliceRows(0, 33), 0.3, 7).toFloat32();
    assert.deepEqual(short, a.subarray(0, 33));
  });
  x.dispose();
});

test('dropout with p = 0 is an identity copy and p = 1 drops everything', () => {
  const x = Tensor.from(randn(33, 5), [3, 11]);
  x.requiresGrad = true;
  tidy(() => {
    const y = dropout(x, 0, 1);
    assert.notEqual(y, x);
    assert.deepEqual(y.shape, [3, 11]);
    assert.deepEqual(y.toFloat32(), x.toFloat32());
    const dy = randn(33, 6);
    backward(y, Tensor.from(dy, [3, 11]));
    assert.deepEqual(x.grad!.toFloat32(), Float32Array.from(dy));
    assert.ok(
      dropout(x, 1, 1)
        .toFloat32()
        .every((v) => v === 0),
    );
  });
  x.dispose();
});

test('dropout rejects bad arguments with clear errors', () => {
  tidy(() => {
    const x = Tensor.from(randn(7, 1), [7]);
    assert.throws(() => dropout(x, 1.5, 1), /lorakit: dropout: p must be between 0 and 1, got 1.5/);
    assert.throws(() => dropout(x, -0.1, 1), /lorakit: dropout: p must be between 0 and 1/);
    assert.throws(() => dropout(x, NaN, 1), /lorakit: dropout: p must be between 0 and 1/);
    assert.throws(() => dropout(x, 0.1, -1), /lorakit: dropout: seed must be a non-negative integer, got -1/);
    assert.throws(() => dropout(x, 0.1, 1.5), /lorakit: dropout: seed must be a non-negative integer/);
    assert.throws(
      () => dropout(Tensor.from(randn(7, 1), [7], 'bf16'), 0.1, 1),
      /lorakit: dropout: x must be f32, got bf16/,
    );
  });
});

test('dropout training steps do not grow native memory', () => {
  const x = Tensor.from(randn(100, 9), [100]);
  x.requiresGrad = true;
  const step = (s: number): void =>
    tidy(() => backward(dropout(x, 0.2, s), Tensor.from(randn(100, s), [100])));
  step(1);
  const before = memoryStats().liveBytes;
  for (let i = 2; i < 7; i++) step(i);
  assert.equal(memoryStats().liveBytes, before);
  x.dispose();
});

test('dropout draws the bit-identical mask on every kernel path (runs reproduce across machines)', () => {
  const start = cpuPath().isa;
  // Odd sizes: whole vectors of every width, a tail, and (n > 2·2¹⁴) several threads' chunks.
  const n = 100_003;
  const x32 = Float32Array.from(randn(n, 41));
  x32[5] = Infinity; // a dropped inf gives NaN (x·0, as torch) on every path
  x32[n - 1] = -Infinity;
  const cases: [p: number, seed: number][] = [
    [0.1, 0],
    [1 / 3, 7],
    [0.5, 2 ** 53 - 1],
    [0.999, 123_456_789],
  ];
  const runs = new Map<string, Uint32Array[]>();
  try {
    for (const isa of cpuPath().supported) {
      useCpuIsa(isa);
      runs.set(
        isa,
        cases.map(([p, seed]) => {
          const out = new Float32Array(n);
          cpu.dropoutF32(out, x32, p, seed, n);
          return new Uint32Array(out.buffer);
        }),
      );
    }
  } finally {
    useCpuIsa(start);
  }
  const [first, ...others] = [...runs.keys()];
  cases.forEach(([p, seed], c) => {
    const want = runs.get(first)![c];
    // the reference mask on a sample of elements, the tail included
    const keep = keptRef(seed, p, n);
    const values = new Float32Array(want.buffer);
    // kept: x·scale, nonzero here; dropped: ±0, or NaN where x is infinite
    for (let i = 0; i < n; i += i < 64 || i > n - 64 ? 1 : 97)
      assert.equal(
        values[i] !== 0 && !Number.isNaN(values[i]),
        keep[i],
        `${first} p ${p} seed ${seed} i ${i}`,
      );
    for (const isa of others) {
      const got = runs.get(isa)![c];
      const diff = got.findIndex((u, i) => u !== want[i]);
      assert.equal(diff, -1, `${isa} vs ${first}, p ${p} seed ${seed}: first difference at ${diff}`);
    }
  });
});
