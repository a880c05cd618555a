// CPU SwiGLU (native/cpu/swiglu.cc), f32.
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';
import { f32, optF32 } from './arrays.js';

export const swigluKernels = {
  swigluForward: (out, gate, up) => cpu.swigluForwardF32(f32(out), f32(gate), f32(up), out.size),
  swigluBackward: (dgate, dup, dy, gate, up) =>
    cpu.swigluBackwardF32(optF32(dgate), optF32(dup), f32(dy), f32(gate), f32(up), dy.size),
} satisfies Kernels;
