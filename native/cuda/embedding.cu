// Token embedding, forward (gather) and backward (scatter-add). Backward needs only the ids.
//   forward:  out[n, :] = O(table[ids[n], :])   (table bf16 -> out bf16, f32 -> bf16 rounding to nearest
//             even (a trainable f32 embed_tokens copy in bf16 mode), f32 -> f32)
//   backward: dtable[ids[n], :] += dout[n, :]   (dout f32 or bf16; fp32 atomics: repeated ids add up)
// One warp per token row, rows grid-stride, int64 offsets; 8 elements per lane per step with 16-byte
// accesses when C % 8 == 0 and the pointers are 16-byte aligned. Ids outside [0, V) read nothing (zero
// row forward, no gradient), so a bad id can never fault; the host validates ids and reports them.
#include <algorithm>

#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

constexpr int kWarps = 8;

// out [N, C] of O <- ids [N], table [V, C] of Tb
template <typename O, typename Tb, bool VEC>
__global__ void embedding_forward_kernel(O* out, const int32_t* ids, const Tb* table, int64_t N, int C, int64_t V) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5), nwarps = int64_t(gridDim.x) * kWarps;
  for (int64_t n = warp; n < N; n += nwarps) {
    const int64_t id = ids[n];
    const bool ok = id >= 0 && id < V;
    const Tb* src = table + (ok ? id : 0) * C;
    O* dst = out + n * C;
    if (VEC) {
      for (int c = lane * 8; c < C; c += 256) {
        float v[8] = {};
        if (ok) load8(src + c, v);
        store8(dst + c, v);
      }
    } else {
      for (int c = lane; c < C; c += 32) dst[c] = from_f32<O>(ok ? to_f32(src[c]) : 0.f);
    }
  }
}

// dtable [V, C] f32 += scatter(dout [N, C] of T, ids [N])
template <typename T>
__global__ void embedding_backward_kernel(float* dtable, const T* dout, const int32_t* ids, int64_t N, int C, int64_t V) {
  const int lane = threadIdx.x & 31;
  const int64_t n = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (n >= N) return;
  const int64_t id = ids[n];
  if (id < 0 || id >= V) return;
  float* dst = dtable + id * C;
  const T* src = dout + n * C;
  for (int c = lane; c < C; c += 32) atomicAdd(dst + c, to_f32(src[c]));
}

template <typename O, typename Tb>
void forward_as(O* out, const int32_t* ids, const Tb* table, int64_t N, int C, int64_t V, cudaStream_t stream) {
  const unsigned grid = unsigned(std::min<int64_t>((N + kWarps - 1) / kWarps, int64_t(num_sms()) * 32));
  if (C % 8 == 0 && aligned16(out) && aligned16(table))
    embedding_forward_kernel<O, Tb, true><<<grid, kWarps * 32, 0, stream>>>(out, ids, table, N, C, V);
  else
    embedding_forward_kernel<O, Tb, false><<<grid, kWarps * 32, 0, stream>>>(out, ids, table, N, C, V);
  LKC_CHECK_LAUNCH("embedding_forward");
}

}  // namespace

void embedding_forward(void* out, DType out_t, const int32_t* ids, const void* table, DType table_t, int64_t N, int C, int64_t V,
                       cudaStream_t stream) {
  const bool bf16_to_bf16 = out_t == DType::BF16 && table_t == DType::BF16;
  const bool f32_to_bf16 = out_t == DType::BF16 && table_t == DType::F32;
  const bool f32_to_f32 = out_t == DType::F32 && table_t == DType::F32;
  LKC_REQUIRE(bf16_to_bf16 || f32_to_bf16 || f32_to_f32,
              std::string("embedding gathers a bf16 table into bf16 rows or an f32 table into f32 or bf16 rows, not a ") +
                  dtype_name(table_t) + " table into " + dtype_name(out_t) + " rows.");
  if (N <= 0 || C <= 0) return;
  if (bf16_to_bf16)
    forward_as(static_cast<bf16*>(out), ids, static_cast<const bf16*>(table), N, C, V, stream);
  else if (f32_to_bf16)
    forward_as(static_cast<bf16*>(out), ids, static_cast<const float*>(table), N, C, V, stream);
  else
    forward_as(static_cast<float*>(out), ids, static_cast<const float*>(table), N, C, V, stream);
}

void embedding_backward(float* dtable, const void* dout, DType t, const int32_t* ids, int64_t N, int C, int64_t V, cudaStream_t stream) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16,
              std::string("embedding backward takes an f32 or bf16 gradient, not ") + dtype_name(t) + ".");
  if (N <= 0 || C <= 0) return;
  const unsigned grid = ceil_div(N, kWarps);
  if (t == DType::F32)
    embedding_backward_kernel<<<grid, kWarps * 32, 0, stream>>>(dtable, static_cast<const float*>(dout), ids, N, C, V);
  else
    embedding_backward_kernel<<<grid, kWarps * 32, 0, stream>>>(dtable, static_cast<const bf16*>(dout), ids, N, C, V);
  LKC_CHECK_LAUNCH("embedding_backward");
}

}  // namespace lkc
