import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backward } from '../src/autograd/tape.js';
import { traceKernels } from '../src/backend/kernels.js';
import { add, mul, scale, sum } from '../src/ops/elementwise.js';
import { memoryStats, Tensor, tidy } from '../src/tensor/tensor.js';
import { assertClose, randn } from './helpers.js';

test('add/mul broadcast forward and backward against float64', () => {
  for (const [rows, cols] of [
    [1, 1],
    [7, 33],
    [127, 7],
  ]) {
    const a64 = randn(rows * cols, 1);
    const b64 = randn(cols, 2);
    const a = Tensor.from(a64, [rows, cols]);
    const b = Tensor.from(b64, [cols]);
    a.requiresGrad = b.requiresGrad = true;
    tidy(() => {
      const y = sum(mul(add(a, b), scale(a, 0.5)));
      // y = sum((a + b) * 0.5 a); dy/da = 0.5 a + 0.5 (a + b) = a + 0.5 b; dy/db = sum_rows 0.5 a
      let ref = 0;
      for (let i = 0; i < a64.length; i++) ref += (a64[i] + b64[i % cols]) * 0.5 * a64[i];
      assertClose([y.item()], [ref], 1e-5, 'forward');
      backward(y);
    });
    const ga = a64.map((v, i) => v + 0.5 * b64[i % cols]);
    const gb = new Float64Array(cols);
    for (let i = 0; i < a64.length; i++) gb[i % cols] += 0.5 * a64[i];
    assertClose(a.grad!.toFloat32(), ga, 1e-5, 'grad a');
    assertClose(b.grad!.toFloat32(), gb, 1e-5, 'grad b');
    a.dispose();
    b.dispose();
  }
});

test('repeated steps do not grow native memory', () => {
  const w = Tensor.from(randn(4096, 3), [64, 64]);
  w.requiresGrad = true;
  const step = () =>
    tidy(() => {
      const y = sum(mul(w, w));
      backward(y);
    });
  step();
  const before = memoryStats().liveBytes;
  for (let i = 0; i < 20; i++) step();
  assert.equal(memoryStats().liveBytes, before);
  w.dispose();
  assert.equal(memoryStats().liveBytes, 0);
});

test('reshape views pass gradients back to their source', () => {
  const a = Tensor.from(randn(12, 4), [3, 4]);
  a.requiresGrad = true;
  tidy(() => backward(sum(mul(scale(a, 2).reshape([2, 6]), Tensor.from(randn(6, 5), [6])))));
  const b = randn(6, 5);
  const want = Array.from({ length: 12 }, (_, i) => 2 * b[i % 6]);
  assertClose(a.grad!.toFloat32(), want, 1e-6, 'grad through reshape');
  a.dispose();
});

test('a kernel tracer sees each kernel call once, after it is set and until it is removed', () => {
  const a = Tensor.from([1, 2, 3], [3]);
  const seen: string[] = [];
  let open = 0;
  traceKernels('cpu', (name) => {
    seen.push(name);
    open++;
    return () => open--;
  });
  try {
    const y = mul(add(a, a), a);
    assert.deepEqual(Array.from(y.toFloat32()), [2, 8, 18]);
    y.dispose();
  } finally {
    traceKernels('cpu', null);
  }
  assert.deepEqual(seen, ['add', 'mul']);
  assert.equal(open, 0, 'every call was closed');
  add(a, a).dispose();
  assert.equal(seen.length, 2, 'removed tracers see nothing');
  a.dispose();
});
