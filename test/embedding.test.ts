import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backward } from '../src/autograd/tape.js';
import { embedding } from '../src/ops/embedding.js';
import { bf16ToF32 } from '../src/tensor/dtype.js';
import { memoryStats, Tensor, tidy } from '../src/tensor/tensor.js';
import { assertClose, randn, rng } from './helpers.js';

function randomIds(n: number, V: number, seed: number, distinct = V): Int32Array {
  const r = rng(seed);
  // draw from a few ids only, so that repeats (the racy case for the scatter-add) are common
  return Int32Array.from(
    { length: n },
    () => Math.floor(r() * Math.min(V, distinct)) * Math.max(1, Math.floor(V / distinct)),
  );
}

test('embedding forward gathers rows and backward scatter-adds repeated ids (f32 table, odd sizes)', () => {
  let seed = 1;
  for (const V of [1, 7, 513])
    for (const D of [1, 7, 33, 127])
      for (const N of [1, 7, 127]) {
        const t32 = Float32Array.from(randn(V * D, seed++));
        const ids32 = randomIds(N, V, seed++, 5);
        const dy32 = Float32Array.from(randn(N * D, seed++));
        const table = Tensor.from(t32, [V, D]);
        table.requiresGrad = true;
        const idShape = N === 127 ? [N] : [1, N];
        const ids = Tensor.from(ids32, idShape, 'i32');
        tidy(() => {
          const out = embedding(table, ids);
          assert.deepEqual(out.shape, [...idShape, D]);
          const o = out.as('f32');
          for (let n = 0; n < N; n++)
            for (let d = 0; d < D; d++)
              assert.equal(o[n * D + d], t32[ids32[n] * D + d], `V ${V} D ${D} N ${N}`);
          backward(out, Tensor.from(dy32, out.shape));
        });
        const want = new Float64Array(V * D);
        for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) want[ids32[n] * D + d] += dy32[n * D + d];
        assertClose(table.grad!.toFloat32(), want, 1e-6, `dtable V ${V} D ${D} N ${N}`);
        table.dispose();
        ids.dispose();
      }
});

test('embedding backward does not race when every token has the same id', () => {
  const V = 3;
  const D = 1000;
  const N = 2000;
  const table = Tensor.from(randn(V * D, 5), [V, D]);
  table.requiresGrad = true;
  const ids = Tensor.from(new Int32Array(N).fill(1), [N], 'i32');
  const dy = Float32Array.from(randn(N * D, 6));
  tidy(() => backward(embedding(table, ids), Tensor.from(dy, [N, D])));
  const want = new Float64Array(V * D);
  for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) want[D + d] += dy[n * D + d];
  assertClose(table.grad!.toFloat32(), want, 1e-5, 'dtable');
  table.dispose();
  ids.dispose();
});

test('embedding reads bf16 tables exactly and refuses to train them', () => {
  const V = 513;
  const D = 33;
  const table = Tensor.from(randn(V * D, 7), [V, D], 'bf16');
  const bits = table.as('bf16');
  const ids32 = randomIds(127, V, 8);
  const ids = Tensor.from(ids32, [127], 'i32');
  tidy(() => {
    const o = embedding(table, ids).as('f32');
    for (let n = 0; n < 127; n++)
      for (let d = 0; d < D; d++) assert.equal(o[n * D + d], bf16ToF32(bits[ids32[n] * D + d]));
  });
  table.requiresGrad = true;
  assert.throws(
    () => embedding(table, ids),
    /lorakit: embedding: a bf16 table cannot be trained; keep trainable embeddings in f32/,
  );
  table.dispose();
  ids.dispose();
});

test('embedding rejects out-of-range ids and bad inputs with clear errors', () => {
  tidy(() => {
    const table = Tensor.from(randn(7 * 3, 9), [7, 3]);
    assert.throws(
      () => embedding(table, Tensor.from([0, 7, 2], [3], 'i32')),
      /^Error: lorakit: embedding: token id 7 is out of range for a vocabulary of 7 tokens\.$/,
    );
    assert.throws(
      () => embedding(table, Tensor.from([-1], [1], 'i32')),
      /token id -1 is out of range for a vocabulary of 7/,
    );
    assert.throws(
      () => embedding(table, Tensor.from([0, 1], [2])),
      /lorakit: embedding: ids must be i32, got f32/,
    );
    assert.throws(
      () => embedding(table.reshape([21]), Tensor.from([0], [1], 'i32')),
      /lorakit: embedding: table must be \[vocab, dim\], got \[21\]/,
    );
    assert.throws(
      () => embedding(Tensor.from([1, 2], [1, 2], 'i32'), Tensor.from([0], [1], 'i32')),
      /lorakit: embedding: table must be f32 or bf16, got i32/,
    );
  });
});

test('embedding training steps do not grow native memory', () => {
  const table = Tensor.from(randn(50 * 8, 10), [50, 8]);
  table.requiresGrad = true;
  const ids = Tensor.from(randomIds(20, 50, 11), [4, 5], 'i32');
  const step = (): void =>
    tidy(() => backward(embedding(table, ids), Tensor.from(randn(160, 12), [4, 5, 8])));
  step();
  const before = memoryStats().liveBytes;
  for (let i = 0; i < 5; i++) step();
  assert.equal(memoryStats().liveBytes, before);
  table.dispose();
  ids.dispose();
});

test('embedding refuses an output dtype the device does not compute in', () => {
  const table = Tensor.from(randn(12, 3), [4, 3]);
  const ids = Tensor.from([0, 3], [2], 'i32');
  assert.throws(
    () => embedding(table, ids, 'bf16'),
    /lorakit: embedding: the CPU computes in f32, not bf16\./,
  );
  assert.throws(
    () => embedding(table, ids, 'i32'),
    /lorakit: embedding: the output dtype must be f32 or bf16, got i32\./,
  );
  table.dispose();
  ids.dispose();
});
