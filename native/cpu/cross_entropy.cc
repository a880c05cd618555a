// Fused cross-entropy over the vocabulary, never materializing log-softmax [N, V]:
//   forward:  lse[n] = log Σ_v exp(logits[n, v]),  loss = Σ_{n: target ≠ −100} (lse[n] − logits[n, target[n]])
//   backward: dlogits[n, v] = g · (exp(logits[n, v] − lse[n]) − [v = target[n]]), and 0 for ignored rows.
// Forward saves lse [N]; backward recomputes softmax from the saved logits and lse.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "napi_util.h"
#include "parallel.h"
#include "vmath.h"

namespace lk {
namespace {
constexpr int32_t kIgnore = -100;
// The row is read once: each block (in L1) is scanned for its max, then exp-summed against the running max.
constexpr int64_t kBlock = 512;

void check_targets(const int32_t* t, int64_t N, int64_t V) {
  for (int64_t n = 0; n < N; n++)
    if (t[n] != kIgnore && (t[n] < 0 || t[n] >= V))
      throw ArgError("target " + std::to_string(t[n]) + " is outside [0, " + std::to_string(V) + ") and is not -100");
}

// log Σ exp(x[0..V)) with an online max, summing in double across blocks.
double row_logsumexp(const float* x, int64_t V) {
  float m = -std::numeric_limits<float>::infinity();
  double s = 0.0;
  for (int64_t b = 0; b < V; b += kBlock) {
    const int64_t e = std::min(V, b + kBlock);
#ifdef __AVX512F__
    __m512 vm = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int64_t i = b; i < e; i += 16) vm = _mm512_max_ps(vm, _mm512_mask_loadu_ps(vm, tail_mask(e - i), x + i));
    const float bm = _mm512_reduce_max_ps(vm);
#else
    float bm = x[b];
    for (int64_t i = b; i < e; i++) bm = std::max(bm, x[i]);
#endif
    if (bm > m) {
      s *= std::exp(static_cast<double>(m) - static_cast<double>(bm));
      m = bm;
    }
    if (m == -std::numeric_limits<float>::infinity()) continue;  // all −inf so far: nothing to add
#ifdef __AVX512F__
    __m512 acc = _mm512_setzero_ps();
    const __m512 vmax = _mm512_set1_ps(m);
    for (int64_t i = b; i < e; i += 16) {
      __mmask16 k = tail_mask(e - i);
      acc = _mm512_mask_add_ps(acc, k, acc, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vmax)));
    }
    s += _mm512_reduce_add_ps(acc);
#else
    float acc = 0.0f;
    for (int64_t i = b; i < e; i++) acc += std::exp(x[i] - m);
    s += acc;
#endif
  }
  return static_cast<double>(m) + std::log(s);
}

// loss [1], lse [N], row_loss [N] (optional)  <-  logits [N, V], targets [N]
void cross_entropy_forward(float* loss, float* lse, float* row_loss, const float* logits, const int32_t* targets, int64_t N,
                           int64_t V) {
  std::vector<double> per_row(N, 0.0);
  parallel_for(N, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(V, 1)), [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; n++) {
      if (targets[n] == kIgnore) {
        lse[n] = 0.0f;  // padding rows cost nothing
        continue;
      }
      const float* x = logits + n * V;
      const double l = row_logsumexp(x, V);
      lse[n] = static_cast<float>(l);
      per_row[n] = l - static_cast<double>(x[targets[n]]);
    }
  });
  double total = 0.0;
  for (int64_t n = 0; n < N; n++) total += per_row[n];
  loss[0] = static_cast<float>(total);
  if (row_loss)
    for (int64_t n = 0; n < N; n++) row_loss[n] = static_cast<float>(per_row[n]);
}

// dlogits [N, V]  <-  logits [N, V], targets [N], lse [N], g (the loss gradient)
void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets, const float* lse, float g, int64_t N,
                            int64_t V) {
  parallel_for(N, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(V, 1)), [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; n++) {
      float* d = dlogits + n * V;
      if (targets[n] == kIgnore) {
        std::fill(d, d + V, 0.0f);
        continue;
      }
      const float* x = logits + n * V;
      int64_t i = 0;
#ifdef __AVX512F__
      const __m512 vl = _mm512_set1_ps(lse[n]), vg = _mm512_set1_ps(g);
      for (; i < V; i += 16) {
        __mmask16 k = tail_mask(V - i);
        _mm512_mask_storeu_ps(d + i, k, _mm512_mul_ps(vg, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vl))));
      }
#endif
      for (; i < V; i++) d[i] = g * std::exp(x[i] - lse[n]);
      d[targets[n]] -= g;
    }
  });
}
}  // namespace

// (loss, lse, rowLoss | null, logits, targets, N, V)
LK_ENTRY(js_cross_entropy_forward, 7, {
  int64_t N = a.int64(5), V = a.int64(6);
  const int32_t* t = a.i32(4, N);
  check_targets(t, N, V);
  float* row_loss = a.absent(2) ? nullptr : a.f32(2, N);
  cross_entropy_forward(a.f32(0, 1), a.f32(1, N), row_loss, a.f32(3, N * V), t, N, V);
})
// (dlogits, logits, targets, lse, g, N, V)
LK_ENTRY(js_cross_entropy_backward, 7, {
  int64_t N = a.int64(5), V = a.int64(6);
  const int32_t* t = a.i32(2, N);
  check_targets(t, N, V);
  cross_entropy_backward(a.f32(0, N * V), a.f32(1, N * V), t, a.f32(3, N), static_cast<float>(a.num(4)), N, V);
})

LK_EXPORT("crossEntropyForwardF32", js_cross_entropy_forward);
LK_EXPORT("crossEntropyBackwardF32", js_cross_entropy_backward);

}  // namespace lk
