// DoRA's weight norm: ‖W + s·B·A‖ per output row. Only the CPU backend has it (DoRA trains there).
import { op, type OpGroup } from './dsl.js';

export const dora = {
  ops: {
    /** out [rows] f32 = ‖w[r] + s·delta[r]‖ per row <- w [rows, cols] (dense or quantized), delta [rows, cols] f32 */
    weightNorm: op('out:f32 = w:weight delta:f32 s'),
  },
} as const satisfies OpGroup;
