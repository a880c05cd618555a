// The CPU's DoRA weight norm, in double: the reference the GPU kernels are tested against.
import { weightToFloat32 } from '../../quant/weight.js';
import type { Kernels } from '../kernels.js';
import { f32 } from './arrays.js';

export const doraKernels = {
  // out [rows] = ‖w[r] + s·delta[r]‖ (or its reciprocal) <- w [rows, cols], delta [rows, cols]
  weightNorm: (out, w, delta, s, inverse) => {
    const wd = weightToFloat32(w); // dense copy (dequantized for a QLoRA base)
    const d = f32(delta);
    const [rows, cols] = w.shape;
    const norms = f32(out);
    for (let o = 0; o < rows; o++) {
      let acc = 0;
      for (let i = 0; i < cols; i++) {
        const v = wd[o * cols + i] + s * d[o * cols + i];
        acc += v * v;
      }
      norms[o] = inverse ? 1 / Math.sqrt(acc) : Math.sqrt(acc);
    }
  },
} satisfies Kernels;
