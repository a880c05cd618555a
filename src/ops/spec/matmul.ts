// The GEMM every product runs on: matmul, linear, the fused LoRA op.
import { cpuCall, cu, cudaCall, host, input, op, optInput, out, struct, type OpGroup } from './dsl.js';

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

export const matmul = {
  ops: {
    /**
     * c = alpha·op(a)·op(b) + beta·c (+ bias [n] on every row), batched as attrs says.
     * a, b: f32 or bf16; c: f32 (CPU) or f32/bf16 (CUDA); bias: c's dtype. Shapes per item: a [m, k]
     * ([k, m] with transA), b [k, n] ([n, k] with transB), c [m, n].
     */
    gemm: op(
      out('c', 'f32|bf16'),
      input('a', 'f32|bf16'),
      input('b', 'f32|bf16'),
      optInput('bias', 'f32|bf16'),
      struct<GemmAttrs>('attrs'),
    ),
  },
  cpu: {
    /**
     * C[i] = alpha·op(A[i])·op(B[i]) + beta·C[i] (+ bias on every row) for i < batch, row-major:
     * A[i] [m, k] ([k, m] with transA), B[i] [k, n] ([n, k] with transB), C[i] [m, n], bias [n] or
     * null. A and B: Float32Array (f32) or Uint16Array (bf16 bits). Strides are in elements between
     * batch items; 0 broadcasts that operand. beta = 0 never reads C.
     */
    gemm: cpuCall(
      host.f32('c'),
      host.f32OrBf16('a'),
      host.f32OrBf16('b'),
      host.optF32('bias'),
      host.num('batch'),
      host.num('m'),
      host.num('n'),
      host.num('k'),
      host.bool('transA'),
      host.bool('transB'),
      host.num('alpha'),
      host.num('beta'),
      host.num('strideA'),
      host.num('strideB'),
      host.num('strideC'),
    ),
  },
  cuda: {
    /**
     * C = alpha·op(A)·op(B) + beta·C (+ bias [n], C's dtype, beta 0 only); row-major, batched. lda, ldb,
     * ldc: leading dimensions in elements (0: packed), for operands that are slices of wider rows.
     */
    gemm: cudaCall('glue::gemm', [
      cu.ptr('c'),
      cu.dtype('cType'),
      cu.ptr('a'),
      cu.dtype('aType'),
      cu.ptr('b'),
      cu.dtype('bType'),
      cu.optPtr('bias'),
      cu.count('m'),
      cu.count('n'),
      cu.count('k'),
      cu.flag('transA'),
      cu.flag('transB'),
      cu.f32('alpha'),
      cu.f32('beta'),
      cu.dim('batch'),
      cu.count('strideA'),
      cu.count('strideB'),
      cu.count('strideC'),
      cu.count('lda'),
      cu.count('ldb'),
      cu.count('ldc'),
    ]),
  },
} as const satisfies OpGroup;
