// The fused LoRA linear op (src/ops/lora-linear.ts): output and every gradient against a float64
// reference, a quantized base against the unfused composition, skipped gradients, bad inputs, the
// LoRA layer's fused path against its unfused one, layers sharing an input as one op against the same
// layers one by one, and the number of kernel calls per layer and per group.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backward, noGrad } from '../src/autograd/tape.js';
import { kernel, registerKernel, type KernelName } from '../src/backend/kernels.js';
import { forwardShared, Linear, type ForwardContext } from '../src/nn/linear.js';
import { add, mul, scale, sum } from '../src/ops/elementwise.js';
import { loraLinear, loraLinears, type SharedInputLayer } from '../src/ops/lora-linear.js';
import { linear } from '../src/ops/matmul.js';
import { LORA_DEFAULTS, loraScale } from '../src/peft/config.js';
import { LoraLinear } from '../src/peft/lora.js';
import { quantizedLinear } from '../src/ops/quant-linear.js';
import { quantizeWeight, type QuantizedWeight } from '../src/quant/weight.js';
import { Tensor, tidy } from '../src/tensor/tensor.js';
import { assertClose, randn } from './helpers.js';

const TOL = 1e-4;
const ROWS = 37;
const IN = 91;
const OUT = 53;
const R = 7;
const S = 1.75;

type Arr = ArrayLike<number>;

/** A leaf tensor of random values (f32 unless told), optionally requiring grad. */
function leaf(shape: number[], seed: number, grad: boolean, dtype: 'f32' | 'bf16' = 'f32', std = 1): Tensor {
  const t = Tensor.from(
    randn(
      shape.reduce((a, b) => a * b, 1),
      seed,
      std,
    ),
    shape,
    dtype,
  );
  t.requiresGrad = grad;
  return t;
}

// C [m, n] = op(A)·op(B) in float64; A [m, k] (stored [k, m] with ta), B [k, n] (stored [n, k] with tb).
function mm(a: Arr, b: Arr, m: number, n: number, k: number, ta = false, tb = false): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let q = 0; q < k; q++)
        s += (ta ? a[q * m + i] : a[i * k + q]) * (tb ? b[j * k + q] : b[q * n + j]);
      c[i * n + j] = s;
    }
  return c;
}

interface Reference {
  y: Float64Array;
  dx: Float64Array;
  dxl: Float64Array;
  dA: Float64Array;
  dB: Float64Array;
  dbias: Float64Array;
}

/** The layer and its gradients in float64, on exactly the stored values (bf16-rounded for a bf16 W). */
function reference(
  x: Arr,
  xl: Arr,
  w: Arr,
  bias: Arr | null,
  a: Arr,
  b: Arr,
  g: Arr,
  sharedInput: boolean,
): Reference {
  const base = mm(x, w, ROWS, OUT, IN, false, true);
  const h = mm(xl, a, ROWS, R, IN, false, true);
  const lora = mm(h, b, ROWS, OUT, R, false, true);
  const y = new Float64Array(ROWS * OUT);
  for (let i = 0; i < ROWS; i++)
    for (let j = 0; j < OUT; j++)
      y[i * OUT + j] = base[i * OUT + j] + S * lora[i * OUT + j] + (bias ? bias[j] : 0);
  const gB = mm(g, b, ROWS, R, OUT);
  const dxBase = mm(g, w, ROWS, IN, OUT);
  const dxl = mm(gB, a, ROWS, IN, R).map((v) => S * v);
  const dx = sharedInput ? dxBase.map((v, i) => v + dxl[i]) : dxBase;
  const dA = mm(gB, xl, R, IN, ROWS, true).map((v) => S * v);
  const dB = mm(g, h, OUT, R, ROWS, true).map((v) => S * v);
  const dbias = new Float64Array(OUT);
  for (let i = 0; i < ROWS; i++) for (let j = 0; j < OUT; j++) dbias[j] += g[i * OUT + j];
  return { y, dx, dxl, dA, dB, dbias };
}

function grad(t: Tensor, what: string): Float32Array {
  assert.ok(t.grad, `${what}: no gradient`);
  return t.grad.toFloat32();
}

for (const wType of ['f32', 'bf16'] as const)
  for (const withBias of [false, true])
    for (const withXLora of [false, true])
      test(`loraLinear matches float64: W ${wType}, ${withBias ? 'bias' : 'no bias'}, ${withXLora ? 'separate xLora' : 'x as LoRA input'}`, () => {
        tidy(() => {
          const x = leaf([ROWS, IN], 1, true);
          const xl = withXLora ? leaf([ROWS, IN], 2, true) : null;
          const w = leaf([OUT, IN], 3, false, wType, 0.2);
          const bias = withBias ? leaf([OUT], 4, true) : null;
          const A = leaf([R, IN], 5, true, 'f32', 0.3);
          const B = leaf([OUT, R], 6, true, 'f32', 0.3);
          const gv = randn(ROWS * OUT, 7);
          const y = loraLinear(x, w, bias, A, B, S, xl);
          assert.deepEqual(y.shape, [ROWS, OUT]);
          assert.equal(y.dtype, 'f32');
          const yv = y.toFloat32();
          backward(y, Tensor.from(gv, [ROWS, OUT]));
          const xv = x.toFloat32();
          const ref = reference(
            xv,
            xl ? xl.toFloat32() : xv,
            w.toFloat32(),
            bias ? bias.toFloat32() : null,
            A.toFloat32(),
            B.toFloat32(),
            gv,
            !xl,
          );
          assertClose(yv, ref.y, TOL, 'y');
          assertClose(grad(x, 'dx'), ref.dx, TOL, 'dx');
          if (xl) assertClose(grad(xl, 'dxLora'), ref.dxl, TOL, 'dxLora');
          assertClose(grad(A, 'dA'), ref.dA, TOL, 'dA');
          assertClose(grad(B, 'dB'), ref.dB, TOL, 'dB');
          if (bias) assertClose(grad(bias, 'dbias'), ref.dbias, TOL, 'dbias');
          for (const t of [A, B]) assert.equal(t.grad!.dtype, 'f32');
        });
      });

test('loraLinear takes leading batch dimensions: x [1, rows, in] gives y [1, rows, out]', () => {
  tidy(() => {
    const x = leaf([1, ROWS, IN], 1, false);
    const w = leaf([OUT, IN], 3, false, 'bf16', 0.2);
    const A = leaf([R, IN], 5, false, 'f32', 0.3);
    const B = leaf([OUT, R], 6, false, 'f32', 0.3);
    const y = loraLinear(x, w, null, A, B, S);
    assert.deepEqual(y.shape, [1, ROWS, OUT]);
    const xv = x.toFloat32();
    const ref = reference(
      xv,
      xv,
      w.toFloat32(),
      null,
      A.toFloat32(),
      B.toFloat32(),
      new Float64Array(ROWS * OUT),
      true,
    );
    assertClose(y.toFloat32(), ref.y, TOL, 'y');
  });
});

// The unfused layer on the same inputs: quantizedLinear + linear + linear + scale + add.
function composition(
  x: Tensor,
  qw: QuantizedWeight,
  bias: Tensor | null,
  A: Tensor,
  B: Tensor,
  xl: Tensor | null,
): Tensor {
  return add(quantizedLinear(x, qw, bias), scale(linear(linear(xl ?? x, A), B), S));
}

for (const withBias of [false, true])
  for (const withXLora of [false, true])
    test(`loraLinear with an NF4 W matches the unfused composition: ${withBias ? 'bias' : 'no bias'}, ${withXLora ? 'separate xLora' : 'x as LoRA input'}`, () => {
      tidy(() => {
        const dense = leaf([OUT, IN], 3, false, 'f32', 0.2);
        const qw = quantizeWeight(dense, { type: 'nf4', blocksize: 64 });
        try {
          const gv = randn(ROWS * OUT, 7);
          const run = (fused: boolean) => {
            const x = leaf([ROWS, IN], 1, true);
            const xl = withXLora ? leaf([ROWS, IN], 2, true) : null;
            const bias = withBias ? leaf([OUT], 4, true) : null;
            const A = leaf([R, IN], 5, true, 'f32', 0.3);
            const B = leaf([OUT, R], 6, true, 'f32', 0.3);
            const y = fused ? loraLinear(x, qw, bias, A, B, S, xl) : composition(x, qw, bias, A, B, xl);
            const yv = y.toFloat32();
            backward(y, Tensor.from(gv, [ROWS, OUT]));
            return {
              y: yv,
              dx: grad(x, 'dx'),
              dxl: xl ? grad(xl, 'dxLora') : null,
              dA: grad(A, 'dA'),
              dB: grad(B, 'dB'),
              dbias: bias ? grad(bias, 'dbias') : null,
            };
          };
          const want = run(false);
          const got = run(true);
          assertClose(got.y, want.y, TOL, 'y');
          assertClose(got.dx, want.dx, TOL, 'dx');
          if (want.dxl) assertClose(got.dxl!, want.dxl, TOL, 'dxLora');
          assertClose(got.dA, want.dA, TOL, 'dA');
          assertClose(got.dB, want.dB, TOL, 'dB');
          if (want.dbias) assertClose(got.dbias!, want.dbias, TOL, 'dbias');
        } finally {
          qw.dispose();
        }
      });
    });

test('loraLinear gives no gradient to inputs that do not need one', () => {
  tidy(() => {
    // A frozen input (x under a frozen embedding), a trainable adapter.
    const x = leaf([ROWS, IN], 1, false);
    const w = leaf([OUT, IN], 3, false, 'f32', 0.2);
    const bias = leaf([OUT], 4, false);
    const A = leaf([R, IN], 5, true, 'f32', 0.3);
    const B = leaf([OUT, R], 6, true, 'f32', 0.3);
    const gv = randn(ROWS * OUT, 7);
    const y = loraLinear(x, w, bias, A, B, S);
    backward(y, Tensor.from(gv, [ROWS, OUT]));
    assert.equal(x.grad, null);
    assert.equal(bias.grad, null);
    const xv = x.toFloat32();
    const ref = reference(xv, xv, w.toFloat32(), bias.toFloat32(), A.toFloat32(), B.toFloat32(), gv, true);
    assertClose(grad(A, 'dA'), ref.dA, TOL, 'dA');
    assertClose(grad(B, 'dB'), ref.dB, TOL, 'dB');

    // Only B trains: A gets nothing.
    A.grad?.dispose();
    A.grad = null;
    B.grad?.dispose();
    B.grad = null;
    A.requiresGrad = false;
    const y2 = loraLinear(x, w, bias, A, B, S);
    backward(y2, Tensor.from(gv, [ROWS, OUT]));
    assert.equal(A.grad, null);
    assertClose(grad(B, 'dB'), ref.dB, TOL, 'dB (B alone)');

    // Nothing requires grad, or grad is off: nothing is recorded.
    B.requiresGrad = false;
    assert.equal(loraLinear(x, w, bias, A, B, S).requiresGrad, false);
    B.requiresGrad = true;
    assert.equal(noGrad(() => loraLinear(x, w, bias, A, B, S)).requiresGrad, false);
  });
});

test('loraLinear rejects bad inputs with one clear error each', () => {
  tidy(() => {
    const x = leaf([ROWS, IN], 1, false);
    const w = leaf([OUT, IN], 3, false, 'bf16');
    const A = leaf([R, IN], 5, true);
    const B = leaf([OUT, R], 6, true);
    const bias = leaf([OUT], 4, false);
    const bad = (fn: () => unknown, re: RegExp): void => assert.throws(fn, re);
    bad(
      () => loraLinear(leaf([ROWS, IN + 1], 1, false), w, null, A, B, S),
      /loraLinear: x \[37, 92\] does not match w \[53, 91\]/,
    );
    bad(
      () => loraLinear(x, leaf([OUT, IN], 3, false, 'f32').reshape([OUT * IN]), null, A, B, S),
      /w must be 2-D/,
    );
    bad(() => loraLinear(x, w, leaf([OUT + 1], 4, false), A, B, S), /bias \[54\] does not match w/);
    bad(() => loraLinear(x, w, bias, leaf([R, IN - 1], 5, true), B, S), /A \[7, 90\] must be \[r, 91\]/);
    bad(() => loraLinear(x, w, bias, A, leaf([OUT, R + 1], 6, true), S), /B \[53, 8\] must be \[53, 7\]/);
    bad(() => loraLinear(x, w, bias, A, leaf([OUT - 1, R], 6, true), S), /B \[52, 7\] must be \[53, 7\]/);
    bad(
      () => loraLinear(x, w, bias, leaf([R, IN], 5, false, 'bf16'), B, S),
      /loraLinear: A must be f32, got bf16/,
    );
    bad(
      () => loraLinear(x, w, bias, A, leaf([OUT, R], 6, false, 'bf16'), S),
      /loraLinear: B must be f32, got bf16/,
    );
    bad(
      () => loraLinear(leaf([ROWS, IN], 1, false, 'bf16'), w, null, A, B, S),
      /loraLinear: x must be f32, got bf16/,
    );
    bad(
      () => loraLinear(x, w, leaf([OUT], 4, false, 'bf16'), A, B, S),
      /loraLinear: bias must be f32, got bf16/,
    );
    bad(
      () => loraLinear(x, w, bias, A, B, S, leaf([ROWS - 1, IN], 2, false)),
      /xLora \[36, 91\] must have x's shape \[37, 91\]/,
    );
    bad(() => loraLinear(x, w, bias, A, B, Number.NaN), /scale s must be a finite number/);
    const trainable = leaf([OUT, IN], 3, true);
    bad(
      () => loraLinear(x, trainable, bias, A, B, S),
      /requires grad; the base weight of a LoRA layer is frozen/,
    );
    const q = quantizeWeight(leaf([OUT, IN], 3, false), { type: 'nf4', blocksize: 64 });
    q.dispose();
    bad(() => loraLinear(x, q, bias, A, B, S), /the quantized weight was disposed/);
  });
});

// A Linear with a LoRA adapter: Linear.forward (fused) against the adapter's own, unfused forward.
function loraLayer(quantized: boolean, dropout: number): { layer: Linear; lora: LoraLinear } {
  const w = leaf([OUT, IN], 3, false, 'bf16', 0.2);
  const layer = new Linear(
    'model.layers.0.self_attn.q_proj',
    quantized ? quantizeWeight(w, { type: 'nf4', blocksize: 64 }) : w,
    null,
  );
  if (quantized) w.dispose();
  const lora = LoraLinear.create(layer, { ...LORA_DEFAULTS, r: R, alpha: 2 * R + 1, dropout }, 11);
  lora.B.as('f32').set(randn(OUT * R, 12, 0.3)); // PEFT starts B at zero; test a trained one
  layer.adapters.set('a', lora);
  return { layer, lora };
}

for (const quantized of [false, true])
  test(`LoraLinear: Linear.forward's fused path matches the unfused one (training with dropout, ${quantized ? 'NF4' : 'bf16'} base)`, () => {
    const { layer, lora } = loraLayer(quantized, 0.1);
    try {
      const ctx: ForwardContext = { adapter: 'a', training: true, seed: 1234 };
      const gv = randn(ROWS * OUT, 7);
      const run = (fused: boolean) =>
        tidy(() => {
          const x = leaf([ROWS, IN], 1, true);
          const seed = (ctx.seed ^ layer.seedSalt) >>> 0;
          const y = fused ? layer.forward(x, ctx) : lora.forward(x, layer.forwardBase(x), layer, ctx, seed);
          const yv = y.toFloat32();
          backward(y, Tensor.from(gv, [ROWS, OUT]));
          const out = { y: yv, dx: grad(x, 'dx'), dA: grad(lora.A, 'dA'), dB: grad(lora.B, 'dB') };
          for (const p of [lora.A, lora.B]) {
            p.grad!.dispose();
            p.grad = null;
          }
          return out;
        });
      const want = run(false);
      const got = run(true);
      for (const k of ['y', 'dx', 'dA', 'dB'] as const) assertClose(got[k], want[k], TOL, k);
      // Inference (no dropout): the same as the base plus the adapter.
      const yInf = tidy(() =>
        noGrad(() => {
          const x = leaf([ROWS, IN], 1, false);
          const f = layer.forward(x, { ...ctx, training: false }).toFloat32();
          const u = lora.forward(x, layer.forwardBase(x), layer, { ...ctx, training: false }, 0).toFloat32();
          return { f, u };
        }),
      );
      assertClose(yInf.f, yInf.u, TOL, 'inference y');
      assert.equal(loraScale(lora.config), (2 * R + 1) / R);
    } finally {
      layer.dispose();
    }
  });

test('LoraLinear with DoRA keeps its unfused path through Linear.forward', () => {
  const w = leaf([OUT, IN], 3, false, 'f32', 0.2);
  const layer = new Linear('model.layers.0.mlp.up_proj', w, null);
  const lora = LoraLinear.create(layer, { ...LORA_DEFAULTS, r: R, alpha: R, dropout: 0, useDora: true }, 11);
  lora.B.as('f32').set(randn(OUT * R, 12, 0.3));
  layer.adapters.set('a', lora);
  try {
    tidy(() => {
      const ctx: ForwardContext = { adapter: 'a', training: false, seed: 0 };
      const x = leaf([ROWS, IN], 1, false);
      const f = layer.forward(x, ctx).toFloat32();
      const u = lora.forward(x, layer.forwardBase(x), layer, ctx, 0).toFloat32();
      assert.deepEqual(f, u);
    });
  } finally {
    layer.dispose();
  }
});

// Counts CPU kernel calls (each one a launch on CUDA) while fn runs.
function countKernels(fn: () => void): Record<string, number> {
  const names: KernelName[] = [
    'gemm',
    'add',
    'mul',
    'axpy',
    'scale',
    'sumRows',
    'cast',
    'fill',
    'sumColumns',
    'dropout',
    'quantLinear',
    'quantLinearBackward',
  ];
  const counts: Record<string, number> = {};
  const originals = names.map((n) => [n, kernel('cpu', n)] as const);
  for (const [n, impl] of originals)
    registerKernel('cpu', n, ((...args: unknown[]) => {
      counts[n] = (counts[n] ?? 0) + 1;
      return (impl as (...a: unknown[]) => void)(...args);
    }) as never);
  try {
    fn();
  } finally {
    for (const [n, impl] of originals) registerKernel('cpu', n, impl as never);
  }
  return counts;
}

const total = (c: Record<string, number>): number => Object.values(c).reduce((a, b) => a + b, 0);

test('a LoRA layer is 3 kernel calls forward and 5 backward (unfused: 5, and 8 plus an accumulation)', (t) => {
  const { layer, lora } = loraLayer(false, 0);
  try {
    const ctx: ForwardContext = { adapter: 'a', training: true, seed: 1 };
    const measure = (fused: boolean) =>
      tidy(() => {
        const x = leaf([ROWS, IN], 1, true);
        const g = Tensor.from(randn(ROWS * OUT, 7), [ROWS, OUT]);
        let y: Tensor | null = null;
        const fwd = countKernels(() => {
          y = fused ? layer.forward(x, ctx) : lora.forward(x, layer.forwardBase(x), layer, ctx, 0);
        });
        const bwd = countKernels(() => backward(y!, g, true)); // g is donated: no copy of it
        for (const p of [lora.A, lora.B]) {
          p.grad!.dispose();
          p.grad = null;
        }
        return { fwd, bwd };
      });
    const before = measure(false);
    const after = measure(true);
    t.diagnostic(`unfused: forward ${JSON.stringify(before.fwd)}, backward ${JSON.stringify(before.bwd)}`);
    t.diagnostic(`fused:   forward ${JSON.stringify(after.fwd)}, backward ${JSON.stringify(after.bwd)}`);
    assert.deepEqual(after.fwd, { gemm: 3 });
    assert.deepEqual(after.bwd, { gemm: 5 });
    assert.ok(total(before.fwd) > total(after.fwd) && total(before.bwd) > total(after.bwd));
  } finally {
    layer.dispose();
  }
});

// Four layers on one input, unlike each other: LoRA on a dense f32 base with a bias, LoRA on an NF4
// base, a plain bf16 layer with a bias and no adapter, LoRA of another rank on a dense base.
function sharedLayers(): { layers: SharedInputLayer[]; params: Tensor[]; dispose: () => void } {
  const nf4Source = leaf([OUT + 2, IN], 21, false, 'f32', 0.2);
  const nf4 = quantizeWeight(nf4Source, { type: 'nf4', blocksize: 64, doubleQuant: true });
  nf4Source.dispose();
  const layers: SharedInputLayer[] = [
    {
      w: leaf([OUT, IN], 22, false, 'f32', 0.2),
      bias: leaf([OUT], 23, true),
      lora: { A: leaf([R, IN], 24, true, 'f32', 0.3), B: leaf([OUT, R], 25, true, 'f32', 0.3), s: S },
    },
    {
      w: nf4,
      bias: null,
      lora: { A: leaf([3, IN], 26, true, 'f32', 0.3), B: leaf([OUT + 2, 3], 27, true, 'f32', 0.3), s: 0.5 },
    },
    { w: leaf([OUT - 9, IN], 28, false, 'bf16', 0.2), bias: leaf([OUT - 9], 29, true), lora: null },
    {
      w: leaf([OUT + 5, IN], 30, false, 'f32', 0.2),
      bias: null,
      lora: { A: leaf([5, IN], 31, true, 'f32', 0.3), B: leaf([OUT + 5, 5], 32, true, 'f32', 0.3), s: 2 },
    },
  ];
  const params = layers.flatMap(({ bias, lora }) => [bias, lora?.A, lora?.B]).filter((t): t is Tensor => !!t);
  return { layers, params, dispose: () => layers.forEach(({ w }) => w.dispose()) };
}

for (const withXLora of [false, true])
  test(`loraLinears: layers sharing an input match the same layers one by one (${withXLora ? 'separate xLora' : 'x as LoRA input'})`, () => {
    const { layers, params, dispose } = sharedLayers();
    try {
      const run = (shared: boolean) =>
        tidy(() => {
          const x = leaf([3, ROWS, IN], 1, true);
          const xl = withXLora ? leaf([3, ROWS, IN], 2, true) : null;
          const ys = shared
            ? loraLinears(x, layers, xl)
            : layers.map(({ w, bias, lora }) =>
                lora
                  ? loraLinear(x, w, bias, lora.A, lora.B, lora.s, xl)
                  : w instanceof Tensor
                    ? linear(x, w, bias)
                    : quantizedLinear(x, w, bias),
              );
          // Σ_i Σ y_i·r_i: every output gets its own upstream gradient.
          let loss: Tensor | null = null;
          ys.forEach((y, i) => {
            const r = Tensor.from(randn(y.size, 40 + i), y.shape as number[]);
            const term = sum(mul(y, r));
            loss = loss ? add(loss, term) : term;
          });
          backward(loss!);
          const out = {
            ys: ys.map((y) => y.toFloat32()),
            dx: grad(x, 'dx'),
            dxl: xl ? grad(xl, 'dxl') : null,
            params: params.map((p, i) => grad(p, `parameter ${i}`)),
          };
          for (const p of params) {
            p.grad!.dispose();
            p.grad = null;
          }
          return out;
        });
      const want = run(false);
      const got = run(true);
      want.ys.forEach((y, i) => assertClose(got.ys[i], y, TOL, `y of layer ${i}`));
      assertClose(got.dx, want.dx, TOL, 'dx');
      if (want.dxl) assertClose(got.dxl!, want.dxl, TOL, 'dxl');
      want.params.forEach((g, i) => assertClose(got.params[i], g, TOL, `gradient of parameter ${i}`));
    } finally {
      dispose();
    }
  });

test('loraLinears: three LoRA layers are 7 GEMMs forward and 11 backward, with no gradient sums (one by one: 9 and 15 plus 2 sums)', (t) => {
  const ws = [OUT, OUT - 20, OUT - 20].map((out, i) => leaf([out, IN], 50 + i, false, 'bf16', 0.2));
  const layers = ws.map((w, i) => new Linear(`model.layers.0.self_attn.${'qkv'[i]}_proj`, w, null));
  const loras = layers.map((l, i) => {
    const lora = LoraLinear.create(l, { ...LORA_DEFAULTS, r: R, alpha: R, dropout: 0 }, 60 + i);
    lora.B.as('f32').set(randn(l.outFeatures * R, 70 + i, 0.3));
    l.adapters.set('a', lora);
    return lora;
  });
  try {
    const ctx: ForwardContext = { adapter: 'a', training: true, seed: 1 };
    const measure = (shared: boolean) =>
      tidy(() => {
        const x = leaf([ROWS, IN], 1, true);
        let ys: Tensor[] = [];
        const fwd = countKernels(() => {
          ys = shared ? forwardShared(layers, x, ctx) : layers.map((l) => l.forward(x, ctx));
        });
        const loss = tidy(() => sum(mul(ys[0], ys[0])));
        const loss2 = add(loss, add(sum(ys[1]), sum(ys[2])));
        const bwd = countKernels(() => backward(loss2));
        const dx = grad(x, 'dx');
        const dA = loras.map((l) => grad(l.A, 'dA'));
        for (const l of loras)
          for (const p of [l.A, l.B]) {
            p.grad!.dispose();
            p.grad = null;
          }
        return { fwd, bwd, dx, dA };
      });
    const one = measure(false);
    const shared = measure(true);
    t.diagnostic(`one by one: forward ${JSON.stringify(one.fwd)}, backward ${JSON.stringify(one.bwd)}`);
    t.diagnostic(`shared:     forward ${JSON.stringify(shared.fwd)}, backward ${JSON.stringify(shared.bwd)}`);
    assert.deepEqual(shared.fwd, { gemm: 7 });
    assert.equal(shared.bwd.gemm, 11);
    assert.equal(one.fwd.gemm, 9);
    assert.equal(one.bwd.gemm, 15);
    assert.equal(shared.bwd.axpy ?? 0, one.bwd.axpy - 2, 'the layers no longer sum their input gradients');
    assertClose(shared.dx, one.dx, TOL, 'dx');
    shared.dA.forEach((g, i) => assertClose(g, one.dA[i], TOL, `dA of layer ${i}`));
    // Dropout gives each layer its own mask: then they run one by one.
    const dropping = countKernels(() =>
      tidy(() => {
        for (const l of loras) (l.config as { dropout: number }).dropout = 0.1;
        try {
          forwardShared(layers, leaf([ROWS, IN], 1, false), ctx);
        } finally {
          for (const l of loras) (l.config as { dropout: number }).dropout = 0;
        }
      }),
    );
    assert.equal(dropping.dropout, 3);
  } finally {
    for (const l of layers) l.dispose();
  }
});

test('loraLinears refuses bad groups with one clear sentence', () => {
  const { layers, dispose } = sharedLayers();
  try {
    const x = leaf([ROWS, IN], 1, true);
    assert.throws(() => loraLinears(x, []), /loraLinear: needs at least one layer/);
    const narrow = { ...layers[2], w: leaf([OUT, IN - 1], 3, false) };
    assert.throws(
      () => loraLinears(x, [layers[0], narrow]),
      /loraLinear \(layer 1 of 2\): x \[37, 91\] does not match w \[53, 90\]/,
    );
    const badB = { ...layers[3], lora: { ...layers[3].lora!, B: leaf([OUT + 5, 4], 5, true) } };
    assert.throws(() => loraLinears(x, [layers[0], badB]), /layer 1 of 2\): B \[58, 4\] must be \[58, 5\]/);
  } finally {
    dispose();
  }
});
