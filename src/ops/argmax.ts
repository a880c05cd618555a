// The greedy pick of every row of logits, on the logits' device (not differentiable).
import { kernel } from '../backend/kernels.js';
import { shapeString, Tensor } from '../tensor/tensor.js';
import { expectFloat } from './util.js';

/** x [..., V] -> i32 [...]: each row's first largest index (argmaxFirst's answer). */
export function argmaxRows(x: Tensor): Tensor {
  expectFloat('argmaxRows', 'x', x);
  const V = x.shape.at(-1) ?? 0;
  if (x.shape.length === 0 || V < 1)
    throw new Error(`lorakit: argmaxRows needs rows of at least one value, got ${shapeString(x.shape)}.`);
  const out = Tensor.empty(x.shape.slice(0, -1), 'i32', x.device);
  kernel(x.device, 'argmaxRows')(out, x);
  return out;
}
