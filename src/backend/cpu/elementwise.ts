// CPU kernels of the elementwise ops (native/cpu/elementwise.cc): f32 throughout.
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';
import { f32 } from './arrays.js';

export const elementwiseKernels = {
  add: (out, a, b) => cpu.addF32(f32(out), f32(a), f32(b), a.size, b.size),
  mul: (out, a, b) => cpu.mulF32(f32(out), f32(a), f32(b), a.size, b.size),
  axpy: (y, x, alpha) => cpu.axpyF32(f32(y), f32(x), alpha, y.size),
  scale: (out, x, alpha) => cpu.scaleF32(f32(out), f32(x), alpha, x.size),
  sumRows: (out, x, rows, cols) => cpu.sumRowsF32(f32(out), f32(x), rows, cols),
  cast: (out, x) => {
    if (out.dtype === x.dtype) out.data().set(x.data());
    else if (out.dtype === 'bf16' && x.dtype === 'f32') cpu.f32ToBf16(out.as('bf16'), f32(x), x.size);
    else if (out.dtype === 'f32' && x.dtype === 'bf16') cpu.bf16ToF32(f32(out), x.as('bf16'), x.size);
    else if (out.dtype === 'f32') f32(out).set(x.toFloat32());
    else throw new Error(`lorakit: cast from ${x.dtype} to ${out.dtype} is not supported.`);
  },
  fill: (out, value) => f32(out).fill(value),
  // 1ᵀ·x through the GEMM kernel, which streams x once.
  sumColumns: (out, x, rows, cols) => {
    const ones = new Float32Array(rows).fill(1);
    cpu.gemm(f32(out), ones, f32(x), null, 1, 1, cols, rows, false, false, 1, 0, rows, rows * cols, cols);
  },
} satisfies Kernels;
