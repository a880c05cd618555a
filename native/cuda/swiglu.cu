// SwiGLU gate, forward and backward, on f32 or bf16 tensors (all of one dtype T): h = silu(g) · u with
// silu(g) = g · σ(g). Backward needs g and u (nothing saved beyond the inputs):
//   du = dh · silu(g),   dg = dh · u · σ(g) · (1 + g · (1 − σ(g)))
// Memory-bound: 16-byte accesses, fp32 math.
#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + __expf(-x)); }

// h [n] <- g [n], u [n]; all of T
template <typename T>
__global__ void swiglu_forward_kernel(T* h, const T* g, const T* u, int64_t n, bool vec) {
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
    h[i] = from_f32<T>(a * sigmoid(a) * to_f32(u[i]));
  }
}

// dg [n], du [n] <- dh [n], g [n], u [n]; all of T
template <typename T>
__global__ void swiglu_backward_kernel(T* dg, T* du, const T* dh, const T* g, const T* u, int64_t n, bool vec) {
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
    du[i] = from_f32<T>(d * a * s);
    dg[i] = from_f32<T>(d * b * s * (1.f + a * (1.f - s)));
  }
}

void require_float(DType t, const char* op) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, std::string(op) + " takes f32 or bf16 tensors, not " + dtype_name(t) + ".");
}

}  // namespace

void swiglu_forward(void* h, const void* g, const void* u, DType t, int64_t n, cudaStream_t stream) {
  require_float(t, "swiglu_forward");
  if (n <= 0) return;
  const bool vec = aligned16(h) && aligned16(g) && aligned16(u);
  const unsigned grid = grid_for((n + 7) / 8, 256);
  if (t == DType::F32)
    swiglu_forward_kernel<<<grid, 256, 0, stream>>>(static_cast<float*>(h), static_cast<const float*>(g), static_cast<const float*>(u), n,
                                                    vec);
  else
    swiglu_forward_kernel<<<grid, 256, 0, stream>>>(static_cast<bf16*>(h), static_cast<const bf16*>(g), static_cast<const bf16*>(u), n,
                                                    vec);
  LKC_CHECK_LAUNCH("swiglu_forward");
}

void swiglu_backward(void* dg, void* du, const void* dh, const void* g, const void* u, DType t, int64_t n, cudaStream_t stream) {
  require_float(t, "swiglu_backward");
  if (n <= 0) return;
  const bool vec = aligned16(dg) && aligned16(du) && aligned16(dh) && aligned16(g) && aligned16(u);
  const unsigned grid = grid_for((n + 7) / 8, 256);
  if (t == DType::F32)
    swiglu_backward_kernel<<<grid, 256, 0, stream>>>(static_cast<float*>(dg), static_cast<float*>(du), static_cast<const float*>(dh),
                                                     static_cast<const float*>(g), static_cast<const float*>(u), n, vec);
  else
    swiglu_backward_kernel<<<grid, 256, 0, stream>>>(static_cast<bf16*>(dg), static_cast<bf16*>(du), static_cast<const bf16*>(dh),
                                                     static_cast<const bf16*>(g), static_cast<const bf16*>(u), n, vec);
  LKC_CHECK_LAUNCH("swiglu_backward");
}

}  // namespace lkc
