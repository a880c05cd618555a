// Test utilities that run a model: fixture batches as examples, one training-mode loss, plain logits.
import { backward, noGrad } from '../src/autograd/tape.js';
import type { CausalLM } from '../src/models/llama.js';
import { scale } from '../src/ops/elementwise.js';
import { Tensor, tidy } from '../src/tensor/tensor.js';
import { padBatch, toDevice } from '../src/train/batching.js';
import type { Example } from '../src/train/data.js';
import { lossSum } from '../src/train/loss.js';

/** A reference script's padded batch {ids, mask, labels?} as unpadded examples (labels default to ids). */
export function fixtureExamples(b: { ids: number[][]; mask: number[][]; labels?: number[][] }): Example[] {
  return b.ids.map((row, i) => {
    const n = b.mask[i].reduce((a, m) => a + m, 0);
    return { ids: row.slice(0, n), labels: b.labels ? b.labels[i].slice(0, n) : row.slice(0, n) };
  });
}

/** Mean loss over the batch's targets (training mode); with backward, gradients accumulate into the adapter. */
export function stepLoss(model: CausalLM, examples: Example[], withBackward: boolean): number {
  const hb = padBatch(examples);
  return tidy(() => {
    const { batch, targets } = toDevice(hb);
    const total = lossSum(model, batch, targets, { ctx: { training: true } });
    const value = total.item() / hb.targetCount;
    if (withBackward) backward(scale(total, 1 / hb.targetCount));
    return value;
  });
}

/** Logits [B, T, V] (flattened) of equal-length rows, each its own sequence, without gradients. */
export function rowLogits(model: CausalLM, ids: number[][]): Float32Array {
  return noGrad(() =>
    tidy(() => {
      const B = ids.length;
      const T = ids[0].length;
      const batch = {
        ids: Tensor.from(ids.flat(), [B, T], 'i32'),
        positions: Tensor.from(
          ids.flatMap((r) => r.map((_, i) => i)),
          [B, T],
          'i32',
        ),
        segments: Tensor.from(new Array<number>(B * T).fill(1), [B, T], 'i32'),
      };
      return model.logits(batch).toFloat32();
    }),
  );
}
