// Fused linear + cross-entropy over vocabulary chunks, forward and backward, with h, W (and dh) all bf16
// or all f32. The logits h · Wᵀ exist only [N, chunk] at a time (fp32, from a bf16·bf16 or an exact
// f32·f32 cuBLASLt GEMM), never as the full [N, V] matrix or its log-softmax.
//   forward:  per chunk, logits = h · W_cᵀ, then each row's running (max, Σexp) is merged with the
//             chunk's (online logsumexp) and the target logit picked when it falls in the chunk.
//             lse[n] = max + log Σexp, loss[n] = lse[n] − logit[n, target] (0 for target −100).
//   backward: needs h, W, targets and the saved lse [N]. Per chunk the logits are recomputed and
//             dz = grad_scale · (exp(logit − lse) − onehot) written in h's dtype (f32: over the logits,
//             in place), then dh += dz · W_c (fp32 accumulation across chunks) and, when W is
//             trained, dW_c += dzᵀ · h. grad_scale is read on the device, so the host never waits.
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
  lse[i] = l;
  loss[i] = targets[i] == kIgnore ? 0.f : l - zt[i];
}

// dz [N, vc] of T <- logits [N, vc] f32, lse [N], targets [N], grad_scale [1]. For T = f32, dz may be
// logits itself: each element is read, then written, by the same thread.
template <typename T>
__global__ void __launch_bounds__(kBlock) ce_chunk_grad_kernel(T* dz, const float* logits, const float* lse, const int32_t* targets,
                                                               const float* grad_scale, int vc, int64_t v0) {
  const int64_t row = blockIdx.x;
  const int64_t t = targets[row];
  const float l = lse[row], g = t == kIgnore ? 0.f : grad_scale[0];
  const float* z = logits + row * vc;
  T* d = dz + row * vc;
  for (int j = threadIdx.x; j < vc; j += blockDim.x) {
    const float p = __expf(z[j] - l);
    d[j] = from_f32<T>(g * (p - (v0 + j == t ? 1.f : 0.f)));
  }
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
  bf16* dz;       // [N, chunk], bf16 inputs only (f32 writes dz over the logits)
  float* dh;      // [N, C], bf16 inputs only (f32 accumulates in dh itself)
  float *m, *s, *zt;
};

size_t align256(size_t b) { return (b + 255) / 256 * 256; }

Workspace carve(void* base, int64_t N, int C, int chunk) {
  char* p = static_cast<char*>(base);
  Workspace w;
  w.logits = reinterpret_cast<float*>(p);
  p += align256(size_t(N) * chunk * 4);
  w.dz = reinterpret_cast<bf16*>(p);
  p += align256(size_t(N) * chunk * 2);
  w.dh = reinterpret_cast<float*>(p);
  p += align256(size_t(N) * C * 4);
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
  Workspace w = carve(workspace, N, C, chunk);
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

// dh [N, C] of T (dW [V, C] f32 +=) <- h [N, C], W [V, C] of T, targets, lse [N], grad_scale [1]
template <typename T>
void lce_backward(T* dh, float* dW, const T* h, const T* W, const int32_t* targets, const float* lse, const float* grad_scale, int64_t N,
                  int C, int64_t V, int chunk, void* workspace, cudaStream_t stream) {
  Workspace w = carve(workspace, N, C, chunk);
  // f32: dz overwrites the logits it comes from and dh accumulates in place (no rounding to undo).
  T* dz;
  float* dh_acc;
  if constexpr (std::is_same_v<T, float>) {
    dz = w.logits;
    dh_acc = dh;
  } else {
    dz = w.dz;
    dh_acc = w.dh;
  }
  for (int64_t v0 = 0; v0 < V; v0 += chunk) {
    const int vc = int(std::min<int64_t>(chunk, V - v0));
    GemmOpts o;
    o.trans_b = true;
    gemm(w.logits, DType::F32, h, kDType<T>, W + v0 * C, kDType<T>, N, vc, C, o, stream);
    ce_chunk_grad_kernel<<<unsigned(N), kBlock, 0, stream>>>(dz, w.logits, lse, targets, grad_scale, vc, v0);
    LKC_CHECK_LAUNCH("ce_chunk_grad");
    GemmOpts od;  // dh [N, C] (+)= dz [N, vc] · W_c [vc, C]
    od.beta = v0 == 0 ? 0.f : 1.f;
    gemm(dh_acc, DType::F32, dz, kDType<T>, W + v0 * C, kDType<T>, N, C, vc, od, stream);
    if (dW) {
      GemmOpts ow;  // dW_c [vc, C] += dz [N, vc]ᵀ · h [N, C]
      ow.trans_a = true;
      ow.beta = 1.f;
      gemm(dW + v0 * C, DType::F32, dz, kDType<T>, h, kDType<T>, vc, C, N, ow, stream);
    }
  }
  if constexpr (!std::is_same_v<T, float>) cast(dh, DType::BF16, w.dh, DType::F32, N * C, stream);
}

}  // namespace

size_t linear_cross_entropy_workspace(int64_t N, int C, int chunk) {
  return align256(size_t(N) * chunk * 4) + align256(size_t(N) * chunk * 2) + align256(size_t(N) * C * 4) + 3 * align256(size_t(N) * 4);
}

void linear_cross_entropy_forward(float* loss, float* lse, const void* h, const void* W, DType t, const int32_t* targets, int64_t N,
                                  int C, int64_t V, int chunk, void* workspace, cudaStream_t stream) {
  check_args(t, N, C, V, chunk);
  if (t == DType::F32)
    lce_forward(loss, lse, static_cast<const float*>(h), static_cast<const float*>(W), targets, N, C, V, chunk, workspace, stream);
  else
    lce_forward(loss, lse, static_cast<const bf16*>(h), static_cast<const bf16*>(W), targets, N, C, V, chunk, workspace, stream);
}

void linear_cross_entropy_backward(void* dh, float* dW, const void* h, const void* W, DType t, const int32_t* targets, const float* lse,
                                   const float* grad_scale, int64_t N, int C, int64_t V, int chunk, void* workspace, cudaStream_t stream) {
  check_args(t, N, C, V, chunk);
  if (t == DType::F32)
    lce_backward(static_cast<float*>(dh), dW, static_cast<const float*>(h), static_cast<const float*>(W), targets, lse, grad_scale, N, C,
                 V, chunk, workspace, stream);
  else
    lce_backward(static_cast<bf16*>(dh), dW, static_cast<const bf16*>(h), static_cast<const bf16*>(W), targets, lse, grad_scale, N, C, V,
                 chunk, workspace, stream);
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
