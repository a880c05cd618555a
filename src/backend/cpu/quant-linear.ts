// CPU quantized linear (native/cpu/quant.cc): up to 8 rows of x (decode) take dot products straight
// from the packed weight, dequantized in registers; more rows dequantize W a tile of rows at a time
// into a small fp32 buffer and multiply there. Either way no dense copy of W ever exists.
import type { QuantArgs } from '../../quant/weight.js';
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';
import { f32, optF32 } from './arrays.js';

export const quantLinearKernels = {
  quantLinear: (y, x, w, bias, m) => cpu.quantLinear(f32(y), f32(x), optF32(bias), ...w.args(), m),
  quantLinearBackward: (dx, g, w, m, accumulate) =>
    cpu.quantLinearBackward(f32(dx), f32(g), ...w.args(), m, accumulate),
} satisfies Kernels;
