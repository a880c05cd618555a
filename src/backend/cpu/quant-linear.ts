// CPU quantized linear (native/cpu/quant.cc): W is dequantized a tile of rows at a time into a small
// fp32 buffer and multiplied there, so no dense copy of W ever exists.
import type { QuantArgs } from '../../quant/weight.js';
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';
import { f32, optF32 } from './arrays.js';

export const quantLinearKernels = {
  quantLinear: (y, x, w, bias, m) => cpu.quantLinear(f32(y), f32(x), optF32(bias), ...w.args(), m),
  quantLinearBackward: (dx, g, w, m, accumulate) =>
    cpu.quantLinearBackward(f32(dx), f32(g), ...w.args(), m, accumulate),
} satisfies Kernels;
