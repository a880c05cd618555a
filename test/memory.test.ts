// Native memory ownership: explicit frees are immediate, the garbage collector's late finalizers never
// touch memory that has since been handed to a new tensor, repeated work does not grow memory, and a
// view spanning adjacent row blocks keeps their memory.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { memoryStats, Tensor } from '../src/tensor/tensor.js';
import { randn } from './helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

test('a late finalizer does not free a reused address', async () => {
  const base = memoryStats().liveBytes;
  for (const n of [7, 1 << 18]) {
    // Small sizes come from malloc, large ones from the reuse cache: both hand the address out again.
    const a = Tensor.empty([n]);
    a.dispose();
    const b = Tensor.empty([n]);
    b.as('f32').fill(7);
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((r) => setImmediate(r));
    }
    assert.ok(memoryStats().liveBytes > base, 'the new tensor is still accounted live');
    assert.equal(b.as('f32')[n - 1], 7);
    b.dispose();
    assert.equal(memoryStats().liveBytes, base);
  }
});

test('empty tensors are freed too', () => {
  const base = memoryStats().liveBytes;
  Tensor.empty([0, 3]).dispose();
  assert.equal(memoryStats().liveBytes, base);
});

test('disposed tensors refuse use', () => {
  const t = Tensor.zeros([3]);
  t.dispose();
  assert.throws(() => t.data(), /used after dispose/);
});

test('spanRows joins adjacent row blocks of one tensor into one view, and nothing else', () => {
  const t = Tensor.from(randn(6 * 5, 1), [6, 5]);
  const parts = [t.sliceRows(0, 2), t.sliceRows(2, 3), t.sliceRows(3, 6)];
  const span = Tensor.spanRows(parts)!;
  assert.deepEqual(span.shape, [6, 5]);
  assert.deepEqual(span.toFloat32(), t.toFloat32());
  assert.equal(Tensor.spanRows([parts[0], parts[2]]), null, 'a gap');
  assert.equal(Tensor.spanRows([parts[1], parts[0]]), null, 'out of order');
  const other = Tensor.from(randn(5, 2), [1, 5]);
  assert.equal(Tensor.spanRows([parts[2], other]), null, 'another storage');
  // The view keeps the memory: the parts and the source can go first.
  for (const p of [...parts, t, other]) p.dispose();
  assert.equal(span.toFloat32().length, 30);
  span.dispose();
});
