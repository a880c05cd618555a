import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backward, noGrad } from '../src/autograd/tape.js';
import { rmsnorm } from '../src/ops/rmsnorm.js';
import { memoryStats, Tensor, tidy } from '../src/tensor/tensor.js';
import { assertClose, randn } from './helpers.js';

// float64 reference forward: y = x / sqrt(mean(x²) + eps) · w
function forwardRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  rows: number,
  D: number,
  eps: number,
): Float64Array {
  const y = new Float64Array(rows * D);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let d = 0; d < D; d++) ss += x[r * D + d] ** 2;
    const s = 1 / Math.sqrt(ss / D + eps);
    for (let d = 0; d < D; d++) y[r * D + d] = x[r * D + d] * s * w[d];
  }
  return y;
}

// float64 reference backward for upstream gradient dy
function backwardRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  dy: ArrayLike<number>,
  rows: number,
  D: number,
  eps: number,
): { dx: Float64Array; dw: Float64Array } {
  const dx = new Float64Array(rows * D);
  const dw = new Float64Array(D);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let d = 0; d < D; d++) ss += x[r * D + d] ** 2;
    const s = 1 / Math.sqrt(ss / D + eps);
    let dot = 0;
    for (let d = 0; d < D; d++) dot += w[d] * dy[r * D + d] * x[r * D + d] * s;
    for (let d = 0; d < D; d++) {
      const xhat = x[r * D + d] * s;
      dx[r * D + d] = s * (w[d] * dy[r * D + d] - (xhat * dot) / D);
      dw[d] += dy[r * D + d] * xhat;
    }
  }
  return { dx, dw };
}

test('the float64 backward reference agrees with finite differences of the forward', () => {
  const rows = 3;
  const D = 5;
  const eps = 1e-5;
  const x = randn(rows * D, 1);
  const w = randn(D, 2);
  const dy = randn(rows * D, 3);
  const loss = (xx: ArrayLike<number>, ww: ArrayLike<number>): number =>
    forwardRef(xx, ww, rows, D, eps).reduce((s, v, i) => s + v * dy[i], 0);
  const { dx, dw } = backwardRef(x, w, dy, rows, D, eps);
  const h = 1e-6;
  for (let i = 0; i < x.length; i++) {
    const xp = Float64Array.from(x);
    const xm = Float64Array.from(x);
    xp[i] += h;
    xm[i] -= h;
    assert.ok(Math.abs((loss(xp, w) - loss(xm, w)) / (2 * h) - dx[i]) < 1e-6);
  }
  for (let i = 0; i < D; i++) {
    const wp = Float64Array.from(w);
    const wm = Float64Array.from(w);
    wp[i] += h;
    wm[i] -= h;
    assert.ok(Math.abs((loss(x, wp) - loss(x, wm)) / (2 * h) - dw[i]) < 1e-6);
  }
});

test('rmsnorm forward and backward against float64 on odd sizes', () => {
  let seed = 100;
  for (const rows of [1, 7, 127])
    for (const D of [1, 7, 33, 127, 256]) {
      // With D = 1 the output is ±w and dx cancels to O(eps): a large eps keeps that case well conditioned.
      const eps = D === 1 ? 0.5 : 1e-5;
      const x32 = Float32Array.from(randn(rows * D, seed++, 2));
      const w32 = Float32Array.from(randn(D, seed++));
      const dy32 = Float32Array.from(randn(rows * D, seed++));
      // a leading batch dim when rows allows it, to check any [..., D] works
      const shape = rows === 127 ? [rows, D] : [1, rows, D];
      const x = Tensor.from(x32, shape);
      const w = Tensor.from(w32, [D]);
      x.requiresGrad = true;
      w.requiresGrad = true;
      tidy(() => {
        const y = rmsnorm(x, w, eps);
        assert.deepEqual(y.shape, shape);
        assertClose(y.toFloat32(), forwardRef(x32, w32, rows, D, eps), 1e-5, `forward rows ${rows} D ${D}`);
        backward(y, Tensor.from(dy32, shape));
      });
      const ref = backwardRef(x32, w32, dy32, rows, D, eps);
      assertClose(x.grad!.toFloat32(), ref.dx, 1e-4, `dx rows ${rows} D ${D}`);
      assertClose(w.grad!.toFloat32(), ref.dw, 1e-5, `dweight rows ${rows} D ${D}`);
      x.dispose();
      w.dispose();
    }
});

test('rmsnorm computes only the gradients that are needed', () => {
  const rows = 7;
  const D = 33;
  const x32 = Float32Array.from(randn(rows * D, 7));
  const w32 = Float32Array.from(randn(D, 8));
  const dy32 = Float32Array.from(randn(rows * D, 9));
  const ref = backwardRef(x32, w32, dy32, rows, D, 1e-6);
  // frozen weight: dx only
  const x = Tensor.from(x32, [rows, D]);
  const w = Tensor.from(w32, [D]);
  x.requiresGrad = true;
  tidy(() => backward(rmsnorm(x, w, 1e-6), Tensor.from(dy32, [rows, D])));
  assertClose(x.grad!.toFloat32(), ref.dx, 1e-4, 'dx only');
  assert.equal(w.grad, null);
  // frozen input: dweight only
  const x2 = Tensor.from(x32, [rows, D]);
  const w2 = Tensor.from(w32, [D]);
  w2.requiresGrad = true;
  tidy(() => backward(rmsnorm(x2, w2, 1e-6), Tensor.from(dy32, [rows, D])));
  assertClose(w2.grad!.toFloat32(), ref.dw, 1e-5, 'dweight only');
  assert.equal(x2.grad, null);
  for (const t of [x, w, x2, w2]) t.dispose();
});

test('rmsnorm rejects bad inputs with clear errors', () => {
  tidy(() => {
    const x = Tensor.from(randn(21, 3), [3, 7]);
    assert.throws(
      () => rmsnorm(x, Tensor.from(randn(6, 4), [6]), 1e-5),
      /lorakit: rmsnorm: weight \[6\] does not match the last dimension of x \[3, 7\]/,
    );
    assert.throws(
      () => rmsnorm(x, Tensor.from(randn(7, 4), [1, 7]), 1e-5),
      /lorakit: rmsnorm: weight \[1, 7\] does not match/,
    );
    assert.throws(
      () => rmsnorm(Tensor.from(randn(21, 3), [3, 7], 'bf16'), Tensor.from(randn(7, 4), [7]), 1e-5),
      /lorakit: rmsnorm: x must be f32, got bf16/,
    );
    assert.throws(
      () => rmsnorm(x, Tensor.from(randn(7, 4), [7]), -1),
      /lorakit: rmsnorm: eps must be a finite number/,
    );
  });
});

test('rmsnorm training steps do not grow native memory (rstd is freed with the tape)', () => {
  const x = Tensor.from(randn(5 * 16, 11), [5, 16]);
  const w = Tensor.from(randn(16, 12), [16]);
  x.requiresGrad = true;
  w.requiresGrad = true;
  const step = (): void => tidy(() => backward(rmsnorm(x, w, 1e-5), Tensor.from(randn(80, 13), [5, 16])));
  step();
  const before = memoryStats().liveBytes;
  for (let i = 0; i < 5; i++) step();
  // inference (no tape) frees rstd at once
  noGrad(() =>
    tidy(() => {
      rmsnorm(Tensor.from(randn(80, 14), [5, 16]), w, 1e-5);
    }),
  );
  assert.equal(memoryStats().liveBytes, before);
  x.dispose();
  w.dispose();
});
