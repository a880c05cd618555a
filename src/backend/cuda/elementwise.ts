// CUDA elementwise kernels (native/cuda/elementwise.cu, broadcast.cu, sum_rows.cu): fp32 math in the
// tensors' own dtype.
import { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import type { CudaAddon } from './addon.js';
import { dt, ptr } from './device.js';
import { gemm, plainGemm } from './matmul.js';

export const elementwiseKernels = (cu: CudaAddon) =>
  ({
    add: (out, a, b) => cu.add(ptr(out), ptr(a), ptr(b), dt(a), a.size, b.size),
    mul: (out, a, b) => cu.mul(ptr(out), ptr(a), ptr(b), dt(a), a.size, b.size),
    axpy: (y, x, alpha) => cu.axpy(ptr(y), dt(y), ptr(x), dt(x), alpha, y.size),
    scale: (out, x, alpha) => cu.scale(ptr(out), ptr(x), alpha, dt(x), x.size),
    sumRows: (out, x, rows, cols) => cu.sumRows(ptr(out), dt(out), ptr(x), dt(x), rows, cols),
    cast: (out, x) => {
      if (out.dtype === x.dtype) cu.copyDeviceToDevice(ptr(out), ptr(x), out.byteLength);
      else cu.cast(ptr(out), dt(out), ptr(x), dt(x), x.size);
    },
    fill: (out, value) => cu.fill(ptr(out), dt(out), value, out.size),
    // 1ᵀ·x as a GEMM.
    sumColumns: (out, x, rows, cols) => {
      const ones = Tensor.empty([rows], x.dtype, 'cuda');
      cu.fill(ptr(ones), dt(ones), 1, rows);
      try {
        gemm(cu, out, ones, x, null, { ...plainGemm(1, cols, rows, false), strideB: rows * cols });
      } finally {
        ones.dispose();
      }
    },
  }) satisfies Kernels;
