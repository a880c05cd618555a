// CPU rotary embeddings (native/cpu/rope.cc), f32.
import type { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';
import { f32 } from './arrays.js';

// rows, heads, headDim, half, maxPositions of x [B, T, H, Dh] and the tables [P, half].
function ropeSizes(x: Tensor, cos: Tensor): [number, number, number, number, number] {
  const [B, T, H, Dh] = x.shape;
  return [B * T, H, Dh, cos.shape[1], cos.shape[0]];
}

export const ropeKernels = {
  ropeForward: (out, x, cos, sin, positions) =>
    cpu.ropeForwardF32(f32(out), f32(x), f32(cos), f32(sin), positions.as('i32'), ...ropeSizes(x, cos)),
  ropeBackward: (dx, dy, cos, sin, positions) =>
    cpu.ropeBackwardF32(f32(dx), f32(dy), f32(cos), f32(sin), positions.as('i32'), ...ropeSizes(dy, cos)),
} satisfies Kernels;
