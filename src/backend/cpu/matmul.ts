// The CPU GEMM (native/cpu/gemm.cc): f32 output, f32 or bf16 operands read as stored, so a frozen bf16
// weight is never copied to fp32.
import type { Kernels } from '../kernels.js';
import { gemmProduct, gemmStrides } from '../sizes.js';
import { cpu } from './addon.js';
import { f32, f32OrBf16, optF32 } from './arrays.js';

export const matmulKernels = {
  gemm: (c, a, b, bias, g) =>
    cpu.gemm(f32(c), f32OrBf16(a), f32OrBf16(b), optF32(bias), g.batch, ...gemmProduct(g), ...gemmStrides(g)),
} satisfies Kernels;
