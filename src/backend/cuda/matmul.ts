// The CUDA GEMM through cuBLASLt (native/cuda/gemm.cu). In bf16 mode an f32 operand meeting a bf16 one
// (a LoRA matrix against activations) is rounded to a bf16 copy first: it is small (r × features), and
// tensor cores then take the whole product. f32 · f32 stays f32.
import type { GemmAttrs } from '../../ops/spec/matmul.js';
import { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import { gemmProduct, gemmStrides } from '../sizes.js';
import type { CudaAddon } from './addon.js';
import { dt, ptr } from './device.js';
import { asBf16, NULL, withTemps, type Temp } from './util.js';

export function gemm(
  cu: CudaAddon,
  c: Tensor,
  a: Tensor,
  b: Tensor,
  bias: Tensor | null,
  g: GemmAttrs,
): void {
  // cuBLASLt takes both inputs in one dtype: f32·f32 (exact, C f32) or bf16·bf16 (C bf16 or f32).
  const mixed = a.dtype !== b.dtype || c.dtype === 'bf16';
  const A = mixed ? asBf16(cu, a) : { t: a, owned: false };
  const B = mixed ? asBf16(cu, b) : { t: b, owned: false };
  let Bias: Temp | null = null;
  if (bias) {
    if (bias.dtype === c.dtype) Bias = { t: bias, owned: false };
    else {
      const t = Tensor.empty(bias.shape, c.dtype, 'cuda');
      cu.cast(ptr(t), dt(t), ptr(bias), dt(bias), bias.size);
      Bias = { t, owned: true };
    }
  }
  const operands = [ptr(A.t), dt(A.t), ptr(B.t), dt(B.t), Bias ? ptr(Bias.t) : NULL] as const;
  const packed = [0, 0, 0] as const; // lda, ldb, ldc: every operand is whole rows
  withTemps([A, B, ...(Bias ? [Bias] : [])], () =>
    cu.gemm(ptr(c), dt(c), ...operands, ...gemmProduct(g), g.batch, ...gemmStrides(g), ...packed),
  );
}

/** One plain product's attributes: alpha 1, beta 0, one item. */
export const plainGemm = (m: number, n: number, k: number, transB: boolean): GemmAttrs => ({
  batch: 1,
  m,
  n,
  k,
  transA: false,
  transB,
  alpha: 1,
  beta: 0,
  strideA: m * k,
  strideB: k * n,
  strideC: m * n,
});

export const matmulKernels = (cu: CudaAddon) =>
  ({
    gemm: (c, a, b, bias, g) => gemm(cu, c, a, b, bias, g),
  }) satisfies Kernels;
