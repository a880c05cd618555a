// CPU SwiGLU (native/cpu/swiglu.cc), f32.
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';

export const swigluKernels = {
  swigluForward: (out, gate, up) =>
    cpu.swigluForwardF32(out.as('f32'), gate.as('f32'), up.as('f32'), out.size),
  swigluBackward: (dgate, dup, dy, gate, up) =>
    cpu.swigluBackwardF32(
      dgate?.as('f32') ?? null,
      dup?.as('f32') ?? null,
      dy.as('f32'),
      gate.as('f32'),
      up.as('f32'),
      dy.size,
    ),
} satisfies Kernels;
