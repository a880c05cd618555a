// Elementwise ops: add (with suffix broadcasting, e.g. a bias), mul, scale, sum, cast.
import { kernel } from '../backend/kernels.js';
import { isGraphOnly, needsRecord, record } from '../autograd/tape.js';
import { shapeString, Tensor } from '../tensor/tensor.js';
import type { DType } from '../tensor/dtype.js';
import { emptyF32, emptyLike, expectDType, expectFloat, sameDevice } from './util.js';

// 1ᵀ·x through the GEMM kernel, which streams x once.
function checkBroadcast(op: string, a: Tensor, b: Tensor): void {
  sameDevice(op, a, b);
  expectFloat(op, 'a', a);
  expectDType(op, 'b', b, a.dtype);
  const suffix = a.shape.slice(a.shape.length - b.shape.length);
  const ok =
    b.size === a.size ? true : b.shape.length <= a.shape.length && suffix.every((d, i) => d === b.shape[i]);
  if (!ok)
    throw new Error(`lorakit: ${op}: cannot broadcast ${shapeString(b.shape)} onto ${shapeString(a.shape)}.`);
}

/** Sums g over its leading dims down to `like`'s shape (the gradient of a broadcast). */
function reduceTo(g: Tensor, like: Tensor): Tensor {
  if (g.size === like.size) return copy(g).reshape(like.shape);
  const out = Tensor.empty(like.shape, like.dtype, g.device);
  kernel(g.device, 'sumColumns')(out, g, g.size / like.size, like.size);
  return out;
}

/**
 * a + b, b broadcast over a's leading dims. Inside checkpointOutput's recompute the sum is recorded
 * for backward but not computed (nobody reads it): its values are then unset.
 */
export function add(a: Tensor, b: Tensor): Tensor {
  checkBroadcast('add', a, b);
  const out = emptyLike(a);
  if (!isGraphOnly()) kernel(a.device, 'add')(out, a, b);
  // Both gradients are g itself, passed on (b's summed over its broadcast dims when it has fewer).
  const sameShape = a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
  if (needsRecord([a, b]))
    record([a, b], [out], [], ([g], [ga, gb]) => [
      ga ? g.retain() : null,
      gb ? (sameShape ? g.retain() : reduceTo(g, b)) : null,
    ]);
  return out;
}

export function mul(a: Tensor, b: Tensor): Tensor {
  checkBroadcast('mul', a, b);
  const out = emptyLike(a);
  kernel(a.device, 'mul')(out, a, b);
  if (needsRecord([a, b]))
    record([a, b], [out], [a, b], ([g], [ga, gb]) => {
      const dA = ga ? mul(g, b) : null;
      let dB: Tensor | null = null;
      if (gb) {
        const ag = mul(g, a);
        dB = reduceTo(ag, b);
        ag.dispose();
      }
      return [dA, dB];
    });
  return out;
}

export function scale(x: Tensor, alpha: number): Tensor {
  expectFloat('scale', 'x', x);
  const out = emptyLike(x);
  kernel(x.device, 'scale')(out, x, alpha);
  if (needsRecord([x])) record([x], [out], [], ([g]) => [scale(g, alpha)]);
  return out;
}

/** A fresh copy of x (f32). */
export function copy(x: Tensor): Tensor {
  return scale(x, 1);
}

/** Sum of all elements, as an f32 scalar tensor. */
export function sum(x: Tensor): Tensor {
  expectFloat('sum', 'x', x);
  const out = emptyF32(x, []);
  kernel(x.device, 'sumRows')(out, x, 1, x.size);
  // g spread over x's shape on the device (no read back: WebGPU cannot wait for one).
  if (needsRecord([x]))
    record([x], [out], [], ([g]) => {
      const ones = emptyF32(x, x.shape);
      kernel(x.device, 'fill')(ones, 1);
      const dx = emptyLike(x);
      kernel(x.device, 'scaleByScalar')(dx, ones, g);
      ones.dispose();
      return [dx];
    });
  return out;
}

/** y += alpha * x, in place, not recorded (optimizers, gradient accumulation). */
export function axpyInPlace(y: Tensor, x: Tensor, alpha = 1): void {
  if (y.size !== x.size) throw new Error(`lorakit: axpy: sizes differ (${y.size} and ${x.size}).`);
  kernel(y.device, 'axpy')(y, x, alpha);
}

/** x converted to dtype (f32 <-> bf16); not differentiable. */
export function cast(x: Tensor, dtype: DType): Tensor {
  const out = Tensor.empty(x.shape, dtype, x.device);
  kernel(x.device, 'cast')(out, x);
  return out;
}

/**
 * x in dtype (x itself when it has it), differentiable: the gradient is cast back to x's dtype. An f32
 * factor meeting bf16 activations on a GPU (DoRA's magnitude scale) goes through it.
 */
export function castTo(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  const out = cast(x, dtype);
  if (needsRecord([x])) record([x], [out], [], ([g]) => [cast(g, x.dtype)]);
  return out;
}

/** A tensor of `like`'s dtype and device, every element `value`. */
export function full(shape: readonly number[], value: number, like: Tensor): Tensor {
  const t = emptyLike(like, shape);
  kernel(t.device, 'fill')(t, value);
  return t;
}
