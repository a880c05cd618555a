// CPU dropout (native/cpu/dropout.cc): the mask is a hash of (seed, element index).
import type {} from '../../ops/dropout.js';
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';

declare module './addon.js' {
  interface CpuAddon {
    dropoutF32(out: Float32Array, x: Float32Array, p: number, seed: number, n: number): void;
  }
}

export const dropoutKernels = {
  dropout: (out, x, p, seed) => cpu.dropoutF32(out.as('f32'), x.as('f32'), p, seed, x.size),
} satisfies Kernels;
