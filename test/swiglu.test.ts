import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backward } from '../src/autograd/tape.js';
import { swiglu } from '../src/ops/swiglu.js';
import { memoryStats, Tensor, tidy } from '../src/tensor/tensor.js';
import { assertClose, randn } from './helpers.js';

const sigmoid = (g: number): number => 1 / (1 + Math.exp(-g));

function check(
  shape: number[],
  gate64: ArrayLike<number>,
  up64: ArrayLike<number>,
  dy64: ArrayLike<number>,
  what: string,
): void {
  const g32 = Float32Array.from(gate64);
  const u32 = Float32Array.from(up64);
  const dy32 = Float32Array.from(dy64);
  const gate = Tensor.from(g32, shape);
  const up = Tensor.from(u32, shape);
  gate.requiresGrad = true;
  up.requiresGrad = true;
  tidy(() => {
    const out = swiglu(gate, up);
    assert.deepEqual(out.shape, shape);
    assertClose(
      out.toFloat32(),
      Float64Array.from(g32, (g, i) => g * sigmoid(g) * u32[i]),
      1e-6,
      `${what} forward`,
    );
    backward(out, Tensor.from(dy32, shape));
  });
  const dgate = Float64Array.from(g32, (g, i) => {
    const s = sigmoid(g);
    return dy32[i] * u32[i] * s * (1 + g * (1 - s));
  });
  const dup = Float64Array.from(g32, (g, i) => dy32[i] * g * sigmoid(g));
  assertClose(gate.grad!.toFloat32(), dgate, 1e-6, `${what} dgate`);
  assertClose(up.grad!.toFloat32(), dup, 1e-6, `${what} dup`);
  gate.dispose();
  up.dispose();
}

test('swiglu forward and backward against float64 on odd sizes', () => {
  let seed = 1;
  for (const shape of [[1], [7], [7, 33], [127, 127], [3, 4097]]) {
    const n = shape.reduce((a, b) => a * b, 1);
    check(shape, randn(n, seed++, 3), randn(n, seed++), randn(n, seed++), `shape [${shape}]`);
  }
});

test('swiglu stays finite and accurate for large |gate| (exp range limits)', () => {
  const gate = [-120, -90, -88, -40, -20, -1e-3, 0.5, 20, 40, 88, 90, 120, -7.5, 7.5, 1e-30, -3];
  const up = gate.map((_, i) => 0.5 + i / 7);
  const dy = gate.map((_, i) => 1 - i / 11);
  check([gate.length], gate, up, dy, 'extremes');
  // NaN propagates instead of being clamped away
  tidy(() => {
    const out = swiglu(Tensor.from([NaN, 1], [2]), Tensor.from([1, 1], [2])).toFloat32();
    assert.ok(Number.isNaN(out[0]));
  });
});

test('swiglu computes only the gradients that are needed', () => {
  const n = 33;
  const g32 = Float32Array.from(randn(n, 40));
  const u32 = Float32Array.from(randn(n, 41));
  const gate = Tensor.from(g32, [n]);
  const up = Tensor.from(u32, [n]);
  up.requiresGrad = true;
  tidy(() => backward(swiglu(gate, up), Tensor.from(randn(n, 42), [n])));
  assert.equal(gate.grad, null);
  assert.ok(up.grad);
  gate.dispose();
  up.dispose();
});

test('swiglu rejects bad inputs with clear errors', () => {
  tidy(() => {
    const a = Tensor.from(randn(21, 1), [3, 7]);
    assert.throws(
      () => swiglu(a, Tensor.from(randn(21, 2), [7, 3])),
      /lorakit: swiglu: gate \[3, 7\] and up \[7, 3\] must have the same shape/,
    );
    assert.throws(() => swiglu(a, Tensor.from(randn(21, 2), [21])), /must have the same shape/);
    assert.throws(
      () => swiglu(a, Tensor.from(randn(21, 2), [3, 7], 'bf16')),
      /lorakit: swiglu: up must be f32, got bf16/,
    );
  });
});

test('swiglu training steps do not grow native memory', () => {
  const gate = Tensor.from(randn(64, 50), [4, 16]);
  const up = Tensor.from(randn(64, 51), [4, 16]);
  gate.requiresGrad = up.requiresGrad = true;
  const step = (): void => tidy(() => backward(swiglu(gate, up), Tensor.from(randn(64, 52), [4, 16])));
  step();
  const before = memoryStats().liveBytes;
  for (let i = 0; i < 5; i++) step();
  assert.equal(memoryStats().liveBytes, before);
  gate.dispose();
  up.dispose();
});
