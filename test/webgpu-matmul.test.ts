// The WebGPU GEMM against the CPU backend: matmul and linear forward and backward (every transpose,
// batched with and without a broadcast operand, frozen bf16 weights, the LoRA product), shapes that
// are not multiples of the 64 × 64 × 16 tiles, m = 1 and k = 1, views at element offsets, and the
// kernel called directly for what the ops never ask (beta = 1, beta = 0 over NaN, k = 0, alpha = 0).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kernel } from '../src/backend/kernels.js';
import { add, scale } from '../src/ops/elementwise.js';
import { loraLinears } from '../src/ops/lora-linear.js';
import { gemmInto, linear, matmul, type GemmAttrs } from '../src/ops/matmul.js';
import { Tensor, type Device } from '../src/tensor/tensor.js';
import { assertClose } from './helpers.js';
import { compareWebGpu, input, WEBGPU_SKIP } from './webgpu-helpers.js';

const skip = WEBGPU_SKIP;

test(
  'WebGPU gemm: linear with a frozen bf16 weight and an f32 bias, forward and backward',
  { skip },
  async () => {
    const x = input([3, 37, 91], 1);
    const w = input([53, 91], 2, 0.1);
    const bias = input([53], 3);
    await compareWebGpu(
      'linear, bf16 w',
      [
        { t: x, trainable: true },
        { t: w, bf16: true },
        { t: bias, trainable: true },
      ],
      ([x, w, b]) => linear(x, w, b),
    );
    await compareWebGpu(
      'linear, trainable f32 w, no bias',
      [
        { t: x, trainable: true },
        { t: w, trainable: true },
      ],
      ([x, w]) => linear(x, w),
    );
    // One row (decode-like, a GEMV) and one input feature (k = 1).
    await compareWebGpu(
      'linear, one row',
      [
        { t: input([1, 91], 4), trainable: true },
        { t: w, bf16: true },
        { t: bias, trainable: true },
      ],
      ([x, w, b]) => linear(x, w, b),
    );
    await compareWebGpu(
      'linear, k = 1',
      [
        { t: input([37, 1], 5), trainable: true },
        { t: input([53, 1], 6), trainable: true },
        { t: bias, trainable: true },
      ],
      ([x, w, b]) => linear(x, w, b),
    );
  },
);

test('WebGPU gemm: a LoRA layer, frozen bf16 base plus s·(x·Aᵀ)·Bᵀ', { skip }, async () => {
  const x = input([2, 29, 91], 7);
  const w = input([53, 91], 8, 0.1);
  const bias = input([53], 9);
  const A = input([8, 91], 10, 0.1);
  const B = input([53, 8], 11, 0.1);
  await compareWebGpu(
    'lora linear',
    [
      { t: x, trainable: true },
      { t: w, bf16: true },
      { t: bias },
      { t: A, trainable: true },
      { t: B, trainable: true },
    ],
    ([x, w, b, A, B]) => add(linear(x, w, b), scale(linear(linear(x, A), B), 2)),
  );
});

test(
  'WebGPU gemm: the fused LoRA op over two layers sharing x (views, beta = 1 into dx)',
  { skip },
  async () => {
    // Row blocks of the stacked low-rank activations are views at offsets; every base GEMM of the
    // backward accumulates into one dx with beta = 1.
    await compareWebGpu(
      'loraLinears',
      [
        { t: input([2, 29, 91], 40), trainable: true },
        { t: input([53, 91], 41, 0.1), bf16: true },
        { t: input([53], 42) },
        { t: input([8, 91], 43, 0.1), trainable: true },
        { t: input([53, 8], 44, 0.1), trainable: true },
        { t: input([37, 91], 45, 0.1), bf16: true },
        { t: input([4, 91], 46, 0.1), trainable: true },
        { t: input([37, 4], 47, 0.1), trainable: true },
        { t: input([53, 37], 48, 0.1) },
      ],
      ([x, w1, b1, A1, B1, w2, A2, B2, mix]) => {
        const [y1, y2] = loraLinears(x, [
          { w: w1, bias: b1, lora: { A: A1, B: B1, s: 2 } },
          { w: w2, bias: null, lora: { A: A2, B: B2, s: 0.5 } },
        ]);
        // One output that weighs every element of both layers differently.
        return add(y1, linear(y2, mix));
      },
    );
  },
);

test('WebGPU gemm: matmul in every transpose, batched, with b broadcast', { skip }, async () => {
  const [batch, m, k, n] = [3, 37, 91, 53];
  for (const transA of [false, true])
    for (const transB of [false, true]) {
      const a = input(transA ? [batch, k, m] : [batch, m, k], 12);
      const bShape = transB ? [n, k] : [k, n];
      const what = `${transA ? 'aᵀ' : 'a'}·${transB ? 'bᵀ' : 'b'}`;
      // A 2-D b is shared by the batch: its gradient sums over the items (with transA item by item,
      // accumulating with beta = 1 into views of the batch).
      await compareWebGpu(
        `${what}, b broadcast`,
        [
          { t: a, trainable: true },
          { t: input(bShape, 13), trainable: true },
        ],
        ([a, b]) => matmul(a, b, { transA, transB }),
      );
      await compareWebGpu(
        `${what}, batched b`,
        [
          { t: a, trainable: true },
          { t: input([batch, ...bShape], 14), trainable: true },
        ],
        ([a, b]) => matmul(a, b, { transA, transB }),
      );
    }
  await compareWebGpu(
    'bf16 b',
    [
      { t: input([batch, m, k], 15), trainable: true },
      { t: input([k, n], 16), bf16: true },
    ],
    ([a, b]) => matmul(a, b),
  );
  await compareWebGpu(
    'm = 1',
    [
      { t: input([1, k], 17), trainable: true },
      { t: input([k, n], 18), trainable: true },
    ],
    ([a, b]) => matmul(a, b),
  );
  await compareWebGpu(
    'k = 1',
    [
      { t: input([m, 1], 19), trainable: true },
      { t: input([1, n], 20), trainable: true },
    ],
    ([a, b]) => matmul(a, b),
  );
});

test('WebGPU gemm: operands that are views at odd element offsets', { skip }, async () => {
  // A bf16 weight at an odd element offset starts mid-word; x's rows start mid-buffer.
  await compareWebGpu(
    'linear of views',
    [{ t: input([41, 91], 21), bf16: true }, { t: input([50, 91], 22) }],
    ([wAll, xAll]) => linear(xAll.sliceRows(7, 44), wAll.sliceRows(3, 40)),
  );
});

test('WebGPU gemm: a larger product crosses many tiles', { skip }, async () => {
  await compareWebGpu('256×512×384', [{ t: input([256, 384], 23) }, { t: input([384, 512], 24) }], ([a, b]) =>
    matmul(a, b),
  );
});

// The kernel itself, on both devices, c = alpha·op(a)·op(b) + beta·c + bias over views whose element
// offsets are odd: c is rows [2, 2 + batch·m) of a wider buffer, filled with `cFill` beforehand.
async function direct(
  what: string,
  attrs: Omit<GemmAttrs, 'strideA' | 'strideB' | 'strideC'> & { broadcastB?: boolean },
  opts: { cFill?: number; bias?: boolean; bf16B?: boolean } = {},
): Promise<void> {
  const { batch, m, n, k, transA, transB } = attrs;
  const g: GemmAttrs = {
    ...attrs,
    strideA: m * k,
    strideB: attrs.broadcastB ? 0 : k * n,
    strideC: m * n,
  };
  const aHost = input([batch * m * k + 3], 30);
  const bF32 = input([(attrs.broadcastB ? 1 : batch) * k * n + 1], 31);
  const bHost = opts.bf16B ? Tensor.from(bF32.toFloat32(), bF32.shape, 'bf16') : bF32;
  const biasHost = input([n + 5], 32);
  const cSize = (batch * m + 4) * n;
  const cHost =
    opts.cFill === undefined
      ? input([cSize], 33)
      : Tensor.from(new Float32Array(cSize).fill(opts.cFill), [cSize]);
  const run = async (device: Device): Promise<Float32Array> => {
    const all = [aHost, bHost, biasHost, cHost].map((t) => t.toDevice(device));
    const [aAll, bAll, biasAll, cAll] = all;
    const views = [
      aAll.sliceRows(3, aAll.size),
      bAll.sliceRows(1, bAll.size),
      biasAll.sliceRows(5, biasAll.size),
      cAll.reshape([batch * m + 4, n]).sliceRows(2, 2 + batch * m),
    ];
    const [a, b, bias, c] = views;
    kernel(device, 'gemm')(c, a, b, opts.bias ? bias : null, g);
    const out = await c.toFloat32Async();
    for (const t of [...views, ...all]) t.dispose();
    return out;
  };
  const cpu = await run('cpu');
  const gpu = await run('webgpu');
  for (const t of new Set([aHost, bF32, bHost, biasHost, cHost])) t.dispose();
  assertClose(gpu, cpu, 2e-5, `${what} (transA ${transA}, transB ${transB})`);
}

test('WebGPU gemm: the kernel with beta = 1, beta = 0 over NaN, k = 0 and alpha = 0', { skip }, async () => {
  const base = { batch: 2, m: 37, n: 70, k: 19, alpha: 0.75, beta: 0, transA: false, transB: false };
  // The epilogue is the same code under every transpose; each variant compiles anew (seconds on
  // lavapipe), so only beta = 1 runs through all four.
  for (const transA of [false, true])
    for (const transB of [false, true])
      await direct('beta = 1, bias', { ...base, beta: 1, transA, transB }, { bias: true });
  // At most 4 rows take the skinny (GEMV) kernel: k past its 32 slices, columns past its groups.
  for (const transA of [false, true])
    for (const transB of [false, true])
      await direct(
        '3 rows, beta = 1, bias',
        { ...base, m: 3, k: 91, beta: 1, transA, transB },
        { bias: true },
      );
  await direct(
    'beta = -0.5, bf16 b broadcast',
    { ...base, beta: -0.5, transB: true, broadcastB: true },
    { bf16B: true },
  );
  await direct('beta = 0 over NaN', { ...base, transA: true }, { cFill: NaN, bias: true });
  await direct('k = 0, beta = 0 over NaN', { ...base, k: 0 }, { cFill: NaN, bias: true });
  await direct('k = 0, beta = 2', { ...base, k: 0, beta: 2 }, { bias: true });
  await direct('1 row, k = 0, beta = 0 over NaN', { ...base, m: 1, k: 0 }, { cFill: NaN, bias: true });
  await direct('alpha = 0', { ...base, alpha: 0, beta: 1, transA: true }, { bias: true });
  // The ops' own entry point for beta: gemmInto, m = 1 (a GEMV).
  await compareWebGpu(
    'gemmInto beta = 0.5',
    [{ t: input([1, 53], 34) }, { t: input([1, 91], 35) }, { t: input([53, 91], 36), bf16: true }],
    ([c0, x, w]) => {
      const c = c0.reshape([1, 53]);
      gemmInto(c, x, w, { transB: true, alpha: 1.5, beta: 0.5 });
      return c;
    },
  );
});

test('WebGPU gemm: an operand dtype it cannot read is refused in one sentence', { skip }, () => {
  const c = Tensor.empty([2, 2], 'f32', 'webgpu');
  const a = Tensor.from([1, 2, 3, 4], [2, 2], 'i32', 'webgpu');
  const b = Tensor.from([1, 2, 3, 4], [2, 2], 'f32', 'webgpu');
  const g: GemmAttrs = {
    batch: 1,
    m: 2,
    n: 2,
    k: 2,
    transA: false,
    transB: false,
    alpha: 1,
    beta: 0,
    strideA: 4,
    strideB: 4,
    strideC: 4,
  };
  assert.throws(
    () => kernel('webgpu', 'gemm')(c, a, b, null, g),
    /^Error: lorakit: the WebGPU gemm kernel reads f32 or bf16 operands; a is i32\.$/,
  );
  for (const t of [a, b, c]) t.dispose();
});
