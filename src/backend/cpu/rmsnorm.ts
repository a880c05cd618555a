// CPU RMSNorm (native/cpu/rmsnorm.cc), f32.
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';
import { f32, optF32 } from './arrays.js';

export const rmsnormKernels = {
  rmsnormForward: (y, rstd, x, weight, eps) =>
    cpu.rmsnormForwardF32(f32(y), f32(rstd), f32(x), f32(weight), rstd.size, weight.size, eps),
  rmsnormBackward: (dx, dweight, dy, x, weight, rstd) =>
    cpu.rmsnormBackwardF32(
      optF32(dx),
      optF32(dweight),
      f32(dy),
      f32(x),
      f32(weight),
      f32(rstd),
      rstd.size,
      weight.size,
    ),
} satisfies Kernels;
