// CPU rotary embeddings (native/cpu/rope.cc), f32.
import type { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';

function ropeDims(
  x: Tensor,
  cos: Tensor,
): [rows: number, heads: number, headDim: number, half: number, maxPositions: number] {
  const [B, T, H, Dh] = x.shape;
  return [B * T, H, Dh, cos.shape[1], cos.shape[0]];
}

export const ropeKernels = {
  ropeForward: (out, x, cos, sin, positions) =>
    cpu.ropeForwardF32(
      out.as('f32'),
      x.as('f32'),
      cos.as('f32'),
      sin.as('f32'),
      positions.as('i32'),
      ...ropeDims(x, cos),
    ),
  ropeBackward: (dx, dy, cos, sin, positions) =>
    cpu.ropeBackwardF32(
      dx.as('f32'),
      dy.as('f32'),
      cos.as('f32'),
      sin.as('f32'),
      positions.as('i32'),
      ...ropeDims(dy, cos),
    ),
} satisfies Kernels;
