// DoRA's weight norm: ‖W + s·B·A‖ per output row, the direction DoRA divides by, detached from the
// graph as PEFT does (DoRA paper §4.3).
import { kernel } from '../backend/kernels.js';
import { noGrad } from '../autograd/tape.js';
import type { QuantizedWeight } from '../quant/weight.js';
import { Tensor, tidy } from '../tensor/tensor.js';
import { matmul } from './matmul.js';

/**
 * ‖w + s·B·A‖ per output row [out] f32 (no gradient), or with `inverse` its reciprocal, computed on
 * the device (the forward pass multiplies by it without reading it back): w [out, in], A [r, in],
 * B [out, r].
 */
export function weightNorm(
  w: Tensor | QuantizedWeight,
  A: Tensor,
  B: Tensor,
  s: number,
  inverse = false,
): Tensor {
  return noGrad(() =>
    tidy(() => {
      const out = Tensor.empty([w.shape[0]], 'f32', A.device);
      kernel(A.device, 'weightNorm')(out, w, matmul(B, A), s, inverse);
      return out;
    }),
  );
}
