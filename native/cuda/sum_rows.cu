// Row sums: out[r] = Σ_c x[r, c], fp32 accumulation, one rounding to out's dtype (e.g. the gradient of
// a broadcast operand, once the caller has laid the summed axis out last).
// Short rows (cols < 1024): one warp per row, lanes strided over the columns, a warp sum. Long rows:
// one block of 256 per row and a block sum. Both loop over rows grid-stride with int64 indices, so any
// row count works with a bounded grid.
#include <algorithm>

#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

constexpr int kWarps = 8;  // warps per block on the short-row path
constexpr int kBlock = 256;
constexpr int64_t kLongRow = 1024;

// out [rows] <- x [rows, cols]: warp per row.
template <typename O, typename I>
__global__ void sum_rows_warp_kernel(O* out, const I* x, int64_t rows, int64_t cols) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5), nwarps = int64_t(gridDim.x) * kWarps;
  for (int64_t r = warp; r < rows; r += nwarps) {
    const I* row = x + r * cols;
    float s = 0.f;
    for (int64_t c = lane; c < cols; c += 32) s += to_f32(row[c]);
    s = warp_sum(s);
    if (lane == 0) out[r] = from_f32<O>(s);
  }
}

// out [rows] <- x [rows, cols]: block per row (every thread of a block runs the same rows: block_sum).
template <typename O, typename I>
__global__ void __launch_bounds__(kBlock) sum_rows_block_kernel(O* out, const I* x, int64_t rows, int64_t cols) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const I* row = x + r * cols;
    float s = 0.f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += to_f32(row[c]);
    s = block_sum(s);
    if (threadIdx.x == 0) out[r] = from_f32<O>(s);
  }
}

template <typename O, typename I>
void launch(void* out, const void* x, int64_t rows, int64_t cols, cudaStream_t stream) {
  O* o = static_cast<O*>(out);
  const I* in = static_cast<const I*>(x);
  const int64_t cap = int64_t(num_sms()) * 32;
  if (cols >= kLongRow) {
    const unsigned grid = unsigned(std::min<int64_t>(rows, cap));
    sum_rows_block_kernel<O, I><<<grid, kBlock, 0, stream>>>(o, in, rows, cols);
  } else {
    const unsigned grid = unsigned(std::min<int64_t>((rows + kWarps - 1) / kWarps, cap));
    sum_rows_warp_kernel<O, I><<<grid, kWarps * 32, 0, stream>>>(o, in, rows, cols);
  }
}

}  // namespace

void sum_rows(void* out, DType out_type, const void* x, DType x_type, int64_t rows, int64_t cols, cudaStream_t stream) {
  LKC_REQUIRE((out_type == DType::F32 || out_type == DType::BF16) && (x_type == DType::F32 || x_type == DType::BF16),
              std::string("sum_rows takes f32 or bf16 tensors, not ") + dtype_name(out_type) + " <- " + dtype_name(x_type) + ".");
  LKC_REQUIRE(rows >= 0 && cols >= 0, "sum_rows needs non-negative sizes.");
  if (rows == 0) return;
  if (out_type == DType::F32 && x_type == DType::F32)
    launch<float, float>(out, x, rows, cols, stream);
  else if (out_type == DType::F32)
    launch<float, bf16>(out, x, rows, cols, stream);
  else if (x_type == DType::F32)
    launch<bf16, float>(out, x, rows, cols, stream);
  else
    launch<bf16, bf16>(out, x, rows, cols, stream);
  LKC_CHECK_LAUNCH("sum_rows");
}

}  // namespace lkc
