// The WebGPU kernels of the transformer layers' small ops (RMSNorm, RoPE, SwiGLU, embedding, dropout,
// DoRA's weight norm), forward and backward through their op-level functions, against the CPU backend:
// odd sizes that are not multiples of the workgroup sizes, row views at element offsets, partial rotary
// heads, repeated ids, dropout masks bit for bit, dense and quantized weights.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backward } from '../src/autograd/tape.js';
import { weightNorm } from '../src/ops/dora.js';
import { dropout } from '../src/ops/dropout.js';
import { copy, mul, sum } from '../src/ops/elementwise.js';
import { embedding } from '../src/ops/embedding.js';
import { rmsnorm } from '../src/ops/rmsnorm.js';
import { rope, ropeTables } from '../src/ops/rope.js';
import { swiglu } from '../src/ops/swiglu.js';
import { quantizeWeight, type QuantizedWeight } from '../src/quant/weight.js';
import { keep, Tensor, tidy, type Device } from '../src/tensor/tensor.js';
import { assertClose } from './helpers.js';
import { compareWebGpu, ids, input, WEBGPU_SKIP } from './webgpu-helpers.js';

const skip = WEBGPU_SKIP;

/** Exact equality, as assertClose measures it (0 relative error passes any tol > 0). */
const EXACT = 1e-30;

interface ViewInput {
  t: Tensor;
  /** The op gets rows [start, end) of t, a view at an element offset. */
  rows?: [number, number];
  trainable?: boolean;
  bf16?: boolean;
}

/**
 * compareWebGpu for inputs that are row views: sliceRows is not differentiable, so the view itself is
 * the leaf that takes the gradient. Compares the output and the views' gradients.
 */
async function compareViews(
  what: string,
  inputs: ViewInput[],
  build: (xs: Tensor[]) => Tensor,
  tol = 2e-5,
): Promise<void> {
  const run = async (device: Device): Promise<Float32Array[]> => {
    const kept = tidy(() => {
      const xs = inputs.map((i) => {
        const host = i.bf16 ? Tensor.from(i.t.toFloat32(), i.t.shape, 'bf16') : i.t;
        const full = host.toDevice(device);
        const v = i.rows ? full.sliceRows(i.rows[0], i.rows[1]) : full;
        v.requiresGrad = i.trainable === true;
        return v;
      });
      const y = build(xs);
      if (xs.some((x) => x.requiresGrad))
        backward(sum(mul(y, input(y.shape as number[], 99).toDevice(device))));
      return [y, ...xs.filter((x) => x.requiresGrad).map((x) => x.grad!)].map((t) => keep(copy(t)));
    });
    const out: Float32Array[] = [];
    for (const t of kept) {
      out.push(await t.toFloat32Async());
      t.dispose();
    }
    return out;
  };
  const cpu = await run('cpu');
  const gpu = await run('webgpu');
  cpu.forEach((c, i) => assertClose(gpu[i], c, tol, `${what}: ${i === 0 ? 'output' : `gradient ${i}`}`));
}

test('WebGPU: rmsnorm forward and backward, odd rows and dims, dx or dweight alone', { skip }, async () => {
  // The backward's dweight sums rows in chunks, then the chunks: another order than the CPU's, within 2e-5.
  const eps = 1e-5;
  for (const [shape, seed] of [
    [[37, 91], 1], // two row chunks of the dweight reduction
    [[5, 1031], 2], // a 256-thread row; a single chunk
    [[3, 101, 33], 3], // 303 rows over ten chunks, leading dims flattened
    [[1, 5], 4], // one row (at dim 1 dx cancels to ~eps, so no relative measure holds)
  ] as const) {
    const x = input([...shape], seed);
    const w = input([shape.at(-1)!], seed + 10);
    const what = `rmsnorm [${shape.join(', ')}]`;
    await compareWebGpu(
      what,
      [
        { t: x, trainable: true },
        { t: w, trainable: true },
      ],
      ([a, b]) => rmsnorm(a, b, eps),
    );
    await compareWebGpu(`${what}, dx only`, [{ t: x, trainable: true }, { t: w }], ([a, b]) =>
      rmsnorm(a, b, eps),
    );
    await compareWebGpu(`${what}, dweight only`, [{ t: x }, { t: w, trainable: true }], ([a, b]) =>
      rmsnorm(a, b, eps),
    );
  }
});

test('WebGPU: rmsnorm on a row view at an element offset', { skip }, async () => {
  await compareViews(
    'rmsnorm view',
    [
      { t: input([50, 91], 5), rows: [7, 44], trainable: true },
      { t: input([91], 6), trainable: true },
    ],
    ([x, w]) => rmsnorm(x, w, 1e-6),
  );
});

test('WebGPU: rope forward and backward, partial rotary heads and full ones', { skip }, async () => {
  // heads 3, headDim 10, rotary 6 (half 3): dims 6–9 pass through.
  const partial = ropeTables({ theta: 10000, partialRotaryFactor: 0.6 }, 10, 17);
  assert.equal(partial.cos.shape[1], 3);
  await compareWebGpu(
    'rope, partial rotary',
    [
      { t: input([2, 5, 3, 10], 7), trainable: true },
      { t: partial.cos },
      { t: partial.sin },
      { t: ids([2, 5], 17, 8) },
    ],
    ([x, c, s, p]) => rope(x, c, s, p),
  );
  const full = ropeTables({ theta: 500000 }, 64, 300);
  await compareWebGpu(
    'rope, full rotary',
    [
      { t: input([3, 7, 5, 64], 9), trainable: true },
      { t: full.cos },
      { t: full.sin },
      { t: ids([3, 7], 300, 10) },
    ],
    ([x, c, s, p]) => rope(x, c, s, p),
  );
  await compareViews(
    'rope view',
    [
      { t: input([4, 5, 3, 10], 11), rows: [1, 3], trainable: true },
      { t: partial.cos },
      { t: partial.sin },
      { t: ids([4, 5], 17, 12), rows: [2, 4] },
    ],
    ([x, c, s, p]) => rope(x, c, s, p),
  );
  for (const t of [partial.cos, partial.sin, full.cos, full.sin]) t.dispose();
});

test('WebGPU: rope leaves a head unrotated at a position outside the tables', { skip }, async () => {
  const { cos, sin } = ropeTables({ theta: 10000 }, 4, 3);
  const x = Tensor.from([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 1, 4], 'f32', 'webgpu');
  const pos = Tensor.from([0, 3], [1, 2], 'i32', 'webgpu'); // position 0 rotates by nothing; 3 is past P
  const [c, s] = [cos.toDevice('webgpu'), sin.toDevice('webgpu')];
  const out = rope(x, c, s, pos);
  assert.deepEqual(Array.from(await out.toFloat32Async()), [1, 2, 3, 4, 5, 6, 7, 8]);
  for (const t of [cos, sin, x, pos, c, s, out]) t.dispose();
});

test('WebGPU: swiglu forward and backward, either gradient alone, on a view', { skip }, async () => {
  const gate = input([37, 91], 13, 3); // wide enough to reach the sigmoid's tails
  const up = input([37, 91], 14);
  await compareWebGpu(
    'swiglu',
    [
      { t: gate, trainable: true },
      { t: up, trainable: true },
    ],
    ([g, u]) => swiglu(g, u),
  );
  await compareWebGpu('swiglu, dgate only', [{ t: gate, trainable: true }, { t: up }], ([g, u]) =>
    swiglu(g, u),
  );
  await compareWebGpu('swiglu, dup only', [{ t: gate }, { t: up, trainable: true }], ([g, u]) =>
    swiglu(g, u),
  );
  await compareViews(
    'swiglu view',
    [
      { t: gate, rows: [3, 30], trainable: true },
      { t: up, rows: [5, 32], trainable: true },
    ],
    ([g, u]) => swiglu(g, u),
  );
});

test(
  'WebGPU: embedding forward (f32 and bf16 tables) and backward over repeated ids, exactly',
  { skip },
  async () => {
    // The scatter adds each column's tokens in order, as the CPU does: the gradient is bit for bit its.
    const table = input([53, 91], 15);
    const tokens = ids([3, 13], 11, 16); // 39 ids below 11: many repeats
    await compareWebGpu(
      'embedding',
      [{ t: table, trainable: true }, { t: tokens }],
      ([t, i]) => embedding(t, i),
      EXACT,
    );
    await compareWebGpu(
      'embedding, bf16 table',
      [{ t: table, bf16: true }, { t: tokens }],
      ([t, i]) => embedding(t, i, 'f32'),
      EXACT,
    );
    // Views: a table that starts at an odd element (bf16: mid-word), ids at an offset.
    for (const bf16 of [false, true])
      await compareViews(
        `embedding view${bf16 ? ', bf16' : ''}`,
        [
          { t: input([61, 7], 17), rows: [3, 60], bf16, trainable: !bf16 },
          { t: ids([40], 57, 18), rows: [1, 38] },
        ],
        ([t, i]) => embedding(t, i, 'f32'),
        EXACT,
      );
  },
);

test('WebGPU: embedding gives a zero row for an id outside the vocabulary', { skip }, async () => {
  const table = Tensor.from([1, 2, 3, 4], [2, 2], 'f32', 'webgpu');
  const tokens = Tensor.from([1, 2, 0], [3], 'i32', 'webgpu');
  const out = embedding(table, tokens, 'f32');
  assert.deepEqual(Array.from(await out.toFloat32Async()), [3, 4, 0, 0, 1, 2]);
  for (const t of [table, tokens, out]) t.dispose();
});

test('WebGPU: dropout masks are the CPU masks bit for bit, forward and backward', { skip }, async () => {
  const x = input([7, 3001], 19); // 21007 elements: 83 workgroups, the last one partial
  for (const seed of [0, 12345, 2 ** 32 + 977, Number.MAX_SAFE_INTEGER])
    for (const p of [0, 0.1, 0.5, 1])
      await compareWebGpu(
        `dropout seed ${seed} p ${p}`,
        [{ t: x, trainable: true }],
        ([t]) => dropout(t, p, seed),
        EXACT,
      );
  // The mask follows the element index within the tensor, so a view drops its own elements.
  await compareViews(
    'dropout view',
    [{ t: x, rows: [2, 6], trainable: true }],
    ([t]) => dropout(t, 0.3, 2 ** 40 + 3),
    EXACT,
  );
});

test(
  "WebGPU: DoRA's weight norm and its reciprocal, dense (f32, bf16) and quantized weights, odd sizes",
  { skip },
  async () => {
    // Rows wider than 512 take the 256-thread workgroup; 4-bit blocks straddle rows at odd widths.
    for (const [rows, cols, seed] of [
      [37, 91, 21],
      [5, 1031, 22],
      [130, 7, 23],
    ] as const) {
      const w = input([rows, cols], seed, 0.05);
      const A = input([3, cols], seed + 1, 0.1);
      const B = input([rows, 3], seed + 2, 0.1);
      const weights: [string, (device: Device) => Tensor | QuantizedWeight][] = [
        ['f32', (d) => w.toDevice(d)],
        ['bf16', (d) => tidy(() => keep(Tensor.from(w.toFloat32(), w.shape, 'bf16').toDevice(d)))],
        ['nf4 + double quant', (d) => quantizeWeight(w, { type: 'nf4', doubleQuant: true }).moveTo(d)],
        ['fp4', (d) => quantizeWeight(w, { type: 'fp4', blocksize: 128 }).moveTo(d)],
        ['int8', (d) => quantizeWeight(w, { type: 'int8' }).moveTo(d)],
      ];
      for (const [kind, make] of weights)
        for (const inverse of [false, true]) {
          const run = async (device: Device): Promise<Float32Array> => {
            const wd = make(device);
            const out = tidy(() =>
              keep(weightNorm(wd, A.toDevice(device), B.toDevice(device), 1.75, inverse)),
            );
            wd.dispose();
            try {
              return await out.toFloat32Async();
            } finally {
              out.dispose();
            }
          };
          const what = `weightNorm ${kind} [${rows}, ${cols}]${inverse ? ', inverse' : ''}`;
          assertClose(await run('webgpu'), await run('cpu'), 1e-5, what);
        }
      for (const t of [w, A, B]) t.dispose();
    }
  },
);
