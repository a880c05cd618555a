// SwiGLU gate, forward and backward: h = silu(g) · u with silu(g) = g · σ(g). Backward needs g and u
// (nothing saved beyond the inputs):
//   du = dh · silu(g),   dg = dh · u · σ(g) · (1 + g · (1 − σ(g)))
// Memory-bound: 16-byte accesses, fp32 math.
#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + __expf(-x)); }

// h [n] <- g [n], u [n]
__global__ void swiglu_forward_kernel(bf16* h, const bf16* g, const bf16* u, int64_t n, bool vec) {
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t n8 = vec ? n / 8 * 8 : 0;
  for (int64_t i = tid * 8; i < n8; i += stride * 8) {
    float a[8], b[8];
    load8(g + i, a);
    load8(u + i, b);
#pragma unroll
    for (int k = 0; k < 8; k++) a[k] = a[k] * sigmoid(a[k]) * b[k];
    store8(h + i, a);
  }
  for (int64_t i = n8 + tid; i < n; i += stride) {
    const float a = to_f32(g[i]);
    h[i] = __float2bfloat16_rn(a * sigmoid(a) * to_f32(u[i]));
  }
}

// dg [n], du [n] <- dh [n], g [n], u [n]
__global__ void swiglu_backward_kernel(bf16* dg, bf16* du, const bf16* dh, const bf16* g, const bf16* u, int64_t n, bool vec) {
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t n8 = vec ? n / 8 * 8 : 0;
  for (int64_t i = tid * 8; i < n8; i += stride * 8) {
    float a[8], b[8], d[8], og[8], ou[8];
    load8(g + i, a);
    load8(u + i, b);
    load8(dh + i, d);
#pragma unroll
    for (int k = 0; k < 8; k++) {
      const float s = sigmoid(a[k]);
      ou[k] = d[k] * a[k] * s;
      og[k] = d[k] * b[k] * s * (1.f + a[k] * (1.f - s));
    }
    store8(dg + i, og);
    store8(du + i, ou);
  }
  for (int64_t i = n8 + tid; i < n; i += stride) {
    const float a = to_f32(g[i]), b = to_f32(u[i]), d = to_f32(dh[i]), s = sigmoid(a);
    du[i] = __float2bfloat16_rn(d * a * s);
    dg[i] = __float2bfloat16_rn(d * b * s * (1.f + a * (1.f - s)));
  }
}

}  // namespace

void swiglu_forward(bf16* h, const bf16* g, const bf16* u, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const bool vec = aligned16(h) && aligned16(g) && aligned16(u);
  swiglu_forward_kernel<<<grid_for((n + 7) / 8, 256), 256, 0, stream>>>(h, g, u, n, vec);
  LKC_CHECK_LAUNCH("swiglu_forward");
}

void swiglu_backward(bf16* dg, bf16* du, const bf16* dh, const bf16* g, const bf16* u, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const bool vec = aligned16(dg) && aligned16(du) && aligned16(dh) && aligned16(g) && aligned16(u);
  swiglu_backward_kernel<<<grid_for((n + 7) / 8, 256), 256, 0, stream>>>(dg, du, dh, g, u, n, vec);
  LKC_CHECK_LAUNCH("swiglu_backward");
}

}  // namespace lkc
