// The WebGPU device layer (memory, host writes, asynchronous reads, clears and copies at any byte
// alignment) and the elementwise kernels, against the CPU backend.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { add, cast, mul, scale, sum } from '../src/ops/elementwise.js';
import { memoryStats, Tensor } from '../src/tensor/tensor.js';
import { compareWebGpu, input, WEBGPU_SKIP } from './webgpu-helpers.js';

const skip = WEBGPU_SKIP;

test('WebGPU: values survive the round trip in every dtype, at odd sizes', { skip }, async () => {
  for (const [dtype, n] of [
    ['f32', 1],
    ['f32', 1027],
    ['bf16', 1],
    ['bf16', 333],
    ['i32', 17],
    ['u8', 13],
  ] as const) {
    const values = Array.from({ length: n }, (_, i) =>
      dtype === 'u8' ? (i * 37) % 256 : ((i * 7919) % 1000) - 500,
    );
    const cpu = Tensor.from(values, [n], dtype);
    const gpu = cpu.toDevice('webgpu');
    assert.deepEqual(await gpu.toFloat32Async(), cpu.toFloat32(), `${dtype} [${n}]`);
    cpu.dispose();
    gpu.dispose();
  }
});

test('WebGPU: a synchronous read is refused with one sentence', { skip }, () => {
  const t = Tensor.from([1, 2, 3], [3], 'f32', 'webgpu');
  assert.throws(
    () => t.toFloat32(),
    /WebGPU cannot wait for the GPU; read webgpu tensors with await tensor\.toFloat32Async\(\)/,
  );
  t.dispose();
});

test(
  'WebGPU: copies, clears and writes at unaligned element offsets keep the neighbours',
  { skip },
  async () => {
    const n = 41;
    for (const dtype of ['bf16', 'u8', 'f32'] as const) {
      const base = Array.from({ length: n }, (_, i) => (dtype === 'u8' ? i + 1 : i + 0.5));
      const dst = Tensor.from(base, [n], dtype, 'webgpu');
      const src = Tensor.from(
        base.map((v) => v + 100),
        [n],
        dtype,
        'webgpu',
      );
      const expected = [...base];
      // copyElements between tensors (odd starts and lengths), then within one buffer, overlapping.
      Tensor.copyElements(dst, 3, src, 8, 7);
      for (let i = 0; i < 7; i++) expected[3 + i] = base[8 + i] + 100;
      Tensor.copyElements(dst, 20, dst, 17, 9);
      const snap = [...expected];
      for (let i = 0; i < 9; i++) expected[20 + i] = snap[17 + i];
      // A host write into a view at an odd offset.
      const view = dst.sliceRows(31, 36);
      view.copyFrom(Tensor.from([7, 8, 9, 10, 11], [5], dtype));
      for (let i = 0; i < 5; i++) expected[31 + i] = 7 + i;
      view.dispose();
      assert.deepEqual(Array.from(await dst.toFloat32Async()), expected, dtype);
      // Zeros over an odd range.
      const z = Tensor.zeros([n], dtype, 'webgpu');
      assert.deepEqual(Array.from(await z.toFloat32Async()), new Array(n).fill(0));
      for (const t of [dst, src, z]) t.dispose();
    }
  },
);

test('WebGPU: freed memory is reused, not grown', { skip }, () => {
  const before = memoryStats(false, 'webgpu').liveBytes;
  for (let i = 0; i < 20; i++) Tensor.empty([1000, 37], 'f32', 'webgpu').dispose();
  assert.equal(memoryStats(false, 'webgpu').liveBytes, before);
});

test('WebGPU: add, mul (with broadcasting), scale and sum, forward and backward', { skip }, async () => {
  const a = input([5, 7, 33], 1);
  const b = input([5, 7, 33], 2);
  const bias = input([33], 3);
  await compareWebGpu(
    'add',
    [
      { t: a, trainable: true },
      { t: b, trainable: true },
    ],
    ([x, y]) => add(x, y),
  );
  await compareWebGpu(
    'add bias',
    [
      { t: a, trainable: true },
      { t: bias, trainable: true },
    ],
    ([x, y]) => add(x, y),
  );
  await compareWebGpu(
    'mul',
    [
      { t: a, trainable: true },
      { t: b, trainable: true },
    ],
    ([x, y]) => mul(x, y),
  );
  await compareWebGpu(
    'mul bias',
    [
      { t: a, trainable: true },
      { t: bias, trainable: true },
    ],
    ([x, y]) => mul(x, y),
  );
  await compareWebGpu('scale', [{ t: a, trainable: true }], ([x]) => scale(x, -0.37));
  // A long sum: the workgroup tree adds in another order than the CPU, so fp32 rounding differs.
  const long = input([70001], 4);
  await compareWebGpu('sum', [{ t: long, trainable: true }], ([x]) => sum(x), 1e-5);
});

test('WebGPU: casts between f32 and bf16 round as the CPU does', { skip }, async () => {
  const x = input([3, 101], 5, 3);
  await compareWebGpu('cast to bf16 and back', [{ t: x }], ([t]) => cast(cast(t, 'bf16'), 'f32'), 1e-30);
  await compareWebGpu('bf16 input', [{ t: x, bf16: true }], ([t]) => cast(t, 'f32'), 1e-30);
});
