import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cast } from '../src/ops/elementwise.js';
import { adamwStep, gradNormSquared, sgdStep } from '../src/ops/optim.js';
import { Tensor, tidy } from '../src/tensor/tensor.js';
import { assertClose, randn } from './helpers.js';

test('adamwStep matches torch.optim.AdamW formulas (float64 re-implementation) over several steps', () => {
  let seed = 1;
  for (const n of [1, 7, 33, 127, 40001])
    for (const weightDecay of [0, 0.1]) {
      const o = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay };
      const p0 = randn(n, seed++);
      const param = Tensor.from(p0, [n]);
      const m = Tensor.zeros([n]);
      const v = Tensor.zeros([n]);
      // torch (single-tensor AdamW): state starts at zero, step counts from 1
      const p = Float64Array.from(Float32Array.from(p0));
      const mr = new Float64Array(n);
      const vr = new Float64Array(n);
      for (let step = 1; step <= 5; step++) {
        const g32 = Float32Array.from(randn(n, seed++, 0.5));
        const grad = Tensor.from(g32, [n]);
        adamwStep([{ param, grad, m, v, copy: null }], { ...o, step });
        grad.dispose();
        const bc1 = 1 - o.beta1 ** step;
        const bc2 = 1 - o.beta2 ** step;
        for (let i = 0; i < n; i++) {
          p[i] *= 1 - o.lr * o.weightDecay;
          mr[i] += (1 - o.beta1) * (g32[i] - mr[i]);
          vr[i] = o.beta2 * vr[i] + (1 - o.beta2) * g32[i] * g32[i];
          const denom = Math.sqrt(vr[i]) / Math.sqrt(bc2) + o.eps;
          p[i] -= (o.lr / bc1) * (mr[i] / denom);
        }
        assertClose(param.toFloat32(), p, 1e-5, `param n ${n} wd ${weightDecay} step ${step}`);
        assertClose(m.toFloat32(), mr, 1e-5, `m n ${n} step ${step}`);
        assertClose(v.toFloat32(), vr, 1e-5, `v n ${n} step ${step}`);
      }
      // the total update itself, not just the parameters it is small against
      const moved = param.toFloat32().map((x, i) => x - Math.fround(p0[i]));
      assertClose(
        moved,
        Float64Array.from(p, (x, i) => x - Math.fround(p0[i])),
        1e-4,
        `update n ${n} wd ${weightDecay}`,
      );
      for (const t of [param, m, v]) t.dispose();
    }
});

test('sgdStep matches torch.optim.SGD (weight decay, momentum with a zero-initialized buffer)', () => {
  let seed = 100;
  for (const n of [1, 7, 127, 40001])
    for (const [momentum, weightDecay] of [
      [0, 0],
      [0, 0.01],
      [0.9, 0],
      [0.9, 0.05],
    ]) {
      const p0 = randn(n, seed++);
      const param = Tensor.from(p0, [n]);
      const buf = momentum ? Tensor.zeros([n]) : undefined;
      const p = Float64Array.from(Float32Array.from(p0));
      let bufRef: Float64Array | null = null; // torch: None until the first step
      for (let step = 1; step <= 4; step++) {
        const g32 = Float32Array.from(randn(n, seed++));
        const grad = Tensor.from(g32, [n]);
        sgdStep(param, grad, { lr: 0.05, weightDecay, momentum, buf });
        grad.dispose();
        const d = Float64Array.from(g32, (g, i) => g + weightDecay * p[i]);
        let upd: Float64Array = d;
        if (momentum) {
          if (bufRef === null) bufRef = Float64Array.from(d);
          else for (let i = 0; i < n; i++) bufRef[i] = momentum * bufRef[i] + d[i];
          upd = bufRef;
        }
        for (let i = 0; i < n; i++) p[i] -= 0.05 * upd[i];
        assertClose(
          param.toFloat32(),
          p,
          1e-5,
          `sgd n ${n} momentum ${momentum} wd ${weightDecay} step ${step}`,
        );
        if (buf && bufRef) assertClose(buf.toFloat32(), bufRef, 1e-5, 'momentum buffer');
      }
      param.dispose();
      buf?.dispose();
    }
});

test('gradNormSquared accumulates Σ x² in double', async () => {
  let seed = 200;
  for (const n of [1, 7, 33, 100003]) {
    const x32 = Float32Array.from(randn(n, seed++, 3));
    const t = Tensor.from(x32, [n]);
    let ref = 0;
    for (const v of x32) ref += v * v;
    const got = await gradNormSquared(t);
    assert.ok(Math.abs(got - ref) / ref < 1e-12, `n ${n}: ${got} vs ${ref}`);
    t.dispose();
  }
  // Several tensors at once: the sum of their sums (how clipping asks, one read-back per step).
  const parts = [3, 50, 1001].map((n, i) => Tensor.from(randn(n, 300 + i, 2), [n]));
  let each = 0;
  for (const t of parts) each += await gradNormSquared(t);
  const all = await gradNormSquared(parts);
  assert.ok(Math.abs(all - each) / each < 1e-12, `${all} vs ${each}`);
  assert.equal(await gradNormSquared([]), 0);
  parts.forEach((t) => t.dispose());
});

test('optimizer steps reject mismatched state and bad hyperparameters with clear errors', async () => {
  tidy(() => {
    const p = Tensor.from(randn(7, 1), [7]);
    const g = Tensor.from(randn(7, 2), [7]);
    const z = (): Tensor => Tensor.zeros([7]);
    const o = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 };
    assert.throws(
      () => adamwStep([{ param: p, grad: Tensor.zeros([6]), m: z(), v: z(), copy: null }], o),
      /lorakit: adamwStep: grad has 6 elements but the parameter has 7/,
    );
    assert.throws(
      () => adamwStep([{ param: p, grad: g, m: z(), v: Tensor.zeros([7], 'bf16'), copy: null }], o),
      /lorakit: adamwStep: v must be f32, got bf16/,
    );
    assert.throws(
      () => adamwStep([{ param: p, grad: g, m: z(), v: z(), copy: null }], { ...o, step: 0 }),
      /lorakit: adamwStep: step must be an integer ≥ 1, got 0/,
    );
    assert.throws(
      () => adamwStep([{ param: p, grad: g, m: z(), v: z(), copy: null }], { ...o, lr: NaN }),
      /lorakit: adamwStep: lr must be a finite number/,
    );
    assert.throws(
      () => adamwStep([{ param: p, grad: g, m: z(), v: z(), copy: null }], { ...o, beta2: 1 }),
      /lorakit: adamwStep: betas must be in \[0, 1\)/,
    );
    assert.throws(
      () => sgdStep(p, g, { lr: 0.1, weightDecay: 0, momentum: 0.9 }),
      /lorakit: sgdStep: momentum needs a momentum buffer/,
    );
    assert.throws(
      () => sgdStep(p, g, { lr: 0.1, weightDecay: 0, momentum: 0.9, buf: Tensor.zeros([3]) }),
      /lorakit: sgdStep: buf has 3 elements/,
    );
  });
  const ints = Tensor.from([1, 2], [2], 'i32');
  await assert.rejects(() => gradNormSquared(ints), /lorakit: gradNormSquared: t must be f32, got i32/);
  ints.dispose();
});

test('AdamW updates several tensors in one call and rewrites their bf16 compute copies', () => {
  tidy(() => {
    const o = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 };
    const sizes = [5, 33, 129];
    const run = (withCopies: boolean) =>
      sizes.map((n, i) => {
        const param = Tensor.from(randn(n, 10 + i), [n]);
        const slot = {
          param,
          grad: Tensor.from(randn(n, 20 + i), [n]),
          m: Tensor.zeros([n]),
          v: Tensor.zeros([n]),
          copy: withCopies ? Tensor.zeros([n], 'bf16') : null,
        };
        return slot;
      });
    const together = run(true);
    adamwStep(together, o);
    for (const one of run(false)) {
      adamwStep([one], o);
      const same = together.find((t) => t.param.size === one.param.size)!;
      assert.deepEqual(same.param.toFloat32(), one.param.toFloat32(), 'one call per tensor or one for all');
      assert.deepEqual(same.copy!.toFloat32(), cast(one.param, 'bf16').toFloat32(), 'the copy is bf16(p)');
    }
    assert.throws(
      () => adamwStep([{ ...together[0], copy: Tensor.zeros([5]) }], o),
      /lorakit: adamwStep: copy must be bf16, got f32/,
    );
  });
});

test('a compute copy is dropped when the tensor is written', () => {
  const t = Tensor.from([1, 2, 3], [3]);
  t.computeCopy = cast(t, 'bf16');
  t.copyFrom(Tensor.from([4, 5, 6], [3]));
  assert.equal(t.computeCopy, null);
  t.computeCopy = cast(t, 'bf16');
  const c = t.computeCopy;
  t.dispose();
  assert.ok(c.disposed, 'disposing the tensor frees its copy');
});

test('an optimizer step that does not rewrite a compute copy drops it', () => {
  tidy(() => {
    const o = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 };
    const param = Tensor.from(randn(9, 1), [9]);
    const grad = Tensor.from(randn(9, 2), [9]);
    param.computeCopy = cast(param, 'bf16');
    adamwStep([{ param, grad, m: Tensor.zeros([9]), v: Tensor.zeros([9]), copy: null }], o);
    assert.equal(param.computeCopy, null, 'AdamW without the copy');
    param.computeCopy = cast(param, 'bf16');
    sgdStep(param, grad, { lr: 0.1, weightDecay: 0 });
    assert.equal(param.computeCopy, null, 'SGD');
  });
});
