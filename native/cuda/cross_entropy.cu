// Fused linear + cross-entropy over vocabulary chunks, with h and W (and dh) all bf16 or all f32. The
// logits h · Wᵀ exist only [N, chunk] at a time (fp32, from a bf16·bf16 or an exact f32·f32 cuBLASLt
// GEMM), never as the full [N, V] matrix or its log-softmax.
//   forward:      per chunk, logits = h · W_cᵀ, then each row's running (max, Σexp) is merged with the
//                 chunk's (online logsumexp) and the target logit picked when it falls in the chunk.
//                 lse[n] = max + log Σexp, loss[n] = lse[n] − logit[n, target] (0 for target −100).
//   forward_grad: the same, and also the head's input gradient for a unit loss gradient,
//                 dh_unit = softmax(h Wᵀ) · W − W[target], accumulated as flash attention accumulates
//                 its output: per chunk P = exp(logit − m) (m the running max; written in h's dtype)
//                 and dh_unit += P · W_c, the row rescaled by exp(m_old − m) when its max moves; after
//                 the last chunk dh_unit = dh_unit / Σexp − W[target] (0 for ignored rows). Training
//                 then needs two GEMMs per chunk instead of three (no logits recomputed in backward),
//                 and backward only scales dh_unit by the loss gradient (scale_by_scalar).
#include <algorithm>
#include <type_traits>

#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

constexpr int kBlock = 256;
constexpr int32_t kIgnore = -100;

template <typename T>
constexpr DType kDType = std::is_same_v<T, float> ? DType::F32 : DType::BF16;

// Per-thread online (max, Σexp) over a strided slice of one row, then merged across the block.
template <typename T>
__device__ void row_stats(const T* z, int64_t n, float& M, float& S) {
  float m = -INFINITY, s = 0.f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const float x = to_f32(z[j]);
    if (x > m) {
      s = s * __expf(m - x) + 1.f;
      m = x;
    } else {
      s += __expf(x - m);
    }
  }
  M = block_max(m);
  s = m == -INFINITY ? 0.f : s * __expf(m - M);
  S = block_sum(s);
}

// Running stats m, s, zt [N] merged with chunk logits [N, vc] covering vocab ids [v0, v0 + vc).
__global__ void __launch_bounds__(kBlock) ce_chunk_stats_kernel(float* m, float* s, float* zt, const float* logits,
                                                                const int32_t* targets, int vc, int64_t v0, bool first) {
  const int64_t row = blockIdx.x;
  const float* z = logits + row * vc;
  float M, S;
  row_stats(z, vc, M, S);
  if (threadIdx.x == 0) {
    if (first) {
      m[row] = M;
      s[row] = S;
      zt[row] = 0.f;
    } else {
      const float mo = m[row], mn = fmaxf(mo, M);
      s[row] = s[row] * __expf(mo - mn) + S * __expf(M - mn);
      m[row] = mn;
    }
    const int64_t t = targets[row];
    if (t >= v0 && t < v0 + vc) zt[row] = z[t - v0];
  }
}

// loss, lse [N] <- m, s, zt [N]
__global__ void ce_finish_kernel(float* loss, float* lse, const float* m, const float* s, const float* zt, const int32_t* targets,
                                 int64_t N) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  const float l = m[i] + logf(s[i]);
  if (lse) lse[i] = l;
  loss[i] = targets[i] == kIgnore ? 0.f : l - zt[i];
}

// One chunk of forward_grad, a block per row: P [N, vc] of T <- exp(logits − m_new) with m_new the
// row max over the chunks so far; m, s (Σexp), zt (target logit) updated; the row of dh_unit [N, C]
// rescaled by exp(m_old − m_new) when the max moved. For T = f32, P may be logits itself: each element
// is read, then written, by the same thread, after the block-wide max has read them all.
template <typename T>
__global__ void __launch_bounds__(kBlock) ce_chunk_softmax_kernel(T* P, float* m, float* s, float* zt, float* dh_unit,
                                                                  const float* logits, const int32_t* targets, int vc, int64_t v0,
                                                                  int C, bool first) {
  const int64_t row = blockIdx.x;
  const float* z = logits + row * vc;
  const float mo = first ? -INFINITY : m[row];
  const int64_t t = targets[row];
  const float zt_here = (t >= v0 && t < v0 + vc) ? z[t - v0] : 0.f;  // read before P may overwrite it
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < vc; j += blockDim.x) mx = fmaxf(mx, z[j]);
  const float mn = fmaxf(mo, block_max(mx));  // its barrier: every logit is read before any P is written
  T* p = P + row * vc;
  float acc = 0.f;
  for (int j = threadIdx.x; j < vc; j += blockDim.x) {
    const float e = __expf(z[j] - mn);
    p[j] = from_f32<T>(e);
    acc += e;
  }
  const float S = block_sum(acc);
  const float f = first ? 0.f : __expf(mo - mn);
  if (!first && f != 1.f)
    for (int k = threadIdx.x; k < C; k += blockDim.x) dh_unit[row * C + k] *= f;
  if (threadIdx.x == 0) {
    s[row] = first ? S : s[row] * f + S;
    m[row] = mn;
    if (first) zt[row] = 0.f;
    if (t >= v0 && t < v0 + vc) zt[row] = zt_here;
  }
}

// After forward_grad's last chunk, a block per row: loss, lse as ce_finish_kernel, and
// dh_unit[row] = dh_unit[row] / s − W[target] (zeros for an ignored row).
template <typename T>
__global__ void __launch_bounds__(kBlock) ce_finish_grad_kernel(float* loss, float* lse, float* dh_unit, const float* m, const float* s,
                                                                const float* zt, const T* W, const int32_t* targets, int C) {
  const int64_t row = blockIdx.x;
  const int64_t t = targets[row];
  const bool ignored = t == kIgnore;
  const float inv = 1.f / s[row];
  float* d = dh_unit + row * C;
  const T* w = W + (ignored ? 0 : t) * C;
  for (int k = threadIdx.x; k < C; k += blockDim.x) d[k] = ignored ? 0.f : d[k] * inv - to_f32(w[k]);
  if (threadIdx.x == 0) {
    const float l = m[row] + logf(s[row]);
    if (lse) lse[row] = l;
    loss[row] = ignored ? 0.f : l - zt[row];
  }
}

// out [n] of T = scalar[0] · x [n] f32
template <typename T>
__global__ void scale_by_scalar_kernel(T* out, const float* x, const float* scalar, int64_t n) {
  const float g = scalar[0];
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = from_f32<T>(g * x[i]);
}

// Plain cross-entropy on full logits [N, V]: loss, lse [N].
template <typename T>
__global__ void __launch_bounds__(kBlock) ce_logits_kernel(float* loss, float* lse, const T* logits, const int32_t* targets,
                                                           int64_t V) {
  const int64_t row = blockIdx.x;
  const T* z = logits + row * V;
  float M, S;
  row_stats(z, V, M, S);
  if (threadIdx.x == 0) {
    const float l = M + logf(S);
    const int64_t t = targets[row];
    lse[row] = l;
    loss[row] = (t == kIgnore || t < 0 || t >= V) ? 0.f : l - to_f32(z[t]);
  }
}

struct Workspace {
  float* logits;  // [N, chunk]
  bf16* P;        // [N, chunk], forward_grad with bf16 inputs only (f32 writes P over the logits)
  float *m, *s, *zt;
};

size_t align256(size_t b) { return (b + 255) / 256 * 256; }

Workspace carve(void* base, int64_t N, int chunk) {
  char* p = static_cast<char*>(base);
  Workspace w;
  w.logits = reinterpret_cast<float*>(p);
  p += align256(size_t(N) * chunk * 4);
  w.P = reinterpret_cast<bf16*>(p);
  p += align256(size_t(N) * chunk * 2);
  w.m = reinterpret_cast<float*>(p);
  p += align256(size_t(N) * 4);
  w.s = reinterpret_cast<float*>(p);
  p += align256(size_t(N) * 4);
  w.zt = reinterpret_cast<float*>(p);
  return w;
}

void check_args(DType t, int64_t N, int C, int64_t V, int chunk) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16,
              std::string("linear cross-entropy takes f32 or bf16 h and W, not ") + dtype_name(t) + ".");
  LKC_REQUIRE(N > 0 && C > 0 && V > 0, "cross-entropy sizes must be positive.");
  LKC_REQUIRE(chunk > 0, "cross-entropy vocabulary chunk must be positive.");
  LKC_REQUIRE(N <= INT32_MAX, "cross-entropy supports at most 2^31 rows.");
}

// loss, lse [N] <- h [N, C], W [V, C] of T, targets [N]
template <typename T>
void lce_forward(float* loss, float* lse, const T* h, const T* W, const int32_t* targets, int64_t N, int C, int64_t V, int chunk,
                 void* workspace, cudaStream_t stream) {
  Workspace w = carve(workspace, N, chunk);
  for (int64_t v0 = 0; v0 < V; v0 += chunk) {
    const int vc = int(std::min<int64_t>(chunk, V - v0));
    GemmOpts o;
    o.trans_b = true;  // logits [N, vc] = h [N, C] · W_c [vc, C]ᵀ
    gemm(w.logits, DType::F32, h, kDType<T>, W + v0 * C, kDType<T>, N, vc, C, o, stream);
    ce_chunk_stats_kernel<<<unsigned(N), kBlock, 0, stream>>>(w.m, w.s, w.zt, w.logits, targets, vc, v0, v0 == 0);
    LKC_CHECK_LAUNCH("ce_chunk_stats");
  }
  ce_finish_kernel<<<ceil_div(N, 256), 256, 0, stream>>>(loss, lse, w.m, w.s, w.zt, targets, N);
  LKC_CHECK_LAUNCH("ce_finish");
}

// loss, lse [N], dh_unit [N, C] f32 <- h [N, C], W [V, C] of T, targets [N]
template <typename T>
void lce_forward_grad(float* loss, float* lse, float* dh_unit, const T* h, const T* W, const int32_t* targets, int64_t N, int C, int64_t V,
                      int chunk, void* workspace, cudaStream_t stream) {
  Workspace w = carve(workspace, N, chunk);
  T* P;
  if constexpr (std::is_same_v<T, float>)
    P = w.logits;
  else
    P = w.P;
  for (int64_t v0 = 0; v0 < V; v0 += chunk) {
    const int vc = int(std::min<int64_t>(chunk, V - v0));
    GemmOpts o;
    o.trans_b = true;  // logits [N, vc] = h [N, C] · W_c [vc, C]ᵀ
    gemm(w.logits, DType::F32, h, kDType<T>, W + v0 * C, kDType<T>, N, vc, C, o, stream);
    ce_chunk_softmax_kernel<<<unsigned(N), kBlock, 0, stream>>>(P, w.m, w.s, w.zt, dh_unit, w.logits, targets, vc, v0, C, v0 == 0);
    LKC_CHECK_LAUNCH("ce_chunk_softmax");
    GemmOpts od;  // dh_unit [N, C] (+)= P [N, vc] · W_c [vc, C]
    od.beta = v0 == 0 ? 0.f : 1.f;
    gemm(dh_unit, DType::F32, P, kDType<T>, W + v0 * C, kDType<T>, N, C, vc, od, stream);
  }
  ce_finish_grad_kernel<<<unsigned(N), kBlock, 0, stream>>>(loss, lse, dh_unit, w.m, w.s, w.zt, W, targets, C);
  LKC_CHECK_LAUNCH("ce_finish_grad");
}

}  // namespace

size_t linear_cross_entropy_workspace(int64_t N, int chunk) {
  return align256(size_t(N) * chunk * 4) + align256(size_t(N) * chunk * 2) + 3 * align256(size_t(N) * 4);
}

void linear_cross_entropy_forward(float* loss, float* lse, const void* h, const void* W, DType t, const int32_t* targets, int64_t N,
                                  int C, int64_t V, int chunk, void* workspace, cudaStream_t stream) {
  check_args(t, N, C, V, chunk);
  if (t == DType::F32)
    lce_forward(loss, lse, static_cast<const float*>(h), static_cast<const float*>(W), targets, N, C, V, chunk, workspace, stream);
  else
    lce_forward(loss, lse, static_cast<const bf16*>(h), static_cast<const bf16*>(W), targets, N, C, V, chunk, workspace, stream);
}

void linear_cross_entropy_forward_grad(float* loss, float* lse, float* dh_unit, const void* h, const void* W, DType t,
                                       const int32_t* targets, int64_t N, int C, int64_t V, int chunk, void* workspace,
                                       cudaStream_t stream) {
  check_args(t, N, C, V, chunk);
  if (t == DType::F32)
    lce_forward_grad(loss, lse, dh_unit, static_cast<const float*>(h), static_cast<const float*>(W), targets, N, C, V, chunk, workspace,
                     stream);
  else
    lce_forward_grad(loss, lse, dh_unit, static_cast<const bf16*>(h), static_cast<const bf16*>(W), targets, N, C, V, chunk, workspace,
                     stream);
}

void scale_by_scalar(void* out, DType t, const float* x, const float* scalar, int64_t n, cudaStream_t stream) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, std::string("scale_by_scalar writes f32 or bf16, not ") + dtype_name(t) + ".");
  if (n <= 0) return;
  const unsigned blocks = unsigned(std::min<int64_t>(ceil_div(n, 256), 65535));
  if (t == DType::F32)
    scale_by_scalar_kernel<<<blocks, 256, 0, stream>>>(static_cast<float*>(out), x, scalar, n);
  else
    scale_by_scalar_kernel<<<blocks, 256, 0, stream>>>(static_cast<bf16*>(out), x, scalar, n);
  LKC_CHECK_LAUNCH("scale_by_scalar");
}

void cross_entropy_forward(float* loss, float* lse, const void* logits, DType t, const int32_t* targets, int64_t N, int64_t V,
                           cudaStream_t stream) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, "cross-entropy logits must be f32 or bf16.");
  if (N <= 0) return;
  LKC_REQUIRE(V > 0, "cross-entropy needs a non-empty vocabulary.");
  if (t == DType::F32)
    ce_logits_kernel<<<unsigned(N), kBlock, 0, stream>>>(loss, lse, static_cast<const float*>(logits), targets, V);
  else
    ce_logits_kernel<<<unsigned(N), kBlock, 0, stream>>>(loss, lse, static_cast<const bf16*>(logits), targets, V);
  LKC_CHECK_LAUNCH("cross_entropy_forward");
}

}  // namespace lkc
