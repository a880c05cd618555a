// The CPU GEMM (native/cpu/gemm.cc): f32 output, f32 or bf16 operands read as stored, so a frozen bf16
// weight is never copied to fp32.
import type { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';

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
