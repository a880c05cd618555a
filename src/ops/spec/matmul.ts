// The GEMM every product runs on: matmul, linear, the fused LoRA op.
import { cuda, host, op, type OpGroup } from './dsl.js';

/** Sizes of one batched GEMM; strides in elements between batch items (0: broadcast). */
export interface GemmAttrs {
  batch: number;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  alpha: number;
  beta: number;
  strideA: number;
  strideB: number;
  strideC: number;
}

const operands = 'c:ptr cType:dtype a:ptr aType:dtype b:ptr bType:dtype bias?:ptr';
const product = 'm:count n:count k:count transA:flag transB:flag alpha:f32 beta:f32';
const batched = 'batch:dim strideA:count strideB:count strideC:count lda:count ldb:count ldc:count';

export const matmul = {
  ops: {
    /**
     * c = alpha·op(a)·op(b) + beta·c (+ bias [n] on every row), batched as attrs says.
     * a, b: f32 or bf16; c: f32 (CPU) or f32/bf16 (CUDA); bias: c's dtype. Shapes per item: a [m, k]
     * ([k, m] with transA), b [k, n] ([n, k] with transB), c [m, n].
     */
    gemm: op('c:f32|bf16 = a:f32|bf16 b:f32|bf16 bias?:f32|bf16 attrs:GemmAttrs'),
  },
  cpu: {
    /**
     * C[i] = alpha·op(A[i])·op(B[i]) + beta·C[i] (+ bias on every row) for i < batch, row-major:
     * A[i] [m, k] ([k, m] with transA), B[i] [k, n] ([n, k] with transB), C[i] [m, n], bias [n] or
     * null. A and B: Float32Array (f32) or Uint16Array (bf16 bits). Strides are in elements between
     * batch items; 0 broadcasts that operand. beta = 0 never reads C.
     */
    gemm: host(
      'c:f32 a:f32|u16 b:f32|u16 bias?:f32 batch m n k transA:bool transB:bool alpha beta strideA strideB strideC',
    ),
  },
  cuda: {
    /**
     * C = alpha·op(A)·op(B) + beta·C (+ bias [n], C's dtype, beta 0 only); row-major, batched. lda, ldb,
     * ldc: leading dimensions in elements (0: packed), for operands that are slices of wider rows.
     */
    gemm: cuda('glue::gemm', `${operands} ${product} ${batched}`),
  },
} as const satisfies OpGroup;
