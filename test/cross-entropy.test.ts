import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backward } from '../src/autograd/tape.js';
import { linearCrossEntropy } from '../src/ops/linear-cross-entropy.js';
import { crossEntropy, crossEntropyRows } from '../src/ops/cross-entropy.js';
import { memoryStats, Tensor, tidy } from '../src/tensor/tensor.js';
import { assertClose, randn, rng } from './helpers.js';

// float64 reference: per-row −log softmax[target] (0 if ignored) and dlogits for loss gradient g
function reference(
  logits: Float32Array,
  targets: Int32Array,
  N: number,
  V: number,
  g: number,
): { rows: Float64Array; loss: number; dlogits: Float64Array } {
  const rows = new Float64Array(N);
  const dlogits = new Float64Array(N * V);
  let loss = 0;
  for (let n = 0; n < N; n++) {
    if (targets[n] === -100) continue;
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, logits[n * V + v]);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logits[n * V + v] - m);
    const lse = m + Math.log(s);
    rows[n] = lse - logits[n * V + targets[n]];
    loss += rows[n];
    for (let v = 0; v < V; v++)
      dlogits[n * V + v] = g * (Math.exp(logits[n * V + v] - lse) - (v === targets[n] ? 1 : 0));
  }
  return { rows, loss, dlogits };
}

function randomTargets(N: number, V: number, seed: number, ignoreRate = 0.2): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: N }, () => (r() < ignoreRate ? -100 : Math.floor(r() * V)));
}

function check(
  N: number,
  V: number,
  logits32: Float32Array,
  targets32: Int32Array,
  g: number,
  what: string,
): void {
  const logits = Tensor.from(logits32, [N, V]);
  const targets = Tensor.from(targets32, [N], 'i32');
  logits.requiresGrad = true;
  const ref = reference(logits32, targets32, N, V, g);
  tidy(() => {
    const loss = crossEntropy(logits, targets);
    assert.deepEqual(loss.shape, []);
    assertClose([loss.item()], [ref.loss], 1e-5, `${what} loss`);
    backward(loss, Tensor.scalar(g));
  });
  assertClose(logits.grad!.toFloat32(), ref.dlogits, 1e-5, `${what} dlogits`);
  assertClose(crossEntropyRows(logits, targets), ref.rows, 1e-5, `${what} rows`);
  logits.dispose();
  targets.dispose();
}

test('crossEntropy forward (sum over kept rows) and backward against float64 on odd sizes', () => {
  let seed = 1;
  for (const N of [1, 7, 127])
    for (const V of [1, 7, 513]) {
      const targets = randomTargets(N, V, seed++);
      if (N === 1) targets[0] = V - 1; // keep the single row
      check(N, V, Float32Array.from(randn(N * V, seed++, 3)), targets, 0.37, `N ${N} V ${V}`);
    }
});

test('crossEntropy on vocabularies ending in a partial vector or block tail matches float64', () => {
  // 15, 17: one partial vector after none or one whole one on every path; 527, 1031: a block of 512
  // then a tail of 15 (one lane short of AVX-512's 16) or 7 (AVX2's 8); 4099: 8 blocks then 3.
  let seed = 200;
  for (const V of [15, 17, 527, 1031, 4099]) {
    const N = 5;
    const targets = randomTargets(N, V, seed++, 0.2);
    targets[0] = V - 1; // the last logit, inside the tail
    check(N, V, Float32Array.from(randn(N * V, seed++, 3)), targets, 0.37, `N ${N} V ${V}`);
  }
});

test('crossEntropy is stable for large logits and a vocabulary spanning many blocks', () => {
  const N = 3;
  const V = 32003;
  const logits = Float32Array.from(randn(N * V, 50, 4));
  // row 0: offset far from zero; row 1: rising ramp so the running max keeps moving; row 2: one huge logit
  for (let v = 0; v < V; v++) {
    logits[v] += 1000;
    logits[V + v] += (v / V) * 60;
  }
  logits[2 * V + 31000] = 80;
  check(N, V, logits, Int32Array.from([5, V - 1, 31000]), 1, 'large');
});

test('crossEntropy ignores rows with target −100 (zero loss, zero gradient)', () => {
  const N = 7;
  const V = 33;
  const logits32 = Float32Array.from(randn(N * V, 60));
  check(N, V, logits32, new Int32Array(N).fill(-100), 1, 'all ignored');
  const logits = Tensor.from(logits32, [N, V]);
  logits.requiresGrad = true;
  tidy(() => {
    const loss = crossEntropy(logits, Tensor.from(new Int32Array(N).fill(-100), [N], 'i32'));
    assert.equal(loss.item(), 0);
    backward(loss);
  });
  assert.ok(logits.grad!.toFloat32().every((v) => v === 0));
  logits.dispose();
});

test('crossEntropy rejects bad targets and shapes with clear errors', () => {
  tidy(() => {
    const logits = Tensor.from(randn(3 * 7, 70), [3, 7]);
    assert.throws(
      () => crossEntropy(logits, Tensor.from([0, 7, 1], [3], 'i32')),
      /^Error: lorakit: crossEntropy: target 7 at row 1 is out of range for a vocabulary of 7 \(use -100 to ignore a row\)\.$/,
    );
    assert.throws(
      () => crossEntropy(logits, Tensor.from([0, -1, 1], [3], 'i32')),
      /target -1 at row 1 is out of range/,
    );
    // The fused head + loss checks the same way, with its own name.
    const w = Tensor.from(randn(7 * 4, 71), [7, 4]);
    const h = Tensor.from(randn(3 * 4, 72), [3, 4]);
    assert.throws(
      () => linearCrossEntropy(h, w, Tensor.from([0, 7, -100], [3], 'i32')),
      /^Error: lorakit: linearCrossEntropy: target 7 at row 1 is out of range for a vocabulary of 7 \(use -100 to ignore a row\)\.$/,
    );
    assert.throws(
      () => crossEntropyRows(logits, Tensor.from([0, -101, 1], [3], 'i32')),
      /lorakit: crossEntropyRows: target -101/,
    );
    assert.throws(
      () => crossEntropy(logits, Tensor.from([0, 1], [2], 'i32')),
      /lorakit: crossEntropy: targets has shape \[2\], expected \[3\]/,
    );
    assert.throws(
      () => crossEntropy(logits, Tensor.from([0, 1, 2], [3])),
      /lorakit: crossEntropy: targets must be i32, got f32/,
    );
    assert.throws(
      () => crossEntropy(logits.reshape([1, 3, 7]), Tensor.from([0, 1, 2], [3], 'i32')),
      /lorakit: crossEntropy: logits must be \[rows, vocab\], got \[1, 3, 7\]/,
    );
    assert.throws(
      () => crossEntropy(Tensor.from([], [3, 0]), Tensor.from([0, 1, 2], [3], 'i32')),
      /lorakit: crossEntropy: the vocabulary is empty/,
    );
  });
});

test('crossEntropy training steps do not grow native memory (lse is freed with the tape)', () => {
  const logits = Tensor.from(randn(5 * 40, 80), [5, 40]);
  logits.requiresGrad = true;
  const targets = Tensor.from([1, -100, 3, 39, 0], [5], 'i32');
  const step = (): void => tidy(() => backward(crossEntropy(logits, targets)));
  step();
  const before = memoryStats().liveBytes;
  for (let i = 0; i < 5; i++) step();
  crossEntropyRows(logits, targets);
  assert.equal(memoryStats().liveBytes, before);
  logits.dispose();
  targets.dispose();
});
