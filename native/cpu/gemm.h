// CPU GEMM, callable from other kernels (attention, fused LoRA, quantized linear):
//   C[b] = alpha * op(A[b]) · op(B[b]) + beta * C[b] + bias     for b < batch
// All row-major and contiguous: A[b] = A + b * strideA is [M, K] ([K, M] when transA), B[b] likewise
// [K, N] ([N, K] when transB), C[b] = C + b * strideC is [M, N]; strides in elements, 0 broadcasts an
// operand over the batch. A and B are f32 (float) or bf16 bits (uint16_t), widened while packing.
// bias (N values, or null) is added to every row. beta == 0 never reads C (it may hold NaN).
// Runs on all threads (lk::num_threads()); C must not overlap A, B or other batch items of C.
#pragma once
#include <cstdint>

namespace lk {

template <typename TA, typename TB>
void gemm(float* C, const TA* A, const TB* B, const float* bias, int64_t batch, int64_t M, int64_t N, int64_t K,
          bool transA, bool transB, float alpha, float beta, int64_t strideA, int64_t strideB, int64_t strideC);

extern template void gemm<float, float>(float*, const float*, const float*, const float*, int64_t, int64_t, int64_t,
                                        int64_t, bool, bool, float, float, int64_t, int64_t, int64_t);
extern template void gemm<float, uint16_t>(float*, const float*, const uint16_t*, const float*, int64_t, int64_t,
                                           int64_t, int64_t, bool, bool, float, float, int64_t, int64_t, int64_t);
extern template void gemm<uint16_t, float>(float*, const uint16_t*, const float*, const float*, int64_t, int64_t,
                                           int64_t, int64_t, bool, bool, float, float, int64_t, int64_t, int64_t);
extern template void gemm<uint16_t, uint16_t>(float*, const uint16_t*, const uint16_t*, const float*, int64_t, int64_t,
                                              int64_t, int64_t, bool, bool, float, float, int64_t, int64_t, int64_t);

}  // namespace lk

namespace lk::gemm_detail {

// One C tile for a micro-kernel (native/cpu/isa/<path>/gemm_kernel.h): C[m, n] (m <= MR, n <= NR,
// row stride ldc) = alpha * a·b + beta * C + bias; beta == 0 never reads C; bias (n values, or null)
// is added only by the first K block.
struct Tile {
  float* c;
  int64_t ldc;
  int m, n;
  float alpha, beta;
  const float* bias;
};

}  // namespace lk::gemm_detail
