// Greedy decoding's pick, on the device: out[r] = the first index of the largest value of row r of
// x [rows, cols] (bf16 or f32), so a server reads back one int per sequence instead of a row of
// logits. The same answer as the host's scan `best = 0; for i ≥ 1: if x[i] > x[best] best = i`: NaNs
// are never picked (a comparison with NaN is false), except that a row whose first value is NaN gives
// 0; ties go to the lowest index; -0 equals +0. One block per row (grid-stride over rows).
#include <algorithm>
#include <cfloat>
#include <climits>

#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

constexpr int kBlock = 256;

// (v, i) is a better pick than (bv, bi): larger, or equal at a lower index. NaN values never enter.
__device__ __forceinline__ bool better(float v, int64_t i, float bv, int64_t bi) { return v > bv || (v == bv && i < bi); }

template <typename T>
__global__ void __launch_bounds__(kBlock) argmax_rows_kernel(int32_t* out, const T* x, int64_t rows, int64_t cols) {
  __shared__ float sv[kBlock / 32];
  __shared__ int64_t si[kBlock / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * cols;
    float bv = -INFINITY;
    int64_t bi = INT64_MAX;
    for (int64_t c = threadIdx.x; c < cols; c += kBlock) {
      const float v = to_f32(row[c]);
      if (v == v && better(v, c, bv, bi)) bv = v, bi = c;
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float v = __shfl_down_sync(0xffffffffu, bv, o);
      const int64_t i = __shfl_down_sync(0xffffffffu, bi, o);
      if (better(v, i, bv, bi)) bv = v, bi = i;
    }
    if (lane == 0) sv[warp] = bv, si[warp] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < kBlock / 32; w++)
        if (better(sv[w], si[w], bv, bi)) bv = sv[w], bi = si[w];
      const float first = to_f32(row[0]);
      // A NaN first value (the host scan never moves off it) or a row of NaNs: index 0.
      out[r] = (first != first || bi == INT64_MAX) ? 0 : int32_t(bi);
    }
    __syncthreads();  // sv/si are rewritten by the next row
  }
}

}  // namespace

void argmax_rows(int32_t* out, const void* x, DType t, int64_t rows, int64_t cols, cudaStream_t stream) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, std::string("argmax_rows takes f32 or bf16, not ") + dtype_name(t) + ".");
  LKC_REQUIRE(rows >= 0 && cols >= 1 && cols <= INT32_MAX, "argmax_rows needs rows ≥ 0 and 1 ≤ cols < 2³¹.");
  if (rows == 0) return;
  const unsigned grid = unsigned(std::min<int64_t>(rows, int64_t(num_sms()) * 16));
  if (t == DType::F32)
    argmax_rows_kernel<float><<<grid, kBlock, 0, stream>>>(out, static_cast<const float*>(x), rows, cols);
  else
    argmax_rows_kernel<bf16><<<grid, kBlock, 0, stream>>>(out, static_cast<const bf16*>(x), rows, cols);
  LKC_CHECK_LAUNCH("argmax_rows");
}

}  // namespace lkc
