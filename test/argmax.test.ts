// The greedy pick on each device against the host's scan (argmaxFirst): ties, NaNs, -inf rows, bf16.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { argmaxFirst } from '../src/infer/sampling.js';
import { argmaxRows } from '../src/ops/argmax.js';
import { Tensor } from '../src/tensor/tensor.js';
import { argmaxInput } from './helpers.js';
import { WEBGPU_SKIP } from './webgpu-helpers.js';

const scan = (x: Float32Array, cols: number): number[] =>
  Array.from({ length: x.length / cols }, (_, r) => argmaxFirst(x.subarray(r * cols, (r + 1) * cols)));

const SHAPES = [
  [1, 1],
  [5, 7],
  [9, 257],
  [3, 4099],
] as const;

test('argmaxRows on the CPU is the scan, row by row', () => {
  for (const [rows, cols] of SHAPES) {
    const x = argmaxInput(rows, cols, rows + cols);
    const t = Tensor.from(x, [rows, cols]);
    const ids = argmaxRows(t);
    assert.deepEqual(Array.from(ids.as('i32')), scan(x, cols), `[${rows}, ${cols}]`);
    t.dispose();
    ids.dispose();
  }
  assert.throws(
    () => argmaxRows(Tensor.from([], [2, 0])),
    /lorakit: argmaxRows needs rows of at least one value, got \[2, 0\]/,
  );
});

test('argmaxRows on WebGPU is the scan', { skip: WEBGPU_SKIP }, async () => {
  for (const [rows, cols] of SHAPES)
    for (const dtype of ['f32'] as const) {
      const x = argmaxInput(rows, cols, 3 * rows + cols);
      const host = Tensor.from(x, [rows, cols], dtype);
      const want = scan(host.toFloat32(), cols);
      const t = host.toDevice('webgpu');
      const ids = argmaxRows(t);
      assert.deepEqual(Array.from(await ids.toFloat32Async()), want, `${dtype} [${rows}, ${cols}]`);
      for (const u of [host, t, ids]) u.dispose();
    }
});
