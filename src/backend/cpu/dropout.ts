// CPU dropout (native/cpu/dropout.cc): the mask is a hash of (seed, element index).
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';

export const dropoutKernels = {
  dropout: (out, x, p, seed) => cpu.dropoutF32(out.as('f32'), x.as('f32'), p, seed, x.size),
} satisfies Kernels;
