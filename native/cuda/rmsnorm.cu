// RMSNorm, forward and backward, on f32 or bf16 tensors (x, w, y, dy, dx of one dtype T). One warp per
// row of C channels (16-byte accesses when C % 8 == 0), or for bf16 rows up to 8192 wide one block per
// row with the row in registers; fp32 statistics. Forward rounds as
// transformers' LlamaRMSNorm does: t = T(x · rstd), then y = T(w · t) (no rounding at all for f32).
// Backward needs x, w and the rstd [N] that forward saved.
//   forward:  rstd = 1 / sqrt(mean(x²) + eps),  y = w · x · rstd
//   backward: g = dy · w,  dx = rstd · (g − x · rstd² · mean(g · x)),  dw += Σ_rows dy · x · rstd
#include <algorithm>
#include <type_traits>

#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

constexpr int kWarps = 8;

// x rounded to T and read back: the storage rounding of an intermediate (the identity for f32).
template <typename T>
__device__ __forceinline__ float round_to(float x) {
  return to_f32(from_f32<T>(x));
}

// out [N, C], rstd [N] <- x [N, C], w [C]; out, x, w of T
template <typename T, bool VEC>
__global__ void __launch_bounds__(kWarps * 32) rmsnorm_forward_kernel(T* out, float* rstd, const T* x, const T* w, int64_t N, int C,
                                                                      float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= N) return;
  const T* xr = x + row * C;
  T* orow = out + row * C;
  float ss = 0.f;
  if (VEC) {
    for (int c = lane * 8; c < C; c += 256) {
      float v[8];
      load8(xr + c, v);
#pragma unroll
      for (int k = 0; k < 8; k++) ss += v[k] * v[k];
    }
  } else {
    for (int c = lane; c < C; c += 32) {
      float v = to_f32(xr[c]);
      ss += v * v;
    }
  }
  const float r = rsqrtf(warp_sum(ss) / C + eps);
  if (lane == 0) rstd[row] = r;
  if (VEC) {
    for (int c = lane * 8; c < C; c += 256) {
      float v[8], g[8];
      load8(xr + c, v);
      load8(w + c, g);
#pragma unroll
      for (int k = 0; k < 8; k++) v[k] = g[k] * round_to<T>(v[k] * r);
      store8(orow + c, v);
    }
  } else {
    for (int c = lane; c < C; c += 32)
      orow[c] = from_f32<T>(to_f32(w[c]) * round_to<T>(to_f32(xr[c]) * r));
  }
}

// bf16 rows of at most kRowThreads · 8 · CHUNKS channels (C % 8 == 0, 16-byte aligned), one block per
// row: each thread loads its 16-byte chunks of the row once into registers, so all of a row's loads
// are in flight together and x is read from memory once (the warp-per-row kernels above loop over
// the row twice). A training step's 2048 rows are 2048 small blocks, all resident in one wave; one
// warp per row would leave too few loads in flight.
constexpr int kRowThreads = 128;

template <int CHUNKS>
__global__ void __launch_bounds__(kRowThreads) rmsnorm_forward_rows_kernel(bf16* out, float* rstd, const bf16* x, const bf16* w, int C,
                                                                           float eps) {
  const int64_t row = blockIdx.x;
  const bf16* xr = x + row * C;
  bf16x8 raw[CHUNKS];
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < CHUNKS; k++) {
    const int c = (k * kRowThreads + threadIdx.x) * 8;
    if (c < C) raw[k] = *reinterpret_cast<const bf16x8*>(xr + c);
  }
#pragma unroll
  for (int k = 0; k < CHUNKS; k++) {
    if ((k * kRowThreads + threadIdx.x) * 8 >= C) continue;
    float v[8];
    unpack8(raw[k], v);
#pragma unroll
    for (int j = 0; j < 8; j++) ss += v[j] * v[j];
  }
  const float r = rsqrtf(block_sum(ss) / C + eps);
  if (threadIdx.x == 0) rstd[row] = r;
#pragma unroll
  for (int k = 0; k < CHUNKS; k++) {
    const int c = (k * kRowThreads + threadIdx.x) * 8;
    if (c >= C) continue;
    float v[8], g[8];
    unpack8(raw[k], v);
    load8(w + c, g);
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] = g[j] * round_to<bf16>(v[j] * r);
    store8(out + row * C + c, v);
  }
}

// dx as rmsnorm_backward_kernel computes it, one block per row with x and dy held in registers.
template <int CHUNKS>
__global__ void __launch_bounds__(kRowThreads) rmsnorm_backward_rows_kernel(bf16* dx, const bf16* dy, const bf16* x, const bf16* w,
                                                                            const float* rstd, int C) {
  const int64_t row = blockIdx.x;
  const bf16 *xr = x + row * C, *dyr = dy + row * C;
  bf16x8 xa[CHUNKS], dya[CHUNKS];
#pragma unroll
  for (int k = 0; k < CHUNKS; k++) {
    const int c = (k * kRowThreads + threadIdx.x) * 8;
    if (c < C) {
      xa[k] = *reinterpret_cast<const bf16x8*>(xr + c);
      dya[k] = *reinterpret_cast<const bf16x8*>(dyr + c);
    }
  }
  const float r = rstd[row];
  float dot = 0.f;  // Σ dy·w·x
#pragma unroll
  for (int k = 0; k < CHUNKS; k++) {
    const int c = (k * kRowThreads + threadIdx.x) * 8;
    if (c >= C) continue;
    float a[8], b[8], g[8];
    unpack8(xa[k], a);
    unpack8(dya[k], b);
    load8(w + c, g);
#pragma unroll
    for (int j = 0; j < 8; j++) dot += b[j] * g[j] * a[j];
  }
  const float m = block_sum(dot) / C * r * r;
#pragma unroll
  for (int k = 0; k < CHUNKS; k++) {
    const int c = (k * kRowThreads + threadIdx.x) * 8;
    if (c >= C) continue;
    float a[8], b[8], g[8], o[8];
    unpack8(xa[k], a);
    unpack8(dya[k], b);
    load8(w + c, g);
#pragma unroll
    for (int j = 0; j < 8; j++) o[j] = r * (b[j] * g[j] - a[j] * m);
    store8(dx + row * C + c, o);
  }
}

// The rows kernels' chunk count for C channels: 0 when C is too wide for them (more than 8192).
int row_chunks(int C) {
  const int per_chunk = kRowThreads * 8;
  return C <= per_chunk ? 1 : C <= 2 * per_chunk ? 2 : C <= 4 * per_chunk ? 4 : C <= 8 * per_chunk ? 8 : 0;
}

// dx [N, C] <- dy [N, C], x [N, C], w [C], rstd [N]; dx, dy, x, w of T
template <typename T, bool VEC>
__global__ void __launch_bounds__(kWarps * 32) rmsnorm_backward_kernel(T* dx, const T* dy, const T* x, const T* w, const float* rstd,
                                                                       int64_t N, int C) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  {
    const int64_t row = int64_t(blockIdx.x) * kWarps + warp;
    if (row >= N) return;
    const T *xr = x + row * C, *dyr = dy + row * C;
    T* dxr = dx + row * C;
    const float r = rstd[row];
    float dot = 0.f;  // Σ g·x
    if (VEC) {
      for (int c = lane * 8; c < C; c += 256) {
        float a[8], b[8], g[8];
        load8(xr + c, a);
        load8(dyr + c, b);
        load8(w + c, g);
#pragma unroll
        for (int k = 0; k < 8; k++) dot += b[k] * g[k] * a[k];
      }
    } else {
      for (int c = lane; c < C; c += 32) dot += to_f32(dyr[c]) * to_f32(w[c]) * to_f32(xr[c]);
    }
    const float m = warp_sum(dot) / C * r * r;
    if (VEC) {
      for (int c = lane * 8; c < C; c += 256) {
        float a[8], b[8], g[8], o[8];
        load8(xr + c, a);
        load8(dyr + c, b);
        load8(w + c, g);
#pragma unroll
        for (int k = 0; k < 8; k++) o[k] = r * (b[k] * g[k] - a[k] * m);
        store8(dxr + c, o);
      }
    } else {
      for (int c = lane; c < C; c += 32) {
        const float a = to_f32(xr[c]), b = to_f32(dyr[c]);
        dxr[c] = from_f32<T>(r * (b * to_f32(w[c]) - a * m));
      }
    }
  }
}

// dw [C] += Σ_rows dy · x · rstd: a column reduction. Each thread owns two adjacent columns over a
// chunk of rows (a warp reads 128 contiguous bytes per row for bf16), then adds its sums to dw once.
template <typename T>
__global__ void rmsnorm_dw_kernel(float* dw, const T* dy, const T* x, const float* rstd, int64_t N, int C, int64_t rows_per_block) {
  const int c = (blockIdx.x * blockDim.x + threadIdx.x) * 2;
  if (c >= C) return;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_block, r1 = min(N, r0 + rows_per_block);
  const bool pair = c + 1 < C;
  float a0 = 0.f, a1 = 0.f;
#pragma unroll 4
  for (int64_t r = r0; r < r1; r++) {
    const float rs = rstd[r];
    const T *dyr = dy + r * C + c, *xr = x + r * C + c;
    a0 += to_f32(dyr[0]) * to_f32(xr[0]) * rs;
    if (pair) a1 += to_f32(dyr[1]) * to_f32(xr[1]) * rs;
  }
  atomicAdd(dw + c, a0);
  if (pair) atomicAdd(dw + c + 1, a1);
}

template <typename T>
void forward_as(T* out, float* rstd, const T* x, const T* w, int64_t N, int C, float eps, cudaStream_t stream) {
  const bool vec = C % 8 == 0 && aligned16(out) && aligned16(x) && aligned16(w);
  const unsigned grid = ceil_div(N, kWarps);
  if constexpr (std::is_same_v<T, bf16>) {
    const int chunks = vec ? row_chunks(C) : 0;
    if (chunks) {
      const unsigned rows = unsigned(N);
      auto run = [&](auto kernel) { kernel<<<rows, kRowThreads, 0, stream>>>(out, rstd, x, w, C, eps); };
      if (chunks == 1) run(rmsnorm_forward_rows_kernel<1>);
      else if (chunks == 2) run(rmsnorm_forward_rows_kernel<2>);
      else if (chunks == 4) run(rmsnorm_forward_rows_kernel<4>);
      else run(rmsnorm_forward_rows_kernel<8>);
      LKC_CHECK_LAUNCH("rmsnorm_forward");
      return;
    }
  }
  if (vec)
    rmsnorm_forward_kernel<T, true><<<grid, kWarps * 32, 0, stream>>>(out, rstd, x, w, N, C, eps);
  else
    rmsnorm_forward_kernel<T, false><<<grid, kWarps * 32, 0, stream>>>(out, rstd, x, w, N, C, eps);
  LKC_CHECK_LAUNCH("rmsnorm_forward");
}

template <typename T>
void backward_as(T* dx, float* dw, const T* dy, const T* x, const T* w, const float* rstd, int64_t N, int C, cudaStream_t stream) {
  const bool vec = C % 8 == 0 && aligned16(dx) && aligned16(dy) && aligned16(x) && aligned16(w);
  const unsigned grid = ceil_div(N, kWarps);
  int chunks = 0;
  if constexpr (std::is_same_v<T, bf16>) chunks = vec ? row_chunks(C) : 0;
  if (chunks) {
    if constexpr (std::is_same_v<T, bf16>) {
      const unsigned rows = unsigned(N);
      auto run = [&](auto kernel) { kernel<<<rows, kRowThreads, 0, stream>>>(dx, dy, x, w, rstd, C); };
      if (chunks == 1) run(rmsnorm_backward_rows_kernel<1>);
      else if (chunks == 2) run(rmsnorm_backward_rows_kernel<2>);
      else if (chunks == 4) run(rmsnorm_backward_rows_kernel<4>);
      else run(rmsnorm_backward_rows_kernel<8>);
    }
  } else if (vec)
    rmsnorm_backward_kernel<T, true><<<grid, kWarps * 32, 0, stream>>>(dx, dy, x, w, rstd, N, C);
  else
    rmsnorm_backward_kernel<T, false><<<grid, kWarps * 32, 0, stream>>>(dx, dy, x, w, rstd, N, C);
  if (dw) {
    LKC_CHECK_LAUNCH("rmsnorm_backward");
    const unsigned gx = ceil_div(C, 2 * 256);
    // About 8 blocks per SM in all, each over a chunk of at least 16 rows.
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>((N + 15) / 16, int64_t(num_sms()) * 8 / gx));
    const int64_t rows_per_block = (N + chunks - 1) / chunks;
    rmsnorm_dw_kernel<T><<<dim3(gx, unsigned((N + rows_per_block - 1) / rows_per_block)), 256, 0, stream>>>(dw, dy, x, rstd, N, C,
                                                                                                             rows_per_block);
  }
  LKC_CHECK_LAUNCH("rmsnorm_backward");
}

void check(DType t, int C) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, std::string("rmsnorm takes f32 or bf16 tensors, not ") + dtype_name(t) + ".");
  LKC_REQUIRE(C > 0, "rmsnorm needs at least one channel.");
}

}  // namespace

void rmsnorm_forward(void* out, float* rstd, const void* x, const void* w, DType t, int64_t N, int C, float eps, cudaStream_t stream) {
  check(t, C);
  if (N <= 0) return;
  if (t == DType::F32)
    forward_as(static_cast<float*>(out), rstd, static_cast<const float*>(x), static_cast<const float*>(w), N, C, eps, stream);
  else
    forward_as(static_cast<bf16*>(out), rstd, static_cast<const bf16*>(x), static_cast<const bf16*>(w), N, C, eps, stream);
}

void rmsnorm_backward(void* dx, float* dw, const void* dy, const void* x, const void* w, DType t, const float* rstd, int64_t N, int C,
                      cudaStream_t stream) {
  check(t, C);
  if (N <= 0) return;
  if (t == DType::F32)
    backward_as(static_cast<float*>(dx), dw, static_cast<const float*>(dy), static_cast<const float*>(x), static_cast<const float*>(w),
                rstd, N, C, stream);
  else
    backward_as(static_cast<bf16*>(dx), dw, static_cast<const bf16*>(dy), static_cast<const bf16*>(x), static_cast<const bf16*>(w), rstd,
                N, C, stream);
}

}  // namespace lkc
