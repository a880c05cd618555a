// The arithmetic the tape does on gradients itself (seeding the root, summing gradients that meet at a
// tensor), on the kernels directly: the ops sit above the tape and would record.
import { kernel } from '../backend/kernels.js';
import { Tensor } from '../tensor/tensor.js';

/** A tensor of like's shape, dtype and device with every element `value`. */
export function filled(like: Tensor, value: number): Tensor {
  const t = Tensor.empty(like.shape, like.dtype, like.device);
  kernel(t.device, 'fill')(t, value);
  return t;
}

/** dst += src, in place. */
export function addInto(dst: Tensor, src: Tensor): void {
  if (dst.size !== src.size) throw new Error(`lorakit: axpy: sizes differ (${dst.size} and ${src.size}).`);
  kernel(dst.device, 'axpy')(dst, src, 1);
}

/** a + b, a new tensor. */
export function sumOf(a: Tensor, b: Tensor): Tensor {
  const out = Tensor.empty(a.shape, a.dtype, a.device);
  kernel(a.device, 'add')(out, a, b);
  return out;
}
