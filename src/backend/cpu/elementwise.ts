// CPU kernels of the elementwise ops (native/cpu/elementwise.cc): f32 throughout.
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';

export const elementwiseKernels = {
  add: (out, a, b) => cpu.addF32(out.as('f32'), a.as('f32'), b.as('f32'), a.size, b.size),
  mul: (out, a, b) => cpu.mulF32(out.as('f32'), a.as('f32'), b.as('f32'), a.size, b.size),
  axpy: (y, x, alpha) => cpu.axpyF32(y.as('f32'), x.as('f32'), alpha, y.size),
  scale: (out, x, alpha) => cpu.scaleF32(out.as('f32'), x.as('f32'), alpha, x.size),
  sumRows: (out, x, rows, cols) => cpu.sumRowsF32(out.as('f32'), x.as('f32'), rows, cols),
  cast: (out, x) => {
    if (out.dtype === x.dtype) out.data().set(x.data());
    else if (out.dtype === 'bf16' && x.dtype === 'f32') cpu.f32ToBf16(out.as('bf16'), x.as('f32'), x.size);
    else if (out.dtype === 'f32' && x.dtype === 'bf16') cpu.bf16ToF32(out.as('f32'), x.as('bf16'), x.size);
    else if (out.dtype === 'f32') out.as('f32').set(x.toFloat32());
    else throw new Error(`lorakit: cast from ${x.dtype} to ${out.dtype} is not supported.`);
  },
  fill: (out, value) => out.as('f32').fill(value),
  // 1ᵀ·x through the GEMM kernel, which streams x once.
  sumColumns: (out, x, rows, cols) => {
    const ones = new Float32Array(rows).fill(1);
    cpu.gemm(
      out.as('f32'),
      ones,
      x.as('f32'),
      null,
      1,
      1,
      cols,
      rows,
      false,
      false,
      1,
      0,
      rows,
      rows * cols,
      cols,
    );
  },
} satisfies Kernels;
