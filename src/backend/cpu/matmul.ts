// The CPU GEMM (native/cpu/gemm.cc): f32 output, f32 or bf16 operands read as stored, so a frozen bf16
// weight is never copied to fp32.
import type {} from '../../ops/matmul.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';

declare module './addon.js' {
  interface CpuAddon {
    /**
     * C[i] = alpha·op(A[i])·op(B[i]) + beta·C[i] (+ bias on every row) for i < batch, row-major:
     * A[i] [m, k] ([k, m] with transA), B[i] [k, n] ([n, k] with transB), C[i] [m, n], bias [n] or
     * null. A and B: Float32Array (f32) or Uint16Array (bf16 bits). Strides are in elements between
     * batch items; 0 broadcasts that operand. beta = 0 never reads C.
     */
    gemm(
      c: Float32Array,
      a: Float32Array | Uint16Array,
      b: Float32Array | Uint16Array,
      bias: Float32Array | null,
      batch: number,
      m: number,
      n: number,
      k: number,
      transA: boolean,
      transB: boolean,
      alpha: number,
      beta: number,
      strideA: number,
      strideB: number,
      strideC: number,
    ): void;
  }
}

const f32OrBf16 = (t: Tensor): Float32Array | Uint16Array =>
  t.dtype === 'bf16' ? t.as('bf16') : t.as('f32');

export const matmulKernels = {
  gemm: (c, a, b, bias, g) =>
    cpu.gemm(
      c.as('f32'),
      f32OrBf16(a),
      f32OrBf16(b),
      bias ? bias.as('f32') : null,
      g.batch,
      g.m,
      g.n,
      g.k,
      g.transA,
      g.transB,
      g.alpha,
      g.beta,
      g.strideA,
      g.strideB,
      g.strideC,
    ),
} satisfies Kernels;
