// DoRA's weight norm: out[r] = ‖w[r] + s·delta[r]‖ over the rows of w [rows, cols] (f32 or bf16) and
// delta [rows, cols] f32 (s·B·A's unscaled product), or 1/‖…‖ with `inverse` (what DoRA's forward
// multiplies by, so the host never reads the norm). Each term w + s·delta in fp32 (one FMA), squares
// summed in fp32. One block per row (grid-stride over rows): a row is one pass over 2·cols·4 bytes at
// most, so the kernel is bound by memory; 16-byte loads when cols % 8 == 0 and both bases are aligned.
// A quantized w is dequantized into a dense f32 block first (src/backend/cuda/dora.ts).
#include <algorithm>

#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

constexpr int kBlock = 256;

// out [rows] f32 <- w [rows, cols] of T, delta [rows, cols] f32
template <typename T, bool VEC>
__global__ void __launch_bounds__(kBlock) weight_norm_kernel(float* out, const T* w, const float* delta, float s, bool inverse,
                                                             int64_t rows, int64_t cols) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* wr = w + r * cols;
    const float* dr = delta + r * cols;
    float ss = 0.f;
    if (VEC) {
      for (int64_t c = int64_t(threadIdx.x) * 8; c < cols; c += int64_t(kBlock) * 8) {
        float a[8], d[8];
        load8(wr + c, a);
        load8(dr + c, d);
#pragma unroll
        for (int k = 0; k < 8; k++) {
          const float v = fmaf(s, d[k], a[k]);
          ss = fmaf(v, v, ss);
        }
      }
    } else {
      for (int64_t c = threadIdx.x; c < cols; c += kBlock) {
        const float v = fmaf(s, dr[c], to_f32(wr[c]));
        ss = fmaf(v, v, ss);
      }
    }
    ss = block_sum(ss);  // the whole block calls it: r is the same for every thread
    if (threadIdx.x == 0) {
      const float n = sqrtf(ss);
      out[r] = inverse ? 1.f / n : n;
    }
  }
}

template <typename T>
void launch(float* out, const T* w, const float* delta, float s, bool inverse, int64_t rows, int64_t cols, cudaStream_t stream) {
  const unsigned grid = unsigned(std::min<int64_t>(rows, int64_t(num_sms()) * 16));
  if (cols % 8 == 0 && aligned16(w) && aligned16(delta))
    weight_norm_kernel<T, true><<<grid, kBlock, 0, stream>>>(out, w, delta, s, inverse, rows, cols);
  else
    weight_norm_kernel<T, false><<<grid, kBlock, 0, stream>>>(out, w, delta, s, inverse, rows, cols);
}

}  // namespace

void weight_norm(float* out, const void* w, DType w_type, const float* delta, float s, bool inverse, int64_t rows, int64_t cols,
                 cudaStream_t stream) {
  LKC_REQUIRE(w_type == DType::F32 || w_type == DType::BF16,
              std::string("weight_norm takes an f32 or bf16 weight, not ") + dtype_name(w_type) + ".");
  LKC_REQUIRE(rows >= 0 && cols >= 0, "weight_norm needs rows ≥ 0 and cols ≥ 0.");
  if (rows == 0) return;
  if (w_type == DType::F32)
    launch(out, static_cast<const float*>(w), delta, s, inverse, rows, cols, stream);
  else
    launch(out, static_cast<const bf16*>(w), delta, s, inverse, rows, cols, stream);
  LKC_CHECK_LAUNCH("weight_norm");
}

}  // namespace lkc
