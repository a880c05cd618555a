// DoRA's weight norm: ‖W + s·B·A‖ per output row, or its reciprocal (what the forward pass multiplies
// by, so that no backend reads the norm back to form it).
import { cuda, op, type OpGroup } from './dsl.js';

export const dora = {
  ops: {
    /**
     * out [rows] f32 = ‖w[r] + s·delta[r]‖ per row, or 1/‖…‖ with `inverse`, <- w [rows, cols] (dense f32
     * or bf16, or quantized), delta [rows, cols] f32.
     */
    weightNorm: op('out:f32 = w:weight delta:f32 s inverse:boolean'),
  },
  cuda: {
    /** out [rows] f32 <- w [rows, cols] of dtype wType (f32 or bf16), delta [rows, cols] f32; fp32 sums. */
    weightNorm: cuda(
      'lkc::weight_norm',
      'out:float* w:ptr wType:floatType delta:float* s:f32 inverse:flag rows:count cols:count',
    ),
  },
} as const satisfies OpGroup;
