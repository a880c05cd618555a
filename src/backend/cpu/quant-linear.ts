// CPU quantized linear (native/cpu/quant.cc): W is dequantized a tile of rows at a time into a small
// fp32 buffer and multiplied there, so no dense copy of W ever exists.
import type { QuantArgs } from '../../quant/weight.js';
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';

export const quantLinearKernels = {
  quantLinear: (y, x, w, bias, m) =>
    cpu.quantLinear(y.as('f32'), x.as('f32'), bias ? bias.as('f32') : null, ...w.args(), m),
  quantLinearBackward: (dx, g, w, m, accumulate) =>
    cpu.quantLinearBackward(dx.as('f32'), g.as('f32'), ...w.args(), m, accumulate),
} satisfies Kernels;
