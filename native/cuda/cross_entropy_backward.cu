// Cross-entropy backward over given logits [N, V] (the unfused path: the logits exist in full):
//   dlogits[n, v] = g · (exp(logits[n, v] − lse[n]) − [v == target[n]]),  g = grad_loss[0]
// with lse [N] saved by cross_entropy_forward; rows whose target is −100 (or outside [0, V), which the
// forward also gives loss 0) get zeros. fp32 math, one rounding to the logits' dtype. Every element is
// read and written by the same thread, so dlogits may alias logits (the gradient overwrites them).
// One block per row, rows grid-stride (int64 indices), threads strided over the vocabulary.
// Also here: cross_entropy_zero_ignored, which gives cross_entropy_forward's outputs the CPU backend's
// convention for ignored rows (lse 0 as well as loss 0).
#include <algorithm>

#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

constexpr int kBlock = 256;
constexpr int32_t kIgnore = -100;

// dlogits [N, V] <- logits [N, V], targets [N], lse [N], grad_loss [1]
template <typename T>
__global__ void __launch_bounds__(kBlock) ce_backward_kernel(T* dlogits, const T* logits, const int32_t* targets, const float* lse,
                                                             const float* grad_loss, int64_t N, int64_t V) {
  const float g = grad_loss[0];
  for (int64_t row = blockIdx.x; row < N; row += gridDim.x) {
    const int64_t t = targets[row];
    const bool ignored = t == kIgnore || t < 0 || t >= V;
    const float l = lse[row];
    const T* z = logits + row * V;
    T* d = dlogits + row * V;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      float v = 0.f;
      if (!ignored) {
        const float p = expf(to_f32(z[j]) - l);
        v = g * (p - (j == t ? 1.f : 0.f));
      }
      d[j] = from_f32<T>(v);
    }
  }
}

// loss, lse [N] = 0 on rows whose target is −100 or outside [0, V)
__global__ void ce_zero_ignored_kernel(float* loss, float* lse, const int32_t* targets, int64_t N, int64_t V) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = targets[i];
    if (t == kIgnore || t < 0 || t >= V) {
      if (loss) loss[i] = 0.f;
      if (lse) lse[i] = 0.f;
    }
  }
}

}  // namespace

void cross_entropy_zero_ignored(float* loss, float* lse, const int32_t* targets, int64_t N, int64_t V, cudaStream_t stream) {
  if (N <= 0) return;
  ce_zero_ignored_kernel<<<grid_for(N, 256), 256, 0, stream>>>(loss, lse, targets, N, V);
  LKC_CHECK_LAUNCH("cross_entropy_zero_ignored");
}

void cross_entropy_backward(void* dlogits, const void* logits, DType t, const int32_t* targets, const float* lse,
                            const float* grad_loss, int64_t N, int64_t V, cudaStream_t stream) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, "cross-entropy logits must be f32 or bf16.");
  LKC_REQUIRE(N >= 0 && V >= 0, "cross-entropy sizes must be non-negative.");
  if (N == 0 || V == 0) return;
  const unsigned grid = unsigned(std::min<int64_t>(N, int64_t(num_sms()) * 32));
  if (t == DType::F32)
    ce_backward_kernel<<<grid, kBlock, 0, stream>>>(static_cast<float*>(dlogits), static_cast<const float*>(logits), targets, lse,
                                                    grad_loss, N, V);
  else
    ce_backward_kernel<<<grid, kBlock, 0, stream>>>(static_cast<bf16*>(dlogits), static_cast<const bf16*>(logits), targets, lse,
                                                    grad_loss, N, V);
  LKC_CHECK_LAUNCH("cross_entropy_backward");
}

}  // namespace lkc
