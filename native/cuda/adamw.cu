// AdamW step on flat fp32 buffers (LoRA master weights and their state), with torch.optim.AdamW's order
// of operations so fp32 runs match the reference:
//   g' = g · s                                  (s: the clip coefficient, read on the device, or 1)
//   p *= 1 − lr·wd;  m = m + (1 − β1)(g' − m);  v = β2·v + (1 − β2)·g'²
//   p −= (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
// and optionally writes bf16(p) for the bf16 compute copy in the same pass. This op has no backward;
// it needs m and v from the previous step (zeros before step 1). adamw_step_multi updates many tensors
// (a model's LoRA factors: hundreds of small ones) with one launch per kAdamwBatch tensors, their
// pointers passed by value in the kernel's parameters.
#include <algorithm>
#include <cmath>

#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

struct AdamScalars {
  float decay, w1, b2, w2, bc2_sqrt, neg_step, eps;
};

__device__ __forceinline__ void adam1(float& p, float& m, float& v, float g, const AdamScalars& a) {
  p *= a.decay;
  m = m + a.w1 * (g - m);
  v = v * a.b2 + a.w2 * (g * g);
  p = p + a.neg_step * (m / (sqrtf(v) / a.bc2_sqrt + a.eps));
}

// p, m, v [n] updated, p_bf16 [n] (optional) <- g [n] · s; the calling grid's threads stride over [0, n).
__device__ __forceinline__ void adamw_range(float* p, float* m, float* v, bf16* pb, const float* g, float s, int64_t n,
                                            const AdamScalars& a, bool vec) {
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t n4 = vec ? n / 4 * 4 : 0;
  for (int64_t i = tid * 4; i < n4; i += stride * 4) {
    float4 P = *reinterpret_cast<float4*>(p + i), M = *reinterpret_cast<float4*>(m + i), V = *reinterpret_cast<float4*>(v + i);
    const float4 G = *reinterpret_cast<const float4*>(g + i);
    adam1(P.x, M.x, V.x, G.x * s, a);
    adam1(P.y, M.y, V.y, G.y * s, a);
    adam1(P.z, M.z, V.z, G.z * s, a);
    adam1(P.w, M.w, V.w, G.w * s, a);
    *reinterpret_cast<float4*>(p + i) = P;
    *reinterpret_cast<float4*>(m + i) = M;
    *reinterpret_cast<float4*>(v + i) = V;
    if (pb) *reinterpret_cast<uint2*>(pb + i) = uint2{pack_bf16x2(P.x, P.y), pack_bf16x2(P.z, P.w)};
  }
  for (int64_t i = n4 + tid; i < n; i += stride) {
    float P = p[i], M = m[i], V = v[i];
    adam1(P, M, V, g[i] * s, a);
    p[i] = P, m[i] = M, v[i] = V;
    if (pb) pb[i] = __float2bfloat16_rn(P);
  }
}

// Float4 loads and stores need 16-byte alignment (8 for the bf16 copy's four elements).
__host__ __device__ inline bool vectorizable(const float* p, const float* m, const float* v, const float* g, const bf16* pb) {
  const auto al = [](const void* q, uintptr_t k) { return (reinterpret_cast<uintptr_t>(q) & (k - 1)) == 0; };
  return al(p, 16) && al(m, 16) && al(v, 16) && al(g, 16) && (!pb || al(pb, 8));
}

__global__ void adamw_kernel(float* p, float* m, float* v, bf16* pb, const float* g, const float* grad_scale, int64_t n,
                             AdamScalars a, bool vec) {
  adamw_range(p, m, v, pb, g, grad_scale ? grad_scale[0] : 1.f, n, a, vec);
}

// One launch over up to kAdamwBatch tensors: blockIdx.y picks the tensor, the x blocks stride over it.
struct AdamwBatch {
  AdamwTensor t[kAdamwBatch];
};

__global__ void adamw_multi_kernel(AdamwBatch batch, const float* grad_scale, AdamScalars a) {
  const AdamwTensor& t = batch.t[blockIdx.y];
  adamw_range(t.p, t.m, t.v, t.p_bf16, t.g, grad_scale ? grad_scale[0] : 1.f, t.n, a, vectorizable(t.p, t.m, t.v, t.g, t.p_bf16));
}

// Scalars formed in double as torch forms them from Python floats, then rounded to fp32.
AdamScalars scalars(float lr, float beta1, float beta2, float eps, float weight_decay, int step) {
  LKC_REQUIRE(step >= 1, "adamw step numbers start at 1.");
  const double lr_d = lr, b1 = beta1, b2 = beta2;
  AdamScalars a;
  a.decay = float(1.0 - lr_d * double(weight_decay));
  a.w1 = float(1.0 - b1);
  a.b2 = float(b2);
  a.w2 = float(1.0 - b2);
  a.bc2_sqrt = float(std::sqrt(1.0 - std::pow(b2, step)));
  a.neg_step = float(-(lr_d / (1.0 - std::pow(b1, step))));
  a.eps = eps;
  return a;
}

}  // namespace

void adamw_step_multi(const AdamwTensor* tensors, int count, const float* grad_scale, float lr, float beta1, float beta2,
                      float eps, float weight_decay, int step, cudaStream_t stream) {
  const AdamScalars a = scalars(lr, beta1, beta2, eps, weight_decay, step);
  for (int first = 0; first < count; first += kAdamwBatch) {
    AdamwBatch batch{};
    const int k = std::min(kAdamwBatch, count - first);
    int64_t largest = 0;
    for (int i = 0; i < k; i++) {
      const AdamwTensor& t = tensors[first + i];
      LKC_REQUIRE(t.n >= 0, "adamw tensor sizes must not be negative.");
      batch.t[i] = t;
      largest = std::max(largest, t.n);
    }
    if (largest == 0) continue;
    // Enough x blocks for the largest tensor at 4 elements a thread, capped: smaller ones' extra blocks exit at once.
    const unsigned bx = std::min<unsigned>(ceil_div((largest + 3) / 4, 256), 256u);
    adamw_multi_kernel<<<dim3(bx, unsigned(k)), 256, 0, stream>>>(batch, grad_scale, a);
    LKC_CHECK_LAUNCH("adamw_step_multi");
  }
}

void adamw_step(float* p, float* m, float* v, bf16* p_bf16, const float* g, const float* grad_scale, int64_t n, float lr,
                float beta1, float beta2, float eps, float weight_decay, int step, cudaStream_t stream) {
  const AdamScalars a = scalars(lr, beta1, beta2, eps, weight_decay, step);
  if (n <= 0) return;
  const bool vec = vectorizable(p, m, v, g, p_bf16);
  adamw_kernel<<<grid_for((n + 3) / 4, 256), 256, 0, stream>>>(p, m, v, p_bf16, g, grad_scale, n, a, vec);
  LKC_CHECK_LAUNCH("adamw_step");
}

}  // namespace lkc
