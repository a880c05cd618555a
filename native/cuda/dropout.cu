// Inverted dropout with the CPU backend's mask, bit for bit (native/cpu/dropout.cc), so a run gives the
// same masks on either device: element i of the flat tensor is kept when the top 24 bits of
// splitmix64(key + i·φ) are ≥ llround(p·2²⁴), key = splitmix64(seed ^ 0x6a09e667f3bcc909), and
// out[i] = x[i] · (kept ? 1/(1 − p) : 0) in fp32 (x·0 as torch does: inf·0 = NaN), rounded once to the
// dtype. The mask is a counter-based hash, never stored: backward is the same call on dy with the same
// seed. The key, threshold and scale are formed on the host with the CPU's exact expressions.
#include <cmath>

#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// splitmix64's output function (host and device).
__host__ __device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// out [n] <- x [n]
template <typename T>
__global__ void dropout_kernel(T* out, const T* x, int64_t n, uint64_t key, uint64_t threshold, float scale) {
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = tid; i < n; i += stride) {
    const uint64_t h = mix64(key + static_cast<uint64_t>(i) * kGolden);
    out[i] = from_f32<T>(__fmul_rn(to_f32(x[i]), (h >> 40) >= threshold ? scale : 0.0f));
  }
}

}  // namespace

void dropout(void* out, const void* x, DType t, float p, uint64_t seed, int64_t n, cudaStream_t stream) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, std::string("dropout takes f32 or bf16 tensors, not ") + dtype_name(t) + ".");
  LKC_REQUIRE(p >= 0.0f && p <= 1.0f, "dropout probability must be in [0, 1].");
  if (n <= 0) return;
  const uint64_t key = mix64(seed ^ 0x6a09e667f3bcc909ULL);
  const uint64_t threshold = static_cast<uint64_t>(std::llround(static_cast<double>(p) * 16777216.0));
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  const unsigned grid = grid_for(n, 256);
  if (t == DType::F32)
    dropout_kernel<<<grid, 256, 0, stream>>>(static_cast<float*>(out), static_cast<const float*>(x), n, key, threshold, scale);
  else
    dropout_kernel<<<grid, 256, 0, stream>>>(static_cast<bf16*>(out), static_cast<const bf16*>(x), n, key, threshold, scale);
  LKC_CHECK_LAUNCH("dropout");
}

}  // namespace lkc
