// CPU dropout (native/cpu/dropout.cc): the mask is a hash of (seed, element index).
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';
import { f32 } from './arrays.js';

export const dropoutKernels = {
  dropout: (out, x, p, seed) => cpu.dropoutF32(f32(out), f32(x), p, seed, x.size),
} satisfies Kernels;
