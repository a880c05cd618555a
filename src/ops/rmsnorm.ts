// RMSNorm (Llama/HF semantics): y = x / sqrt(mean(x²) + eps) · weight, normalized in fp32.
import { kernel } from '../backend/kernels.js';
import { needsRecord, record } from '../autograd/tape.js';
import { keep, shapeString, Tensor } from '../tensor/tensor.js';
import { emptyF32, emptyLike, expectDType, expectFloat, sameDevice } from './util.js';

/** y = x / sqrt(mean(x², last dim) + eps) · weight; x [..., D] f32, weight [D] f32. */
export function rmsnorm(x: Tensor, weight: Tensor, eps: number): Tensor {
  sameDevice('rmsnorm', x, weight);
  expectFloat('rmsnorm', 'x', x);
  expectDType('rmsnorm', 'weight', weight, x.dtype);
  const D = x.shape.at(-1);
  if (D === undefined || weight.shape.length !== 1 || weight.shape[0] !== D)
    throw new Error(
      `lorakit: rmsnorm: weight ${shapeString(weight.shape)} does not match the last dimension of x ${shapeString(x.shape)}.`,
    );
  if (!(eps >= 0) || !Number.isFinite(eps))
    throw new Error(`lorakit: rmsnorm: eps must be a finite number ≥ 0, got ${eps}.`);
  const y = emptyLike(x);
  const rstd = emptyF32(x, [D === 0 ? 0 : x.size / D]);
  kernel(x.device, 'rmsnormForward')(y, rstd, x, weight, eps);
  if (needsRecord([x, weight])) {
    record([x, weight], [y], [x, weight, rstd], ([g], [gx, gw]) => {
      const dx = gx ? emptyLike(x) : null;
      const dw = gw ? Tensor.zeros(weight.shape, 'f32', weight.device) : null;
      kernel(g.device, 'rmsnormBackward')(dx, dw, g, x, weight, rstd);
      return [dx, dw];
    });
    keep(rstd); // the tape now holds the only reference
  }
  rstd.dispose();
  return y;
}
