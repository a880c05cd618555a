// Token embedding, forward (gather) and backward (scatter-add). Backward needs only the ids.
//   forward:  out[n, :] = table[ids[n], :]
//   backward: dtable[ids[n], :] += dout[n, :]   (fp32 atomics: repeated ids add up)
// One warp per token row; 16-byte accesses when C % 8 == 0. Ids outside [0, V) read nothing (zero row
// forward, no gradient), so a bad id can never fault; the host validates ids and reports them.
#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

constexpr int kWarps = 8;

// out [N, C] <- ids [N], table [V, C]
template <bool VEC>
__global__ void embedding_forward_kernel(bf16* out, const int32_t* ids, const bf16* table, int64_t N, int C, int64_t V) {
  const int lane = threadIdx.x & 31;
  const int64_t n = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (n >= N) return;
  const int64_t id = ids[n];
  const bool ok = id >= 0 && id < V;
  const bf16* src = table + (ok ? id : 0) * C;
  bf16* dst = out + n * C;
  if (VEC) {
    for (int c = lane * 8; c < C; c += 256)
      *reinterpret_cast<bf16x8*>(dst + c) = ok ? *reinterpret_cast<const bf16x8*>(src + c) : bf16x8{};
  } else {
    for (int c = lane; c < C; c += 32) dst[c] = ok ? src[c] : __float2bfloat16_rn(0.f);
  }
}

// dtable [V, C] += scatter(dout [N, C], ids [N])
__global__ void embedding_backward_kernel(float* dtable, const bf16* dout, const int32_t* ids, int64_t N, int C, int64_t V) {
  const int lane = threadIdx.x & 31;
  const int64_t n = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (n >= N) return;
  const int64_t id = ids[n];
  if (id < 0 || id >= V) return;
  float* dst = dtable + id * C;
  const bf16* src = dout + n * C;
  for (int c = lane; c < C; c += 32) atomicAdd(dst + c, __bfloat162float(src[c]));
}

}  // namespace

void embedding_forward(bf16* out, const int32_t* ids, const bf16* table, int64_t N, int C, int64_t V, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  const unsigned grid = ceil_div(N, kWarps);
  if (C % 8 == 0 && aligned16(out) && aligned16(table))
    embedding_forward_kernel<true><<<grid, kWarps * 32, 0, stream>>>(out, ids, table, N, C, V);
  else
    embedding_forward_kernel<false><<<grid, kWarps * 32, 0, stream>>>(out, ids, table, N, C, V);
  LKC_CHECK_LAUNCH("embedding_forward");
}

void embedding_backward(float* dtable, const bf16* dout, const int32_t* ids, int64_t N, int C, int64_t V, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  embedding_backward_kernel<<<ceil_div(N, kWarps), kWarps * 32, 0, stream>>>(dtable, dout, ids, N, C, V);
  LKC_CHECK_LAUNCH("embedding_backward");
}

}  // namespace lkc
