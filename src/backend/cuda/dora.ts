// CUDA DoRA weight norm (native/cuda/weight_norm.cu). A quantized base is dequantized to f32 in blocks
// of rows (quant-linear.ts, at most 64 MiB each), each block's norms written before the next: f32 so the
// weights are the CPU's dequantized values exactly, and the model never exists dequantized as a whole.
import { QuantizedWeight } from '../../quant/weight.js';
import type { Kernels } from '../kernels.js';
import { CUDA_DTYPE, type CudaAddon } from './addon.js';
import { ptr } from './device.js';
import { eachDequantizedBlock } from './quant-linear.js';
import { expect, floatType } from './util.js';

export const doraKernels = (cu: CudaAddon) =>
  ({
    // out [rows] f32 <- w [rows, cols] (dense or quantized), delta [rows, cols] f32
    weightNorm: (out, w, delta, s, inverse) => {
      expect(out, 'f32', 'weightNorm', 'out');
      expect(delta, 'f32', 'weightNorm', 'delta');
      const [rows, cols] = w.shape;
      if (!(w instanceof QuantizedWeight)) {
        cu.weightNorm(ptr(out), ptr(w), floatType('weightNorm', { w }), ptr(delta), s, inverse, rows, cols);
        return;
      }
      // Block r0 covers rows [r0, r0 + R): norms from element r0 of out, terms from row r0 of delta.
      eachDequantizedBlock(cu, w, CUDA_DTYPE.f32, (block, r0) => {
        const R = block.shape[0];
        const d = ptr(delta) + 4 * r0 * cols;
        cu.weightNorm(ptr(out) + 4 * r0, ptr(block), CUDA_DTYPE.f32, d, s, inverse, R, cols);
      });
    },
  }) satisfies Kernels;
