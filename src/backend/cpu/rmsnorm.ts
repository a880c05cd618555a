// CPU RMSNorm (native/cpu/rmsnorm.cc), f32.
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';

export const rmsnormKernels = {
  rmsnormForward: (y, rstd, x, weight, eps) =>
    cpu.rmsnormForwardF32(
      y.as('f32'),
      rstd.as('f32'),
      x.as('f32'),
      weight.as('f32'),
      rstd.size,
      weight.size,
      eps,
    ),
  rmsnormBackward: (dx, dweight, dy, x, weight, rstd) =>
    cpu.rmsnormBackwardF32(
      dx?.as('f32') ?? null,
      dweight?.as('f32') ?? null,
      dy.as('f32'),
      x.as('f32'),
      weight.as('f32'),
      rstd.as('f32'),
      rstd.size,
      weight.size,
    ),
} satisfies Kernels;
