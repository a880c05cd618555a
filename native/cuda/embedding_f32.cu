// Token embedding forward from an f32 table (a trainable embed_tokens copy keeps fp32 master weights):
//   out[n, :] = bf16(table[ids[n], :])   (round to nearest even)
// Same rules as embedding.cu: ids outside [0, V) give zero rows and read nothing. Backward is
// embedding_backward (it writes an f32 gradient whatever the table's dtype). One warp per token row,
// rows grid-stride, int64 offsets, one element per lane per step.
#include <algorithm>

#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

constexpr int kWarps = 8;

// out [N, C] bf16 <- ids [N], table [V, C] f32
__global__ void embedding_forward_f32_kernel(bf16* out, const int32_t* ids, const float* table, int64_t N, int C, int64_t V) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5), nwarps = int64_t(gridDim.x) * kWarps;
  for (int64_t n = warp; n < N; n += nwarps) {
    const int64_t id = ids[n];
    bf16* dst = out + n * C;
    if (id >= 0 && id < V) {
      const float* src = table + id * C;
      for (int c = lane; c < C; c += 32) dst[c] = __float2bfloat16_rn(src[c]);
    } else {
      for (int c = lane; c < C; c += 32) dst[c] = __float2bfloat16_rn(0.f);
    }
  }
}

}  // namespace

void embedding_forward_f32(bf16* out, const int32_t* ids, const float* table, int64_t N, int C, int64_t V, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  const unsigned grid = unsigned(std::min<int64_t>((N + kWarps - 1) / kWarps, int64_t(num_sms()) * 32));
  embedding_forward_f32_kernel<<<grid, kWarps * 32, 0, stream>>>(out, ids, table, N, C, V);
  LKC_CHECK_LAUNCH("embedding_forward_f32");
}

}  // namespace lkc
