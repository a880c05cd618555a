// Elementwise kernels: add, scale, axpy, casts, fill, Σx² and the clip coefficient. Memory-bound: one
// pass, 16-byte accesses (8 elements per thread per step) when the pointers allow, grid-stride loops
// sized to fill the chip, fp32 math whatever the storage dtype. Their backward passes are themselves
// elementwise (add: identity to both inputs; scale: scale; cast: cast back), so they need no kernels.
#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

constexpr int kBlock = 256;

// Runs f8(i) on chunks of 8 at i = 0, 8, … below n8, and f1(i) on the scalar tail [n8, n).
template <typename F8, typename F1>
__device__ __forceinline__ void for_each8(int64_t n, bool vec, F8 f8, F1 f1) {
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t n8 = vec ? n / 8 * 8 : 0;
  for (int64_t i = tid * 8; i < n8; i += stride * 8) f8(i);
  for (int64_t i = n8 + tid; i < n; i += stride) f1(i);
}

// out[n] = a[n] + b[n]
template <typename T>
__global__ void add_kernel(T* out, const T* a, const T* b, int64_t n, bool vec) {
  for_each8(
      n, vec,
      [&](int64_t i) {
        float x[8], y[8];
        load8(a + i, x);
        load8(b + i, y);
#pragma unroll
        for (int k = 0; k < 8; k++) x[k] += y[k];
        store8(out + i, x);
      },
      [&](int64_t i) { out[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i])); });
}

// out[n] = alpha · x[n]
template <typename T>
__global__ void scale_kernel(T* out, const T* x, float alpha, int64_t n, bool vec) {
  for_each8(
      n, vec,
      [&](int64_t i) {
        float v[8];
        load8(x + i, v);
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] *= alpha;
        store8(out + i, v);
      },
      [&](int64_t i) { out[i] = from_f32<T>(alpha * to_f32(x[i])); });
}

// y[n] += alpha · x[n]   (y and x may differ in dtype: bf16 gradients into f32 accumulators)
template <typename Y, typename X>
__global__ void axpy_kernel(Y* y, const X* x, float alpha, int64_t n, bool vec) {
  for_each8(
      n, vec,
      [&](int64_t i) {
        float a[8], b[8];
        load8(y + i, a);
        load8(x + i, b);
#pragma unroll
        for (int k = 0; k < 8; k++) a[k] += alpha * b[k];
        store8(y + i, a);
      },
      [&](int64_t i) { y[i] = from_f32<Y>(to_f32(y[i]) + alpha * to_f32(x[i])); });
}

// out[n] = (O) in[n], round to nearest even
template <typename O, typename I>
__global__ void cast_kernel(O* out, const I* in, int64_t n, bool vec) {
  for_each8(
      n, vec,
      [&](int64_t i) {
        float v[8];
        load8(in + i, v);
        store8(out + i, v);
      },
      [&](int64_t i) { out[i] = from_f32<O>(to_f32(in[i])); });
}

template <typename T>
__global__ void fill_kernel(T* out, float value, int64_t n, bool vec) {
  for_each8(
      n, vec,
      [&](int64_t i) {
        float v[8];
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = value;
        store8(out + i, v);
      },
      [&](int64_t i) { out[i] = from_f32<T>(value); });
}

// acc[0] += Σ x[n]²: per-thread fp32 partials, one atomic per block.
template <typename T>
__global__ void sum_squares_kernel(float* acc, const T* x, int64_t n, bool vec) {
  float s = 0.f;
  for_each8(
      n, vec,
      [&](int64_t i) {
        float v[8];
        load8(x + i, v);
#pragma unroll
        for (int k = 0; k < 8; k++) s += v[k] * v[k];
      },
      [&](int64_t i) {
        float v = to_f32(x[i]);
        s += v * v;
      });
  s = block_sum(s);
  if (threadIdx.x == 0) atomicAdd(acc, s);
}

__global__ void clip_coef_kernel(float* coef, float* norm, const float* sumsq, float max_norm) {
  const float total = sqrtf(sumsq[0]);
  if (norm) norm[0] = total;
  coef[0] = fminf(1.f, max_norm / (total + 1e-6f));
}

bool vec_ok(std::initializer_list<const void*> ps) {
  for (const void* p : ps)
    if (!aligned16(p)) return false;
  return true;
}

unsigned grid8(int64_t n) { return grid_for((n + 7) / 8, kBlock); }

void require_float(DType t, const char* op) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, std::string(op) + " takes f32 or bf16 tensors, not " + dtype_name(t) + ".");
}

}  // namespace

void add(void* out, const void* a, const void* b, DType t, int64_t n, cudaStream_t stream) {
  require_float(t, "add");
  if (n <= 0) return;
  const bool vec = vec_ok({out, a, b});
  if (t == DType::F32)
    add_kernel<<<grid8(n), kBlock, 0, stream>>>(static_cast<float*>(out), static_cast<const float*>(a), static_cast<const float*>(b), n, vec);
  else
    add_kernel<<<grid8(n), kBlock, 0, stream>>>(static_cast<bf16*>(out), static_cast<const bf16*>(a), static_cast<const bf16*>(b), n, vec);
  LKC_CHECK_LAUNCH("add");
}

void scale(void* out, const void* x, float alpha, DType t, int64_t n, cudaStream_t stream) {
  require_float(t, "scale");
  if (n <= 0) return;
  const bool vec = vec_ok({out, x});
  if (t == DType::F32)
    scale_kernel<<<grid8(n), kBlock, 0, stream>>>(static_cast<float*>(out), static_cast<const float*>(x), alpha, n, vec);
  else
    scale_kernel<<<grid8(n), kBlock, 0, stream>>>(static_cast<bf16*>(out), static_cast<const bf16*>(x), alpha, n, vec);
  LKC_CHECK_LAUNCH("scale");
}

void axpy(void* y, DType yt, const void* x, DType xt, float alpha, int64_t n, cudaStream_t stream) {
  require_float(yt, "axpy");
  require_float(xt, "axpy");
  if (n <= 0) return;
  const bool vec = vec_ok({y, x});
  const unsigned g = grid8(n);
  if (yt == DType::F32 && xt == DType::F32)
    axpy_kernel<<<g, kBlock, 0, stream>>>(static_cast<float*>(y), static_cast<const float*>(x), alpha, n, vec);
  else if (yt == DType::F32)
    axpy_kernel<<<g, kBlock, 0, stream>>>(static_cast<float*>(y), static_cast<const bf16*>(x), alpha, n, vec);
  else if (xt == DType::F32)
    axpy_kernel<<<g, kBlock, 0, stream>>>(static_cast<bf16*>(y), static_cast<const float*>(x), alpha, n, vec);
  else
    axpy_kernel<<<g, kBlock, 0, stream>>>(static_cast<bf16*>(y), static_cast<const bf16*>(x), alpha, n, vec);
  LKC_CHECK_LAUNCH("axpy");
}

void cast(void* out, DType ot, const void* in, DType it, int64_t n, cudaStream_t stream) {
  require_float(ot, "cast");
  require_float(it, "cast");
  if (n <= 0) return;
  const bool vec = vec_ok({out, in});
  const unsigned g = grid8(n);
  if (ot == DType::BF16 && it == DType::F32)
    cast_kernel<<<g, kBlock, 0, stream>>>(static_cast<bf16*>(out), static_cast<const float*>(in), n, vec);
  else if (ot == DType::F32 && it == DType::BF16)
    cast_kernel<<<g, kBlock, 0, stream>>>(static_cast<float*>(out), static_cast<const bf16*>(in), n, vec);
  else
    LKC_CUDA(cudaMemcpyAsync(out, in, size_t(n) * dtype_size(ot), cudaMemcpyDeviceToDevice, stream));
  LKC_CHECK_LAUNCH("cast");
}

void fill(void* out, DType t, float value, int64_t n, cudaStream_t stream) {
  require_float(t, "fill");
  if (n <= 0) return;
  const bool vec = vec_ok({out});
  if (t == DType::F32)
    fill_kernel<<<grid8(n), kBlock, 0, stream>>>(static_cast<float*>(out), value, n, vec);
  else
    fill_kernel<<<grid8(n), kBlock, 0, stream>>>(static_cast<bf16*>(out), value, n, vec);
  LKC_CHECK_LAUNCH("fill");
}

void sum_squares(float* acc, const void* x, DType t, int64_t n, cudaStream_t stream) {
  require_float(t, "sum_squares");
  if (n <= 0) return;
  const bool vec = vec_ok({x});
  if (t == DType::F32)
    sum_squares_kernel<<<grid8(n), kBlock, 0, stream>>>(acc, static_cast<const float*>(x), n, vec);
  else
    sum_squares_kernel<<<grid8(n), kBlock, 0, stream>>>(acc, static_cast<const bf16*>(x), n, vec);
  LKC_CHECK_LAUNCH("sum_squares");
}

void clip_coef(float* coef, float* norm, const float* sumsq, float max_norm, cudaStream_t stream) {
  clip_coef_kernel<<<1, 1, 0, stream>>>(coef, norm, sumsq, max_norm);
  LKC_CHECK_LAUNCH("clip_coef");
}

}  // namespace lkc
