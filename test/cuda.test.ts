// The CUDA backend against the CPU backend and against PEFT (+ bitsandbytes): every op forward and
// backward on random odd-size inputs, the LoRA and QLoRA parity cases, training, memory and generation.
// bf16 activations on the GPU, so tolerances are bf16's (8 bits of mantissa, a few roundings deep).
// Needs a GPU and the CUDA addon (`npm run build:cuda`); elsewhere only the error test runs.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { backward, noGrad } from '../src/autograd/tape.js';
import { cudaAvailable } from '../src/backend/cuda/device.js';
import { cudaUnavailableReason } from '../src/backend/cuda/addon.js';
import { useDevice } from '../src/backend/device.js';
import { generate } from '../src/infer/generate.js';
import { openSafetensors } from '../src/io/safetensors.js';
import { loadModel } from '../src/models/load.js';
import { attention } from '../src/ops/attention.js';
import { crossEntropy } from '../src/ops/cross-entropy.js';
import { weightNorm } from '../src/ops/dora.js';
import { dropout } from '../src/ops/dropout.js';
import { add, cast, mul, scale, sum } from '../src/ops/elementwise.js';
import { embedding } from '../src/ops/embedding.js';
import { linearCrossEntropy } from '../src/ops/linear-cross-entropy.js';
import { linear, matmul } from '../src/ops/matmul.js';
import { loraLinears } from '../src/ops/lora-linear.js';
import { loraSegments, type LoraSegment } from '../src/ops/lora-segments.js';
import { rmsnorm } from '../src/ops/rmsnorm.js';
import { pagedAttention, pagedKvWrite } from '../src/ops/paged-attention.js';
import { rope, ropeTables, parseRopeConfig } from '../src/ops/rope.js';
import { swiglu } from '../src/ops/swiglu.js';
import {
  adapterParameters,
  addAdapter,
  deleteAdapter,
  loadAdapter,
  saveAdapter,
} from '../src/peft/adapters.js';
import { LORA_DEFAULTS } from '../src/peft/config.js';
import { quantizedLinear } from '../src/ops/quant-linear.js';
import { mergeAdapter } from '../src/peft/merge.js';
import { quantizeWeight, type QuantizedWeight } from '../src/quant/weight.js';
import { memoryStats, Tensor, tidy, type Device } from '../src/tensor/tensor.js';
import { padBatch, toDevice } from '../src/train/batching.js';
import { evaluate } from '../src/train/evaluate.js';
import { lossSum } from '../src/train/loss.js';
import { gradNormSquared } from '../src/ops/optim.js';
import { Optimizer } from '../src/train/optimizer.js';
import { train } from '../src/train/trainer.js';
import {
  argmaxInput,
  assertClose,
  fixture,
  projectRoot,
  randn,
  sharedData,
  writeStoriesJsonl,
} from './helpers.js';
import { fixtureExamples, rowLogits, stepLoss } from './model-helpers.js';

const gpu = cudaAvailable();
const SKIP = gpu ? false : `no CUDA here (${cudaUnavailableReason()})`;
if (gpu) useDevice('cuda');

// ---- ops -------------------------------------------------------------------------------------------

/** A random f32 CPU tensor whose values are exactly representable in bf16 (both backends see the same numbers). */
function input(shape: number[], seed: number, std = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const x = Tensor.from(randn(n, seed, std), shape);
  const b = cast(x, 'bf16');
  const out = cast(b, 'f32');
  x.dispose();
  b.dispose();
  return out;
}

type Act = 'bf16' | 'f32';
/** The activation dtypes the GPU computes in; op tests run in both. */
const ACTS: Act[] = ['bf16', 'f32'];
/** A test's tolerance: `bf16` in bf16, fp32 rounding only in f32 (reductions in another order). */
const tolFor = (act: Act, bf16: number): number => (act === 'f32' ? 2e-5 : bf16);

/** The CPU tensor on `device` in `dtype` (on CUDA, the activation dtype `act` by default), optionally trainable. */
function on(device: Device, t: Tensor, trainable = false, dtype?: 'f32' | 'bf16', act: Act = 'bf16'): Tensor {
  let out: Tensor;
  if (device === 'cpu') out = dtype === 'bf16' ? cast(t, 'bf16') : t.toDevice('cpu');
  else {
    const host = cast(t, dtype ?? (t.dtype === 'i32' ? 'f32' : act));
    out = t.dtype === 'i32' ? t.toDevice('cuda') : host.toDevice('cuda');
    host.dispose();
  }
  out.requiresGrad = trainable;
  return out;
}

/**
 * Runs build on the CPU and on the GPU with the same inputs, backpropagates Σ out·r from both, and
 * compares the outputs and every gradient.
 */
function compareBackends(
  what: string,
  act: Act,
  inputs: { t: Tensor; trainable?: boolean; dtype?: 'f32' | 'bf16' }[],
  build: (xs: Tensor[]) => Tensor,
  bf16Tol = 2e-2,
): void {
  const tol = tolFor(act, bf16Tol);
  const run = (device: Device) =>
    tidy(() => {
      const xs = inputs.map((i) => on(device, i.t, i.trainable, device === 'cpu' ? undefined : i.dtype, act));
      const y = build(xs);
      const r = on(device, input(y.shape as number[], 99), false, y.dtype === 'bf16' ? 'bf16' : 'f32');
      backward(sum(mul(y, r)));
      return {
        y: y.toFloat32(),
        grads: xs.map((x) => (x.requiresGrad && x.grad ? x.grad.toFloat32() : null)),
      };
    });
  const cpu = run('cpu');
  const cuda = run('cuda');
  assertClose(cuda.y, cpu.y, tol, `${what}: output`);
  cpu.grads.forEach((g, i) => {
    if (g) assertClose(cuda.grads[i]!, g, tol, `${what}: gradient of input ${i}`);
  });
}

for (const act of ACTS)
  test(`CUDA (${act}): linear, the LoRA path and matmul, forward and backward`, { skip: SKIP }, () => {
    const x = input([3, 37, 91], 1);
    const w = input([53, 91], 2, 0.1);
    const bias = input([53], 3);
    compareBackends(
      'linear',
      act,
      [{ t: x, trainable: true }, { t: w }, { t: bias, trainable: true, dtype: 'f32' }],
      ([a, b, c]) => linear(a, b, c),
    );
    const A = input([8, 91], 4, 0.1);
    const B = input([53, 8], 5, 0.1);
    compareBackends(
      'LoRA path',
      act,
      [
        { t: x, trainable: true },
        { t: A, trainable: true, dtype: 'f32' },
        { t: B, trainable: true, dtype: 'f32' },
      ],
      ([a, la, lb]) => scale(linear(linear(a, la), lb), 2),
    );
    compareBackends(
      'matmul transB',
      act,
      [
        { t: input([5, 19, 33], 6), trainable: true },
        { t: input([5, 27, 33], 7), trainable: true },
      ],
      ([a, b]) => matmul(a, b, { transB: true }),
    );
  });

for (const act of ACTS)
  test(
    `CUDA (${act}): layers sharing an input (loraLinears), and their stacked factors after AdamW`,
    { skip: SKIP },
    () => {
      // q/k/v-like: two LoRA layers of different rank (one with a bias) and a plain one, on one input.
      const x = input([2, 37, 91], 80);
      const ws = [0, 1, 2].map((i) => input([53, 91], 81 + i, 0.1));
      const bias = input([53], 84);
      const factors = [
        input([8, 91], 85, 0.1),
        input([53, 8], 86, 0.1),
        input([5, 91], 87, 0.1),
        input([53, 5], 88, 0.1),
      ];
      compareBackends(
        'loraLinears',
        act,
        [
          { t: x, trainable: true },
          ...ws.map((t) => ({ t })),
          { t: bias, trainable: true, dtype: 'f32' as const },
          ...factors.map((t) => ({ t, trainable: true, dtype: 'f32' as const })),
        ],
        ([xx, w0, w1, w2, b0, A0, B0, A1, B1]) => {
          const [q, k, v] = loraLinears(xx, [
            { w: w0, bias: b0, lora: { A: A0, B: B0, s: 2 } },
            { w: w1, bias: null, lora: { A: A1, B: B1, s: 0.5 } },
            { w: w2, bias: null, lora: null },
          ]);
          // One output for the comparison; each layer's output still gets its own gradient.
          return add(add(q, scale(k, 0.7)), scale(v, -0.5));
        },
      );
      if (act === 'f32') return;
      // In bf16 the factors' compute copies are row blocks of one buffer; AdamW rewrites them in place.
      tidy(() => {
        const As = [factors[0], factors[2]].map((t) => on('cuda', t, true, 'f32'));
        const Bs = [factors[1], factors[3]].map((t) => on('cuda', t, true, 'f32'));
        const layers = [0, 1].map((i) => ({
          w: on('cuda', ws[i]),
          bias: null,
          lora: { A: As[i], B: Bs[i], s: 1 },
        }));
        const xx = on('cuda', x, true);
        const [q, k] = loraLinears(xx, layers);
        backward(add(sum(q), sum(k)));
        const copies = As.map((a) => a.computeCopy!);
        const stack = Tensor.spanRows(copies);
        assert.ok(stack, 'the compute copies are one buffer');
        stack.dispose();
        const params = [...As, ...Bs].map((p, i): [string, Tensor] => [`p${i}`, p]);
        const opt = new Optimizer(params, { name: 'adamw', weightDecay: 0.01 });
        opt.update(1e-2);
        opt.dispose();
        As.forEach((a, i) => {
          assert.equal(a.computeCopy, copies[i], 'AdamW keeps the copy');
          assertClose(a.computeCopy!.toFloat32(), a.toFloat32(), 8e-3, `copy of A${i} after the step`);
        });
        for (const p of [...As, ...Bs]) p.dispose();
      });
    },
  );

for (const act of ACTS)
  test(`CUDA (${act}): rmsnorm, rope, swiglu, add/mul with broadcast`, { skip: SKIP }, () => {
    const x = input([2, 29, 4, 64], 10);
    compareBackends('rmsnorm', act, [{ t: x, trainable: true }, { t: input([64], 11) }], ([a, w]) =>
      rmsnorm(a, w, 1e-5),
    );
    const cfg = parseRopeConfig({ rope_theta: 10000 }, 64);
    const positions = Tensor.from(
      Array.from({ length: 2 * 29 }, (_, i) => (i % 29) % 17),
      [2, 29],
      'i32',
    );
    compareBackends('rope', act, [{ t: x, trainable: true }, { t: positions }], ([a, p]) => {
      const { cos, sin } = ropeTables(cfg, 64, 64);
      return rope(a, cos.toDevice(a.device), sin.toDevice(a.device), p);
    });
    compareBackends(
      'swiglu',
      act,
      [
        { t: input([7, 333], 12), trainable: true },
        { t: input([7, 333], 13), trainable: true },
      ],
      ([g, u]) => swiglu(g, u),
    );
    compareBackends(
      'add + mul broadcast',
      act,
      [
        { t: input([6, 5, 41], 14), trainable: true },
        { t: input([41], 15), trainable: true },
      ],
      ([a, b]) => mul(add(a, b), b),
    );
  });

for (const act of ACTS)
  test(`CUDA (${act}): attention (GQA, packed and padded rows) forward and backward`, { skip: SKIP }, () => {
    for (const D of [64, 128, 40]) {
      const [B, T, Hq, Hkv] = [2, 77, 8, 2];
      const seg = Array.from({ length: B * T }, (_, i) => {
        const b = Math.floor(i / T);
        const t = i % T;
        if (b === 1 && t >= 60) return 0; // padding
        return t < 30 ? 1 : 2; // two packed sequences
      });
      compareBackends(
        `attention D=${D}`,
        act,
        [
          { t: input([B, T, Hq, D], 20), trainable: true },
          { t: input([B, T, Hkv, D], 21), trainable: true },
          { t: input([B, T, Hkv, D], 22), trainable: true },
          { t: Tensor.from(seg, [B, T], 'i32') },
        ],
        ([q, k, v, s]) => attention(q, k, v, s),
        3e-2,
      );
    }
  });

for (const act of ACTS)
  test(`CUDA (${act}): embedding, cross-entropy, fused head + loss`, { skip: SKIP }, () => {
    const ids = Tensor.from(
      Array.from({ length: 43 }, (_, i) => (i * 7919) % 301),
      [43],
      'i32',
    );
    compareBackends(
      'embedding (f32 trainable table)',
      act,
      [{ t: input([301, 72], 30), trainable: true, dtype: 'f32' }, { t: ids }],
      ([t, i]) => embedding(t, i, t.device === 'cpu' ? 'f32' : act),
    );
    const targets = Tensor.from(
      Array.from({ length: 43 }, (_, i) => (i % 5 === 3 ? -100 : (i * 31) % 1001)),
      [43],
      'i32',
    );
    compareBackends(
      'crossEntropy',
      act,
      [{ t: input([43, 1001], 31), trainable: true }, { t: targets }],
      ([l, t]) => crossEntropy(l, t.toDevice(l.device)),
    );
    // The fused head: h [N, D] against a [V, D] head bigger than one vocabulary chunk.
    const h = input([43, 96], 32);
    const w = input([20011, 96], 33, 0.2);
    const bigTargets = Tensor.from(
      Array.from({ length: 43 }, (_, i) => (i % 5 === 3 ? -100 : (i * 7717) % 20011)),
      [43],
      'i32',
    );
    const run = (device: Device) =>
      tidy(() => {
        const hh = on(device, h, true, undefined, act);
        const ww = on(device, w, false, undefined, act);
        const loss = linearCrossEntropy(hh, ww, bigTargets);
        backward(loss);
        return { loss: loss.item(), dh: hh.grad!.toFloat32() };
      });
    const c = run('cpu');
    const g = run('cuda');
    const lossErr = Math.abs(g.loss - c.loss) / c.loss;
    assert.ok(lossErr < tolFor(act, 1e-2), `fused loss ${g.loss} vs CPU ${c.loss}`);
    assertClose(g.dh, c.dh, tolFor(act, 2e-2), 'fused head dh');
  });

for (const act of ACTS)
  test(`CUDA (${act}): pagedKvWrite and pagedAttention match the CPU ops`, { skip: SKIP }, () => {
    // Few rows over long contexts split the positions over blocks (and merge them); many rows do not.
    const cases = [
      { lens: [3001, 2], Hq: 8, Hkv: 2, D: 128, blockSize: 16, N: 3 },
      { lens: [45, 700, 9], Hq: 7, Hkv: 1, D: 64, blockSize: 7, N: 37 },
      { lens: [130, 1], Hq: 4, Hkv: 4, D: 80, blockSize: 1, N: 5 },
      { lens: [1500, 20], Hq: 16, Hkv: 1, D: 13, blockSize: 16, N: 4 },
    ];
    cases.forEach((c, ci) => {
      const T = c.lens.reduce((a, b) => a + b, 0);
      const blocksOf = c.lens.map((n) => Math.ceil(n / c.blockSize));
      const numBlocks = blocksOf.reduce((a, b) => a + b, 0) + 2;
      const maxBlocks = Math.max(...blocksOf);
      // Blocks handed out back to front and interleaved between sequences: no sequence's are contiguous.
      const table = new Array<number>(c.lens.length * maxBlocks).fill(0);
      let next = numBlocks - 1;
      for (let b = 0; b < maxBlocks; b++)
        c.lens.forEach((_, s) => {
          if (b < blocksOf[s]) table[s * maxBlocks + b] = next--;
        });
      const slots: number[] = [];
      c.lens.forEach((n, s) => {
        for (let p = 0; p < n; p++)
          slots.push(table[s * maxBlocks + Math.floor(p / c.blockSize)] * c.blockSize + (p % c.blockSize));
      });
      const rowSeq = Array.from({ length: c.N }, (_, i) => i % c.lens.length);
      const rowPos = rowSeq.map((s, i) => Math.max(0, c.lens[s] - 1 - Math.floor(i / c.lens.length)));
      const poolShape = [numBlocks, c.blockSize, c.Hkv, c.D];
      const k = input([T, c.Hkv, c.D], 700 + ci);
      const v = input([T, c.Hkv, c.D], 710 + ci);
      const q = input([c.N, c.Hq, c.D], 720 + ci);
      const scale = 1 / Math.sqrt(c.D);
      const run = (device: Device) =>
        tidy(() => {
          const pools = [0, 1].map(() => on(device, Tensor.zeros(poolShape), false, undefined, act));
          const ints = (xs: number[], shape: number[]) => Tensor.from(xs, shape, 'i32', device);
          pagedKvWrite(
            pools[0],
            pools[1],
            on(device, k, false, undefined, act),
            on(device, v, false, undefined, act),
            ints(slots, [T]),
          );
          const out = pagedAttention(
            on(device, q, false, undefined, act),
            pools[0],
            pools[1],
            ints(table, [c.lens.length, maxBlocks]),
            ints(rowSeq, [c.N]),
            ints(rowPos, [c.N]),
            scale,
          );
          return { out: out.toFloat32(), kPool: pools[0].toFloat32(), vPool: pools[1].toFloat32() };
        });
      const cpu = run('cpu');
      const gpu = run('cuda');
      const what = `paged case ${ci} (D ${c.D}, ${c.Hq}/${c.Hkv} heads, blockSize ${c.blockSize})`;
      // The inputs are bf16-exact: the pools hold the same numbers on both devices.
      assert.deepEqual(gpu.kPool, cpu.kPool, `${what}: kPool`);
      assert.deepEqual(gpu.vPool, cpu.vPool, `${what}: vPool`);
      assertClose(gpu.out, cpu.out, tolFor(act, 1e-2), `${what}: output`);
    });
  });

test('CUDA: dropout draws the CPU mask exactly', { skip: SKIP }, () => {
  const ones = Tensor.from(new Float32Array(10007).fill(1), [10007]);
  const cpuMask = dropout(ones, 0.3, 12345).toFloat32();
  const cudaMask = dropout(on('cuda', ones), 0.3, 12345).toFloat32();
  for (let i = 0; i < cpuMask.length; i++)
    assert.equal(cudaMask[i] === 0, cpuMask[i] === 0, `element ${i}: kept on one backend only`);
});

test('CUDA: the squared gradient norm over many tensors matches the CPU', { skip: SKIP }, async () => {
  const sizes = [1, 7, 333, 40001];
  const xs = sizes.map((n, i) => Tensor.from(randn(n, 50 + i), [n]));
  const want = xs.reduce((acc, x) => acc + x.toFloat32().reduce((a, v) => a + v * v, 0), 0);
  const onGpu = xs.map((x) => x.toDevice('cuda'));
  const got = await gradNormSquared(onGpu);
  assert.ok(Math.abs(got - want) / want < 1e-5, `Σ x² ${got} vs ${want}`);
  for (const x of [...xs, ...onGpu]) x.dispose();
});

for (const act of ACTS)
  test(
    `CUDA (${act}): quantized linear (nf4 + double quant, fp4, int8) matches the CPU kernels`,
    { skip: SKIP },
    () => {
      // The second shape's dequantized copy exceeds one 64 MiB block: it runs in blocks of rows, the
      // last one partial. 320 % 64 == 0 with blocks of 64: the fused kernel's tensor-core path; 4160 too.
      for (const [type, doubleQuant, out, inF] of [
        ['nf4', true, 67, 320],
        ['fp4', false, 67, 320],
        ['int8', false, 67, 320],
        ['nf4', true, 8200, 4160],
        ['fp4', false, 8200, 4160],
        ['int8', false, 8200, 4160],
      ] as const) {
        const w = input([out, inF], 40, 0.05);
        const bias = input([8200], 42);
        // 22 rows take dequantize + GEMM; 3 rows (generation) the fused kernel.
        for (const xShape of [
          [2, 11, inF],
          [1, 3, inF],
        ]) {
          const x = input(xShape, 41);
          const run = (device: Device) =>
            tidy(() => {
              const qw = quantizeWeight(w, { type, doubleQuant, blocksize: 64 }).moveTo(device);
              const xx = on(device, x, true, undefined, act);
              const y = quantizedLinear(xx, qw, on(device, bias.sliceRows(0, out), false, undefined, act));
              backward(sum(mul(y, on(device, input(y.shape as number[], 43), false, undefined, act))));
              const res = { y: y.toFloat32(), dx: xx.grad!.toFloat32() };
              qw.dispose();
              return res;
            });
          const c = run('cpu');
          const g = run('cuda');
          const what = `${type} [${out}, ${inF}], x ${JSON.stringify(xShape)}`;
          assertClose(g.y, c.y, tolFor(act, 2e-2), `${what}: forward`);
          assertClose(g.dx, c.dx, tolFor(act, 2e-2), `${what}: input gradient`);
          x.dispose();
        }
        w.dispose();
        bias.dispose();
      }
    },
  );

test(
  'CUDA: DoRA weight norm (and its reciprocal) over f32, bf16 and quantized weights matches the CPU',
  { skip: SKIP },
  () => {
    // [8200, 4160] dequantized to f32 exceeds one 64 MiB block: it runs in blocks of rows, the last
    // partial; 91 columns take the scalar path, 320 the 16-byte one.
    for (const [rows, cols] of [
      [37, 91],
      [67, 320],
      [8200, 4160],
    ] as const) {
      const w = input([rows, cols], 60, 0.05);
      const A = input([4, cols], 61, 0.1);
      const B = input([rows, 4], 62, 0.1);
      const weights: [string, (d: Device) => Tensor | QuantizedWeight][] = [
        ['f32', (d) => on(d, w, false, 'f32')],
        ['bf16', (d) => on(d, w, false, 'bf16')],
        ['nf4 + double quant', (d) => quantizeWeight(w, { type: 'nf4', doubleQuant: true }).moveTo(d)],
        ['fp4', (d) => quantizeWeight(w, { type: 'fp4' }).moveTo(d)],
        ['int8', (d) => quantizeWeight(w, { type: 'int8' }).moveTo(d)],
      ];
      for (const [kind, make] of weights)
        for (const inverse of [false, true]) {
          const run = (d: Device) =>
            tidy(() => {
              const wd = make(d);
              const norm = weightNorm(wd, on(d, A, false, 'f32'), on(d, B, false, 'f32'), 1.75, inverse);
              const v = norm.toFloat32();
              wd.dispose();
              return v;
            });
          assertClose(
            run('cuda'),
            run('cpu'),
            1e-5,
            `${kind} [${rows}, ${cols}]${inverse ? ', inverse' : ''}`,
          );
        }
      for (const t of [w, A, B]) t.dispose();
    }
  },
);

// ---- models ----------------------------------------------------------------------------------------

interface PeftExpected {
  model: string;
  ids: number[][];
  mask: number[][];
  labels: number[][];
  loss_sum: number;
  loss_tokens: number;
  sgd_lr: number;
  adamw: { lr: number; beta1: number; beta2: number; eps: number; weight_decay: number; losses: number[] };
}

// Every case, DoRA and modules_to_save included.
const peftCases = fixture('peft') ? readdirSync(fixture('peft')!).sort() : [];

/**
 * The two GPU precisions and their tolerances (relative). bf16: activations and frozen weights in
 * bf16 through every layer, so the gradient of a layer-0 factor has passed through a few dozen bf16
 * roundings (rsLoRA's larger scale measured 5.4e-2 here). fp32 (`dtype: 'float32'`): exact fp32 math,
 * held to the CPU's PEFT tolerances (test/peft.test.ts, test/quant-model.test.ts).
 */
const PRECISIONS = [
  { name: 'bf16', dtype: 'bfloat16', loss: 1e-2, grad: 8e-2, adamw: 2e-2, qloraGrad: 5e-2 },
  { name: 'fp32', dtype: 'float32', loss: 1e-4, grad: 1e-4, adamw: 1e-3, qloraGrad: 1e-3 },
] as const;

for (const prec of PRECISIONS)
  for (const name of peftCases)
    test(`CUDA: PEFT parity in ${prec.name}: ${name}`, { skip: SKIP }, async () => {
      const dir = fixture('peft', name)!;
      const e = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as PeftExpected;
      const want = openSafetensors(join(dir, 'expected.safetensors'));
      const expect = (key: string): Float32Array => {
        // PEFT saves DoRA's magnitude as a module's weight.
        const t = want.read(key.endsWith('lora_magnitude_vector') ? `${key}.weight` : key, 'f32');
        const v = Float32Array.from(t.as('f32'));
        t.dispose();
        return v;
      };
      const { model } = await loadModel(fixture('models', e.model)!, { device: 'cuda', dtype: prec.dtype });
      try {
        assert.equal(model.activationDType, prec.name === 'bf16' ? 'bf16' : 'f32');
        loadAdapter(model, join(dir, 'adapter'), 'default');
        const params = adapterParameters(model, 'default');
        const loss = stepLoss(model, fixtureExamples(e), true);
        const wantLoss = e.loss_sum / e.loss_tokens;
        assert.ok(Math.abs(loss - wantLoss) / wantLoss < prec.loss, `loss ${loss} vs PEFT ${wantLoss}`);
        for (const [key, p] of params) {
          assert.equal(p.device, 'cuda');
          assert.equal(p.dtype, 'f32', 'LoRA master weights stay f32');
          assertClose(p.grad!.toFloat32(), expect(`grad.${key}`), prec.grad, `grad ${key}`);
        }
        const opt = new Optimizer(params, {
          name: 'adamw',
          weightDecay: e.adamw.weight_decay,
          eps: e.adamw.eps,
        });
        opt.zeroGrad();
        const losses: number[] = [];
        for (let s = 0; s < 5; s++) {
          losses.push(stepLoss(model, fixtureExamples(e), true));
          opt.update(e.adamw.lr);
          opt.zeroGrad();
        }
        opt.dispose();
        assertClose(losses, e.adamw.losses, prec.adamw, 'AdamW losses');
      } finally {
        model.dispose();
        want.close();
      }
    });

for (const prec of PRECISIONS)
  test(
    `CUDA: QLoRA (NF4 + double quant) in ${prec.name}: loss and gradients match PEFT + bitsandbytes`,
    { skip: SKIP },
    async (t) => {
      const dir = fixture('quant');
      if (!dir) return t.skip('fixture missing: run scripts/reference/make-all.sh');
      const e = JSON.parse(readFileSync(join(dir, 'qlora.json'), 'utf8')) as {
        ids: number[][];
        mask: number[][];
        labels: number[][];
        loss: number;
      };
      const want = openSafetensors(join(dir, 'qlora.safetensors'));
      const { model } = await loadModel(fixture('quant', 'tiny-base')!, {
        quantize: 'nf4',
        doubleQuant: true,
        device: 'cuda',
        dtype: prec.dtype,
      });
      try {
        loadAdapter(model, join(dir, 'qlora-adapter'), 'default');
        const loss = stepLoss(model, fixtureExamples(e), true);
        assert.ok(Math.abs(loss - e.loss) / e.loss < prec.loss, `loss ${loss} vs PEFT ${e.loss}`);
        for (const [key, p] of adapterParameters(model, 'default')) {
          const x = want.read(`grad.${key}`, 'f32');
          assertClose(p.grad!.toFloat32(), x.as('f32'), prec.qloraGrad, `grad ${key}`);
          x.dispose();
        }
      } finally {
        model.dispose();
        want.close();
      }
    },
  );

for (const quantize of [undefined, 'nf4'] as const)
  test(
    `CUDA: a DoRA adapter trained on the GPU${quantize ? ' over an NF4 base' : ''} loads on the CPU with the same loss${quantize ? '' : ' and merges there'}`,
    { skip: SKIP },
    async () => {
      const e = JSON.parse(
        readFileSync(join(fixture('peft', 'llama-dora')!, 'expected.json'), 'utf8'),
      ) as PeftExpected;
      const examples = fixtureExamples(e);
      const modelDir = fixture('models', 'llama')!;
      const opts = { dtype: 'float32', ...(quantize ? { quantize, doubleQuant: true } : {}) } as const;
      const out = mkdtempSync(join(tmpdir(), 'lorakit-cuda-dora-'));
      try {
        const { model } = await loadModel(modelDir, { ...opts, device: 'cuda' });
        let onGpu: number;
        try {
          addAdapter(model, 'd', { ...LORA_DEFAULTS, r: 4, alpha: 8, dropout: 0, useDora: true }, 5);
          const opt = new Optimizer(adapterParameters(model, 'd'), { name: 'adamw', weightDecay: 0 });
          for (let s = 0; s < 3; s++) {
            stepLoss(model, examples, true);
            opt.update(1e-2); // B leaves zero and m moves: the norm and the magnitude both matter
            opt.zeroGrad();
          }
          opt.dispose();
          onGpu = stepLoss(model, examples, false);
          await saveAdapter(model, 'd', join(out, 'adapter'));
        } finally {
          model.dispose();
        }
        const { model: cpu } = await loadModel(modelDir, opts);
        try {
          loadAdapter(cpu, join(out, 'adapter'), 'd');
          const onCpu = stepLoss(cpu, examples, false);
          assert.ok(Math.abs(onCpu - onGpu) / onGpu < 1e-5, `CPU ${onCpu} vs GPU ${onGpu}`);
          if (!quantize) {
            const adapted = rowLogits(cpu, e.ids);
            mergeAdapter(cpu, 'd');
            assertClose(rowLogits(cpu, e.ids), adapted, 1e-5, 'logits after merging on the CPU');
          }
        } finally {
          cpu.dispose();
        }
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
  );

/** {"text"} rows of TinyStories in a fresh folder (null without ../shared/data). */
const storiesRows = (from: number, count: number): string | null =>
  writeStoriesJsonl(join(mkdtempSync(join(tmpdir(), 'lorakit-cuda-')), 'rows.jsonl'), from, count);

test(
  'CUDA: stories260K LoRA training matches the CPU run, memory stays flat, the adapter reloads on the CPU',
  { skip: SKIP },
  async (t) => {
    const modelDir = sharedData('models', 'stories260K-hf');
    const trainFile = storiesRows(0, 256);
    const evalFile = storiesRows(300, 32);
    if (!modelDir || typeof trainFile !== 'string' || typeof evalFile !== 'string' || trainFile.length < 5)
      return t.skip('shared data missing');
    const results: Record<string, { evalLoss: number; memory: number[] }> = {};
    const out = mkdtempSync(join(tmpdir(), 'lorakit-cuda-train-'));
    for (const device of ['cpu', 'cuda'] as const) {
      const { model, tokenizer } = await loadModel(modelDir, { device });
      try {
        addAdapter(model, 'default', { ...LORA_DEFAULTS, r: 8, alpha: 16 }, 7);
        const memory: number[] = [];
        const r = await train(model, tokenizer, {
          data: trainFile,
          evalData: evalFile,
          maxSteps: 40,
          batchSize: 8,
          lr: 3e-3,
          maxSeqLen: 256,
          seed: 3,
          gradCheckpointing: device === 'cuda',
          onStep: () => memory.push(memoryStats(false, device).liveBytes),
          onWarning: () => {},
        });
        results[device] = { evalLoss: r.evalLoss!, memory };
        if (device === 'cuda') await saveAdapter(model, 'default', join(out, 'adapter'));
      } finally {
        model.dispose();
      }
    }
    const { cpu, cuda } = results;
    assert.ok(
      Math.abs(cuda.evalLoss - cpu.evalLoss) / cpu.evalLoss < 0.02,
      `eval loss cuda ${cuda.evalLoss} vs cpu ${cpu.evalLoss}`,
    );
    assert.equal(
      cuda.memory[39],
      cuda.memory[5],
      `GPU memory grew from step 6 to step 40: ${cuda.memory[5]} -> ${cuda.memory[39]}`,
    );
    // The GPU-trained adapter, loaded into the CPU model, gives the GPU's eval loss (fp32 vs bf16 compute).
    const { model, tokenizer } = await loadModel(modelDir);
    try {
      loadAdapter(model, join(out, 'adapter'), 'default');
      const { loadData } = await import('../src/train/data.js');
      const r = await evaluate(
        model,
        (await loadData(evalFile, tokenizer, { maxSeqLen: 256, completionOnly: false })).examples,
        8,
      );
      assert.ok(
        Math.abs(r.loss - cuda.evalLoss) / cuda.evalLoss < 0.02,
        `CPU eval of the GPU adapter ${r.loss} vs ${cuda.evalLoss}`,
      );
    } finally {
      model.dispose();
      rmSync(out, { recursive: true, force: true });
    }
  },
);

test(
  'CUDA: offloaded checkpoints train exactly as kept ones, with less GPU memory',
  { skip: SKIP },
  async (t) => {
    const modelDir = sharedData('models', 'stories260K-hf');
    const rows = storiesRows(0, 64);
    if (!modelDir || typeof rows !== 'string') return t.skip('shared data missing');
    const { model, tokenizer } = await loadModel(modelDir, { device: 'cuda' });
    const { loadData } = await import('../src/train/data.js');
    const examples = (
      await loadData(rows, tokenizer, { maxSeqLen: 256, completionOnly: false })
    ).examples.slice(0, 16);
    const run = (offloadCheckpoints: boolean) => {
      addAdapter(model, 'o', { ...LORA_DEFAULTS, r: 8, alpha: 16 }, 5);
      const params = adapterParameters(model, 'o');
      const opt = new Optimizer(params, { name: 'adamw', weightDecay: 0 });
      const hb = padBatch(examples);
      const losses: number[] = [];
      memoryStats(true, 'cuda');
      for (let s = 0; s < 4; s++) {
        losses.push(
          tidy(() => {
            const { batch, targets } = toDevice(hb);
            const total = lossSum(model, batch, targets, {
              ctx: { training: true, adapter: 'o' },
              checkpointing: true,
              offloadCheckpoints,
            });
            backward(scale(total, 1 / hb.targetCount));
            return total.item() / hb.targetCount;
          }),
        );
        opt.update(1e-3);
        opt.zeroGrad();
      }
      const peak = memoryStats(false, 'cuda').peakBytes;
      const weights = params.map(([, p]) => p.toFloat32());
      opt.dispose();
      deleteAdapter(model, 'o');
      return { losses, peak, weights };
    };
    try {
      const kept = run(false);
      const offloaded = run(true);
      assert.deepEqual(offloaded.losses, kept.losses, 'the same kernels on the same data: identical losses');
      offloaded.weights.forEach((w, i) => assert.deepEqual(w, kept.weights[i], `adapter tensor ${i}`));
      assert.ok(offloaded.peak < kept.peak, `peak ${offloaded.peak} with offloading vs ${kept.peak}`);
    } finally {
      model.dispose();
    }
  },
);

test(
  'CUDA: generation on the GPU starts with the CPU tokens (bf16 and NF4 + double quant)',
  { skip: SKIP },
  async (t) => {
    const modelDir = sharedData('models', 'stories260K-hf');
    if (!modelDir) return t.skip('shared data missing');
    // NF4: each decoding step's projections take the fused quantized kernel (one row at a time).
    for (const quantize of [undefined, 'nf4'] as const) {
      const texts: string[] = [];
      for (const device of ['cpu', 'cuda'] as const) {
        const { model, tokenizer } = await loadModel(modelDir, { device, quantize, doubleQuant: !!quantize });
        try {
          texts.push(
            noGrad(() => generate(model, tokenizer, { prompt: 'Once upon a time', maxNewTokens: 6 })).text,
          );
        } finally {
          model.dispose();
        }
      }
      const what = quantize ?? 'unquantized';
      assert.equal(
        texts[1].slice(0, 8),
        texts[0].slice(0, 8),
        `${what}: GPU "${texts[1]}" vs CPU "${texts[0]}"`,
      );
    }
  },
);

/** The lorakit CLI run from source in a child process. */
const cli = (args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', join(projectRoot, 'test', 'lorakit-cli.mts'), ...args], {
    encoding: 'utf8',
    cwd: projectRoot,
  });

test(
  '--device cuda without a usable GPU fails with one clear sentence',
  { skip: gpu ? 'a GPU is present' : false },
  () => {
    const r = cli([
      'train',
      '--model',
      'x',
      '--data',
      'y',
      '--out',
      join(tmpdir(), 'lorakit-never'),
      '--device',
      'cuda',
    ]);
    assert.notEqual(r.status, 0);
    assert.match(
      r.stderr,
      /--device cuda is not available: (the CUDA backend is not built|no CUDA GPU is visible|the CUDA addon)/,
    );
  },
);

test('GPU-only flags and commands are refused on the CPU with one clear sentence', () => {
  const offload = cli([
    'train',
    '--model',
    'x',
    '--data',
    'y',
    '--out',
    join(tmpdir(), 'lorakit-never'),
    '--offload-checkpoints',
  ]);
  assert.equal(offload.status, 2);
  assert.match(offload.stderr, /--offload-checkpoints needs --device cuda\./);
  const out = join(tmpdir(), 'lorakit-never.gguf');
  const exported = cli(['export', '--model', 'x', '--format', 'gguf', '--out', out, '--device', 'cuda']);
  assert.equal(exported.status, 2);
  assert.match(
    exported.stderr,
    /lorakit export: --device cuda is not supported by this command; use --device cpu\./,
  );
});

// ---- the LoRA term of many adapters over one batch (loraSegments) ---------------------------------

for (const act of ACTS)
  test(
    `CUDA (${act}): loraSegments (mixed ranks and factor dtypes, gaps) matches the CPU; a row alone gives its batch bits`,
    { skip: SKIP },
    () =>
      noGrad(() =>
        tidy(() => {
          const [inF, out] = [1000, 517];
          // Ranks 1, 5, 16, 64 with f32 and bf16 factors; segments of 1 to 11 rows with gaps between.
          const factors = [1, 5, 16, 64].map((r, i) => ({
            A: input([r, inF], 300 + i, 1 / Math.sqrt(inF)),
            B: input([out, r], 310 + i, 1 / Math.sqrt(r)),
            s: 0.5 + i / 2,
            dtype: i % 2 === 0 ? ('bf16' as const) : ('f32' as const),
          }));
          const lengths = [1, 11, 3, 8, 1, 9, 2, 5];
          const layout: { start: number; end: number; f: number }[] = [];
          let row = 1;
          lengths.forEach((len, i) => {
            layout.push({ start: row, end: row + len, f: i % factors.length });
            row += len + (i % 3);
          });
          const N = row + 2;
          const x = input([N, inF], 320);
          const y0 = input([N, out], 321, 0.5);
          const segsOn = (device: Device): LoraSegment[] => {
            const fs = factors.map((f) => ({
              A: on(device, f.A, false, f.dtype),
              B: on(device, f.B, false, f.dtype),
              s: f.s,
            }));
            return layout.map(({ start, end, f }) => ({ start, end, ...fs[f] }));
          };
          const cpuY = y0.toDevice('cpu');
          loraSegments(cpuY, x, segsOn('cpu'));
          const segs = segsOn('cuda');
          const gx = on('cuda', x, false, undefined, act);
          const gy = on('cuda', y0, false, undefined, act);
          loraSegments(gy, gx, segs);
          const got = gy.toFloat32();
          assertClose(got, cpuY.toFloat32(), tolFor(act, 2e-2), 'loraSegments y');
          // Rows in no segment keep their bits.
          const before = on('cuda', y0, false, undefined, act).toFloat32();
          const covered = new Set(
            layout.flatMap(({ start, end }) => Array.from({ length: end - start }, (_, k) => start + k)),
          );
          for (let i = 0; i < N; i++)
            if (!covered.has(i))
              assert.deepEqual(
                got.subarray(i * out, (i + 1) * out),
                before.subarray(i * out, (i + 1) * out),
                `row ${i}`,
              );
          // Each row alone (its x row a view at another alignment, its own y row): the batch's bits.
          for (const { start, end, A, B, s } of segs)
            for (let i = start; i < end; i++) {
              const y1 = Tensor.empty([1, out], gy.dtype, 'cuda');
              const fresh = on('cuda', y0, false, undefined, act);
              Tensor.copyElements(y1, 0, fresh, i * out, out);
              loraSegments(y1, gx.sliceRows(i, i + 1), [{ start: 0, end: 1, A, B, s }]);
              assert.deepEqual(y1.toFloat32(), got.subarray(i * out, (i + 1) * out), `row ${i} alone`);
            }
        }),
      ),
  );

test(
  'CUDA: argmaxRows is the host scan over f32 and bf16 rows (ties, NaN, -inf)',
  { skip: SKIP },
  async () => {
    const { argmaxRows } = await import('../src/ops/argmax.js');
    const { argmaxFirst } = await import('../src/infer/sampling.js');
    for (const [rows, cols] of [
      [1, 1],
      [9, 257],
      [64, 49152],
    ] as const)
      for (const dtype of ['f32', 'bf16'] as const) {
        const host = Tensor.from(argmaxInput(rows, cols, rows + cols), [rows, cols], dtype);
        const x = host.toFloat32();
        const want = Array.from({ length: rows }, (_, r) =>
          argmaxFirst(x.subarray(r * cols, (r + 1) * cols)),
        );
        const t = host.toDevice('cuda');
        const ids = argmaxRows(t);
        assert.deepEqual(Array.from(ids.toFloat32()), want, `${dtype} [${rows}, ${cols}]`);
        for (const u of [host, t, ids]) u.dispose();
      }
  },
);
