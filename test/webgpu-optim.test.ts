// The WebGPU optimizer steps, the device-side squared gradient norm, the quantized linear op and the
// multi-adapter LoRA term, against the CPU backend.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { noGrad } from '../src/autograd/tape.js';
import { kernel } from '../src/backend/kernels.js';
import { gradNormSquaredTensor } from '../src/backend/webgpu/optim.js';
import { loraSegments, type LoraSegment } from '../src/ops/lora-segments.js';
import { adamwStep, gradNormSquared, sgdStep, type AdamWSlot } from '../src/ops/optim.js';
import { quantizedLinear } from '../src/ops/quant-linear.js';
import {
  dequantizeWeight,
  quantizeWeight,
  type QuantizedWeight,
  type QuantizeOptions,
} from '../src/quant/weight.js';
import { Tensor, type Device } from '../src/tensor/tensor.js';
import { assertClose } from './helpers.js';
import { compareWebGpu, input, WEBGPU_SKIP } from './webgpu-helpers.js';

const skip = WEBGPU_SKIP;

type Pair<T> = Record<'cpu' | 'webgpu', T>;

/** The same values on the CPU and on WebGPU. */
function both(t: Tensor): Pair<Tensor> {
  return { cpu: t, webgpu: t.toDevice('webgpu') };
}

/** The member of a pair on a device (compareWebGpu's builds run on these two). */
function on<T>(p: Pair<T>, d: Device): T {
  if (d === 'cuda') throw new Error('these tests run on the CPU and WebGPU');
  return p[d];
}

// The update is elementwise in the CPU's order of operations; WGSL's sqrt and division may be a few
// ulps off correctly rounded on some adapters, hence 1e-6 rather than bit equality.
const OPTIM_TOL = 1e-6;

test(
  'WebGPU: AdamW over many slots and steps equals the CPU, compute copies included',
  { skip },
  async () => {
    const sizes = [1, 7, 300, 1027, 4099];
    // Each slot's tensors on both devices: views at an element offset for one slot, a bf16 copy (a
    // view at an odd offset, so its words are shared with neighbours) for two.
    const slots = sizes.map((n, k) => {
      const offset = k === 2 ? 3 : 0;
      const tensor = (seed: number): Pair<Tensor> => {
        const b = both(input([n + offset], seed));
        return { cpu: b.cpu.sliceRows(offset, n + offset), webgpu: b.webgpu.sliceRows(offset, n + offset) };
      };
      const copyHost = k % 2 === 1 ? Tensor.from(input([n + 2], 40 + k).toFloat32(), [n + 2], 'bf16') : null;
      return {
        n,
        param: tensor(10 + k),
        m: both(Tensor.zeros([n])),
        v: both(Tensor.zeros([n])),
        copyBase: copyHost ? both(copyHost) : null,
      };
    });
    const copyOf = (s: (typeof slots)[number], d: 'cpu' | 'webgpu'): Tensor | null =>
      s.copyBase ? s.copyBase[d].sliceRows(1, s.n + 1) : null;
    for (let step = 1; step <= 4; step++) {
      const o = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: step === 3 ? 0 : 0.05, step };
      for (const d of ['cpu', 'webgpu'] as const) {
        const list: AdamWSlot[] = slots.map((s, k) => ({
          param: s.param[d],
          m: s.m[d],
          v: s.v[d],
          grad: input([s.n], 100 * step + k, 0.5).toDevice(d),
          copy: copyOf(s, d),
        }));
        adamwStep(list, o);
      }
    }
    for (const [k, s] of slots.entries()) {
      for (const name of ['param', 'm', 'v'] as const)
        assertClose(
          await s[name].webgpu.toFloat32Async(),
          s[name].cpu.toFloat32(),
          OPTIM_TOL,
          `slot ${k} ${name}`,
        );
      if (!s.copyBase) continue;
      // The copy is the device's updated parameter rounded to nearest even, its neighbours untouched.
      const gpuCopy = await s.copyBase.webgpu.toFloat32Async();
      const p = await s.param.webgpu.toFloat32Async();
      const rounded = Tensor.from(p, [s.n], 'bf16').toFloat32();
      const host = s.copyBase.cpu.toFloat32();
      assert.deepEqual(gpuCopy.subarray(1, s.n + 1), rounded, `slot ${k} copy`);
      assert.equal(gpuCopy[0], host[0], `slot ${k} copy's left neighbour`);
      assert.equal(gpuCopy[s.n + 1], host[s.n + 1], `slot ${k} copy's right neighbour`);
      assertClose(gpuCopy, host, 1e-2, `slot ${k} copy against the CPU's`);
    }
  },
);

test('WebGPU: SGD with and without momentum equals the CPU', { skip }, async () => {
  for (const [momentum, weightDecay] of [
    [0, 0],
    [0, 0.01],
    [0.9, 0],
    [0.9, 0.01],
  ] as const) {
    const n = 1029;
    const param = both(input([n], 1));
    const buf = both(Tensor.zeros([n]));
    for (let step = 0; step < 3; step++)
      for (const d of ['cpu', 'webgpu'] as const)
        sgdStep(param[d], input([n], 50 + step).toDevice(d), {
          lr: 0.05,
          weightDecay,
          momentum,
          buf: momentum ? buf[d] : undefined,
        });
    const what = `momentum ${momentum}, weight decay ${weightDecay}`;
    assertClose(await param.webgpu.toFloat32Async(), param.cpu.toFloat32(), OPTIM_TOL, `${what}: param`);
    if (momentum)
      assertClose(await buf.webgpu.toFloat32Async(), buf.cpu.toFloat32(), OPTIM_TOL, `${what}: buf`);
  }
});

test('WebGPU: the squared gradient norm stays on the device and equals the CPU', { skip }, async () => {
  // Sizes around the 4096-element pieces, and a view at an element offset.
  const hosts = [1, 13, 4095, 4096, 4097, 9001].map((n, k) => input([n], 7 + k));
  const big = input([1000], 3);
  const cpu = [...hosts, big.sliceRows(5, 998)];
  const gpuBig = big.toDevice('webgpu');
  const gpu = [...hosts.map((t) => t.toDevice('webgpu')), gpuBig.sliceRows(5, 998)];
  const norm = gradNormSquaredTensor(gpu);
  assert.equal(norm.device, 'webgpu');
  assert.deepEqual(norm.shape, []);
  // f32 sums in pieces against the CPU's double sum: ~20k terms.
  assertClose(await norm.toFloat32Async(), [await gradNormSquared(cpu)], 1e-5, 'Σx²');
  assertClose(
    [await gradNormSquared(gpu)],
    [await gradNormSquared(cpu)],
    1e-5,
    'gradNormSquared through the op table',
  );
  const empty = gradNormSquaredTensor([]);
  assert.deepEqual(Array.from(await empty.toFloat32Async()), [0]);
  const none = gradNormSquaredTensor([Tensor.empty([0], 'f32', 'webgpu')]);
  assert.deepEqual(Array.from(await none.toFloat32Async()), [0]);
});

const QUANTS: [string, QuantizeOptions][] = [
  ['NF4', { type: 'nf4', blocksize: 64 }],
  ['NF4 double-quantized', { type: 'nf4', blocksize: 64, doubleQuant: true }],
  ['FP4 double-quantized', { type: 'fp4', blocksize: 32, doubleQuant: true }],
  ['int8', { type: 'int8' }],
];

/** A quantized [out, in] weight on the CPU and the same on WebGPU. Odd `in` puts block and byte edges mid-row. */
function quantWeights(out: number, inF: number, opts: QuantizeOptions): Pair<QuantizedWeight> {
  const dense = input([out, inF], 5, 0.2);
  const cpu = quantizeWeight(dense, opts);
  const webgpu = quantizeWeight(dense, opts).moveTo('webgpu');
  dense.dispose();
  return { cpu, webgpu };
}

test('WebGPU: the quantized linear dequantizes exactly the CPU weights', { skip }, async () => {
  // x = I gives y = Wᵀ with every product exact: the dequantized values themselves.
  const [out, inF] = [37, 75];
  const eye = new Float32Array(inF * inF);
  for (let i = 0; i < inF; i++) eye[i * inF + i] = 1;
  for (const [what, opts] of QUANTS) {
    const w = quantWeights(out, inF, opts);
    const x = Tensor.from(eye, [inF, inF], 'f32', 'webgpu');
    const y = noGrad(() => quantizedLinear(x, w.webgpu));
    const got = await y.toFloat32Async();
    const dense = dequantizeWeight(w.cpu).toFloat32();
    const expected = new Float32Array(inF * out);
    for (let r = 0; r < out; r++) for (let c = 0; c < inF; c++) expected[c * out + r] = dense[r * inF + c];
    assert.deepEqual(got, expected, what);
    for (const t of [x, y]) t.dispose();
    w.cpu.dispose();
    w.webgpu.dispose();
  }
});

test('WebGPU: the quantized linear and its input gradient equal the CPU', { skip }, async () => {
  const [out, inF] = [37, 75];
  for (const [what, opts] of QUANTS) {
    const w = quantWeights(out, inF, opts);
    // 3 rows take the CPU's dot-product path, 13 its dequantize-and-GEMM path; 70 rows span two tiles.
    for (const m of [3, 13, 70]) {
      await compareWebGpu(
        `${what}, ${m} rows, with bias`,
        [
          { t: input([m, inF], 21), trainable: true },
          { t: input([out], 22), trainable: true },
        ],
        ([x, b]) => quantizedLinear(x, on(w, x.device), b),
      );
      await compareWebGpu(
        `${what}, ${m} rows [2, ${m}, ${inF}]`,
        [{ t: input([2, m, inF], 23), trainable: true }],
        ([x]) => quantizedLinear(x, on(w, x.device)),
      );
    }
    w.cpu.dispose();
    w.webgpu.dispose();
  }
});

test('WebGPU: the quantized linear reads views and accumulates input gradients', { skip }, async () => {
  const [out, inF, m] = [29, 67, 11];
  for (const [what, opts] of QUANTS) {
    const w = quantWeights(out, inF, opts);
    const x = both(input([m + 3, inF], 31));
    const g = both(input([m + 1, out], 32));
    const dx = both(input([m + 2, inF], 33));
    const y = both(input([m + 1, out], 34));
    for (const d of ['cpu', 'webgpu'] as const) {
      const xv = x[d].sliceRows(3, m + 3);
      const gv = g[d].sliceRows(1, m + 1);
      kernel(d, 'quantLinear')(y[d].sliceRows(1, m + 1), xv, w[d], null, m);
      kernel(d, 'quantLinearBackward')(dx[d].sliceRows(2, m + 2), gv, w[d], m, true);
    }
    assertClose(await y.webgpu.toFloat32Async(), y.cpu.toFloat32(), 2e-5, `${what}: y into a view`);
    assertClose(await dx.webgpu.toFloat32Async(), dx.cpu.toFloat32(), 2e-5, `${what}: dx accumulated`);
    w.cpu.dispose();
    w.webgpu.dispose();
  }
});

test('WebGPU: the LoRA term of three adapters of different ranks equals the CPU', { skip }, async () => {
  const [rows, inF, out] = [29, 150, 37];
  // Rows 7 and 8 are in no segment; ranks 1 (all threads split one dot product), 13 and 200.
  const specs = [
    { start: 0, end: 7, r: 13, s: 2, bf16: false },
    { start: 9, end: 21, r: 1, s: -0.5, bf16: true },
    { start: 21, end: 29, r: 200, s: 0.25, bf16: false },
  ];
  const factors = specs.map(({ r, bf16 }, g) => {
    const dtype = bf16 ? 'bf16' : 'f32';
    const a = Tensor.from(input([r, inF], 60 + g).toFloat32(), [r, inF], dtype);
    const b = Tensor.from(input([out, r], 70 + g).toFloat32(), [out, r], dtype);
    return { A: both(a), B: both(b) };
  });
  // x and y are views at element offsets, with rows on either side that must keep their values.
  const x = both(input([rows + 2, inF], 61));
  const y = both(input([rows + 3, out], 62));
  for (const d of ['cpu', 'webgpu'] as const) {
    const segments: LoraSegment[] = specs.map(({ start, end, s }, g) => ({
      start,
      end,
      s,
      A: factors[g].A[d],
      B: factors[g].B[d],
    }));
    loraSegments(y[d].sliceRows(1, rows + 1), x[d].sliceRows(2, rows + 2), segments);
  }
  assertClose(await y.webgpu.toFloat32Async(), y.cpu.toFloat32(), 2e-5, 'y');
});
