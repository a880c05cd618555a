// Optimizer steps, in place over flat f32 buffers, with torch.optim's exact order of operations
// (torch's single-tensor CPU path), plus a double-accumulated Σx² for gradient-norm clipping.
#include <algorithm>
#include <cmath>
#include <vector>

#include "napi_util.h"
#include "parallel.h"
#include "vmath.h"

namespace lk {
namespace {
constexpr int64_t kGrain = 1 << 14;

// torch.optim.AdamW, step ≥ 1, all state f32:
//   p *= 1 − lr·wd;  m = lerp(m, g, 1 − β1);  v = β2·v + (1 − β2)·g²
//   p += −(lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
// param, m, v [n] updated  <-  grad [n]
void adamw_step(float* p, float* m, float* v, const float* g, double lr, double beta1, double beta2, double eps, double wd,
                double step, int64_t n) {
  // Scalars as torch forms them: Python doubles, then cast to float by the f32 kernels.
  const float decay = static_cast<float>(1.0 - lr * wd);
  const float w1 = static_cast<float>(1.0 - beta1), b2 = static_cast<float>(beta2), w2 = static_cast<float>(1.0 - beta2);
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2, step)));
  const float neg_step_size = static_cast<float>(-(lr / (1.0 - std::pow(beta1, step))));
  const float feps = static_cast<float>(eps);
  const bool decays = wd != 0.0;
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    int64_t i = b;
#ifdef __AVX512F__
    // libm's sqrtf keeps the scalar loop from vectorizing (errno), so this path is written out.
    const __m512 vdecay = _mm512_set1_ps(decays ? decay : 1.0f), vw1 = _mm512_set1_ps(w1), vb2 = _mm512_set1_ps(b2),
                 vw2 = _mm512_set1_ps(w2), vbc2 = _mm512_set1_ps(bc2_sqrt), veps = _mm512_set1_ps(feps),
                 vstep = _mm512_set1_ps(neg_step_size);
    for (; i < e; i += 16) {
      const __mmask16 k = tail_mask(e - i);
      const __m512 gi = _mm512_maskz_loadu_ps(k, g + i), mo = _mm512_maskz_loadu_ps(k, m + i);
      const __m512 pi = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + i), vdecay);
      const __m512 mi = _mm512_fmadd_ps(vw1, _mm512_sub_ps(gi, mo), mo);
      const __m512 vi = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, v + i), vb2), _mm512_mul_ps(vw2, _mm512_mul_ps(gi, gi)));
      const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), vbc2), veps);
      _mm512_mask_storeu_ps(p + i, k, _mm512_fmadd_ps(vstep, _mm512_div_ps(mi, denom), pi));
      _mm512_mask_storeu_ps(m + i, k, mi);
      _mm512_mask_storeu_ps(v + i, k, vi);
    }
#endif
    for (; i < e; i++) {
      const float pi = decays ? p[i] * decay : p[i];
      const float gi = g[i];
      const float mi = m[i] + w1 * (gi - m[i]);  // torch's lerp for weight < 0.5: m + w·(g − m)
      const float vi = v[i] * b2 + w2 * (gi * gi);
      const float denom = std::sqrt(vi) / bc2_sqrt + feps;
      p[i] = pi + neg_step_size * (mi / denom);
      m[i] = mi;
      v[i] = vi;
    }
  });
}

// torch.optim.SGD (dampening 0, no nesterov): d = g + wd·p; buf = momentum·buf + d; p −= lr·buf.
// A zero buffer on the first step gives torch's buf = d. param, buf [n] updated  <-  grad [n]
void sgd_step(float* p, float* buf, const float* g, double lr, double wd, double momentum, int64_t n) {
  const float neg_lr = static_cast<float>(-lr), fwd = static_cast<float>(wd), mom = static_cast<float>(momentum);
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      float d = wd != 0.0 ? g[i] + fwd * p[i] : g[i];
      if (buf) {
        buf[i] = buf[i] * mom + d;
        d = buf[i];
      }
      p[i] = p[i] + neg_lr * d;
    }
  });
}

// Σ x² in double, each thread over one contiguous chunk.
double sum_squares(const float* x, int64_t n) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(num_threads(), n / kGrain));
  std::vector<double> part(chunks, 0.0);
  parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; c++) {
      double s = 0.0;
      const int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
#pragma omp simd reduction(+ : s)
      for (int64_t i = b; i < e; i++) s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
      part[c] = s;
    }
  });
  double s = 0.0;
  for (double v : part) s += v;
  return s;
}
}  // namespace

// (param, m, v, grad, lr, beta1, beta2, eps, weightDecay, step, n)
LK_ENTRY(js_adamw_step, 11, {
  int64_t n = a.int64(10);
  adamw_step(a.f32(0, n), a.f32(1, n), a.f32(2, n), a.f32(3, n), a.num(4), a.num(5), a.num(6), a.num(7), a.num(8),
             static_cast<double>(a.int64(9)), n);
})
// (param, buf | null, grad, lr, weightDecay, momentum, n)
LK_ENTRY(js_sgd_step, 7, {
  int64_t n = a.int64(6);
  float* buf = a.absent(1) ? nullptr : a.f32(1, n);
  sgd_step(a.f32(0, n), buf, a.f32(2, n), a.num(3), a.num(4), a.num(5), n);
})
// (x, n) -> Σ x²
LK_ENTRY(js_sum_squares, 2, {
  int64_t n = a.int64(1);
  return number(env, sum_squares(a.f32(0, n), n));
})

LK_EXPORT("adamwStepF32", js_adamw_step);
LK_EXPORT("sgdStepF32", js_sgd_step);
LK_EXPORT("sumSquaresF32", js_sum_squares);

}  // namespace lk
