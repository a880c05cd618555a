// Optimizer steps, in place over flat f32 buffers, with torch.optim's exact order of operations
// (torch's single-tensor CPU path), plus a double-accumulated Σx² for gradient-norm clipping.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "napi_util.h"
#include "parallel.h"
#include "simd.h"

namespace lk {
namespace {
constexpr int64_t kGrain = 1 << 14;

// f(i, n) over [b, e): whole vectors (n = kLanes, a constant once inlined, so the loads and stores
// are unmasked and the one-lane path is a plain loop the compiler vectorizes), then one tail n < kLanes.
template <class Fn>
LK_INLINE void for_lanes(int64_t b, int64_t e, Fn&& f) {
  int64_t i = b;
  for (; i + simd::kLanes <= e; i += simd::kLanes) f(i, int64_t{simd::kLanes});
  if (i < e) f(i, e - i);
}

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
    const simd::F vdecay = simd::set1(decays ? decay : 1.0f), vw1 = simd::set1(w1), vb2 = simd::set1(b2), vw2 = simd::set1(w2),
               vbc2 = simd::set1(bc2_sqrt), veps = simd::set1(feps), vstep = simd::set1(neg_step_size);
    for_lanes(b, e, [&](int64_t i, int64_t k) {
      const simd::F gi = simd::load(g + i, k), mo = simd::load(m + i, k);
      const simd::F pi = simd::load(p + i, k) * vdecay;  // × 1 is exact when there is no decay
      const simd::F mi = mo + vw1 * (gi - mo);  // torch's lerp for weight < 0.5: m + w·(g − m)
      const simd::F vi = simd::load(v + i, k) * vb2 + vw2 * (gi * gi);
      const simd::F denom = simd::sqrt(vi) / vbc2 + veps;
      simd::store(p + i, pi + vstep * (mi / denom), k);
      simd::store(m + i, mi, k);
      simd::store(v + i, vi, k);
    });
  });
}

// torch.optim.SGD (dampening 0, no nesterov): d = g + wd·p; buf = momentum·buf + d; p −= lr·buf.
// A zero buffer on the first step gives torch's buf = d. param, buf [n] updated  <-  grad [n]
void sgd_step(float* p, float* buf, const float* g, double lr, double wd, double momentum, int64_t n) {
  const float neg_lr = static_cast<float>(-lr), fwd = static_cast<float>(wd), mom = static_cast<float>(momentum);
  const bool decays = wd != 0.0;
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    const simd::F vlr = simd::set1(neg_lr), vwd = simd::set1(fwd), vmom = simd::set1(mom);
    auto step = [&](auto with_decay, auto with_momentum) {
      for_lanes(b, e, [&](int64_t i, int64_t k) {
        const simd::F pi = simd::load(p + i, k);
        simd::F d = simd::load(g + i, k);
        if (with_decay) d = d + vwd * pi;
        if (with_momentum) {
          d = simd::load(buf + i, k) * vmom + d;
          simd::store(buf + i, d, k);
        }
        simd::store(p + i, pi + vlr * d, k);
      });
    };
    // The four cases as their own loops (the flags are compile-time constants in each).
    using T = std::true_type;
    using F = std::false_type;
    if (decays) {
      if (buf) step(T{}, T{});
      else step(T{}, F{});
    } else {
      if (buf) step(F{}, T{});
      else step(F{}, F{});
    }
  });
}

// Σ x[b, e)² in double. Double lanes are not part of lk::simd; the loop is plain C++ that each path's
// flags vectorize (in its own function: inside the parallel_for lambda GCC leaves it scalar).
double sum_squares_range(const float* x, int64_t b, int64_t e) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = b; i < e; i++) s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return s;
}

// Σ x² in double, each thread over one contiguous chunk.
double sum_squares(const float* x, int64_t n) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(num_threads(), n / kGrain));
  std::vector<double> part(chunks, 0.0);
  parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; c++) part[c] = sum_squares_range(x, n * c / chunks, n * (c + 1) / chunks);
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
