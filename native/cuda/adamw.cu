// AdamW step on flat fp32 buffers (LoRA master weights and their state), with torch.optim.AdamW's order
// of operations so fp32 runs match the reference:
//   g' = g · s                                  (s: the clip coefficient, read on the device, or 1)
//   p *= 1 − lr·wd;  m = m + (1 − β1)(g' − m);  v = β2·v + (1 − β2)·g'²
//   p −= (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
// and optionally writes bf16(p) for the bf16 compute copy in the same pass. This op has no backward;
// it needs m and v from the previous step (zeros before step 1).
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

// p, m, v [n] updated, p_bf16 [n] (optional) <- g [n], grad_scale[0] (optional)
__global__ void adamw_kernel(float* p, float* m, float* v, bf16* pb, const float* g, const float* grad_scale, int64_t n,
                             AdamScalars a, bool vec) {
  const float s = grad_scale ? grad_scale[0] : 1.f;
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
    if (pb) {
      uint2 o{pack_bf16x2(P.x, P.y), pack_bf16x2(P.z, P.w)};
      *reinterpret_cast<uint2*>(pb + i) = o;
    }
  }
  for (int64_t i = n4 + tid; i < n; i += stride) {
    float P = p[i], M = m[i], V = v[i];
    adam1(P, M, V, g[i] * s, a);
    p[i] = P, m[i] = M, v[i] = V;
    if (pb) pb[i] = __float2bfloat16_rn(P);
  }
}

}  // namespace

void adamw_step(float* p, float* m, float* v, bf16* p_bf16, const float* g, const float* grad_scale, int64_t n, float lr,
                float beta1, float beta2, float eps, float weight_decay, int step, cudaStream_t stream) {
  LKC_REQUIRE(step >= 1, "adamw step numbers start at 1.");
  if (n <= 0) return;
  // Scalars formed in double as torch forms them from Python floats, then rounded to fp32.
  const double lr_d = lr, b1 = beta1, b2 = beta2;
  AdamScalars a;
  a.decay = float(1.0 - lr_d * double(weight_decay));
  a.w1 = float(1.0 - b1);
  a.b2 = float(b2);
  a.w2 = float(1.0 - b2);
  a.bc2_sqrt = float(std::sqrt(1.0 - std::pow(b2, step)));
  a.neg_step = float(-(lr_d / (1.0 - std::pow(b1, step))));
  a.eps = eps;
  const bool vec = aligned16(p) && aligned16(m) && aligned16(v) && aligned16(g) && (!p_bf16 || (reinterpret_cast<uintptr_t>(p_bf16) & 7) == 0);
  adamw_kernel<<<grid_for((n + 3) / 4, 256), 256, 0, stream>>>(p, m, v, p_bf16, g, grad_scale, n, a, vec);
  LKC_CHECK_LAUNCH("adamw_step");
}

}  // namespace lkc
