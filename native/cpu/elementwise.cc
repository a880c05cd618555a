// Elementwise kernels: out = a + b, out = a * b (b broadcast over rows when shorter), y += alpha * x,
// out = alpha * x, row sums and dtype casts. Memory-bound: one pass, all threads, lk::simd lanes.
#include <algorithm>
#include <cstring>

#include "napi_util.h"
#include "parallel.h"
#include "simd.h"

namespace lk {
namespace {
namespace v = simd;

// f(i, k) over [b, e): whole vectors (k = kLanes, a constant once inlined, so the loads and stores
// are unmasked and the one-lane path is a plain loop the compiler vectorizes), then one tail k < kLanes.
template <class Fn>
LK_INLINE void for_lanes(int64_t b, int64_t e, Fn&& f) {
  int64_t i = b;
  for (; i + v::kLanes <= e; i += v::kLanes) f(i, int64_t{v::kLanes});
  if (i < e) f(i, e - i);
}

constexpr int64_t kGrain = 1 << 14;

// out[n] = op(a[n], b[n % nb])   (nb divides n: same shape, or b broadcast along leading dims)
// A chunk [s, e) walks b in runs: from i to the end of b's row (or of the chunk), b[i % nb] onwards.
template <class Op>
void broadcast_binary(float* out, const float* a, const float* b, int64_t n, int64_t nb, Op op) {
  parallel_for(n, kGrain, [&](int64_t s, int64_t e) {
    if (nb == 1) {
      const v::F bv = v::set1(b[0]);
      for_lanes(s, e, [&](int64_t i, int64_t k) { v::store(out + i, op(v::load(a + i, k), bv), k); });
      return;
    }
    for (int64_t i = s; i < e;) {
      const int64_t j = nb == n ? i : i % nb, len = std::min(e - i, nb - j);
      const float *ai = a + i, *bj = b + j;
      float* oi = out + i;
      for_lanes(0, len, [&](int64_t t, int64_t k) { v::store(oi + t, op(v::load(ai + t, k), v::load(bj + t, k)), k); });
      i += len;
    }
  });
}

void add_forward(float* out, const float* a, const float* b, int64_t n, int64_t nb) {
  broadcast_binary(out, a, b, n, nb, [](v::F x, v::F y) { return x + y; });
}

void mul_forward(float* out, const float* a, const float* b, int64_t n, int64_t nb) {
  broadcast_binary(out, a, b, n, nb, [](v::F x, v::F y) { return x * y; });
}

// y[n] += alpha * x[n]
void axpy(float* y, const float* x, float alpha, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t s, int64_t e) {
    const v::F av = v::set1(alpha);
    for_lanes(s, e, [&](int64_t i, int64_t k) { v::store(y + i, v::load(y + i, k) + av * v::load(x + i, k), k); });
  });
}

// out[n] = alpha * x[n]
void scale(float* out, const float* x, float alpha, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t s, int64_t e) {
    const v::F av = v::set1(alpha);
    for_lanes(s, e, [&](int64_t i, int64_t k) { v::store(out + i, av * v::load(x + i, k), k); });
  });
}

// out[rows] = sum over cols of x[rows, cols], accumulated in double for a stable reference-grade sum.
void sum_rows(float* out, const float* x, int64_t rows, int64_t cols) {
  parallel_for(rows, 1, [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; r++) {
      double acc = 0;
      const float* p = x + r * cols;
      for (int64_t c = 0; c < cols; c++) acc += p[c];
      out[r] = static_cast<float>(acc);
    }
  });
}

// out [n] bf16 bits  <-  x [n] f32: round to nearest even, NaN kept quiet (simd::store_bf16).
void f32_to_bf16(uint16_t* out, const float* x, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t s, int64_t e) {
    for_lanes(s, e, [&](int64_t i, int64_t k) { v::store_bf16(out + i, v::load(x + i, k), k); });
  });
}

// out [n] f32  <-  x [n] bf16 bits (exact)
void bf16_to_f32(float* out, const uint16_t* x, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t s, int64_t e) {
    for_lanes(s, e, [&](int64_t i, int64_t k) { v::store(out + i, v::load(x + i, k), k); });
  });
}
}  // namespace

LK_ENTRY(js_add_f32, 5, {
  int64_t n = a.int64(3), nb = a.int64(4);
  add_forward(a.f32(0, n), a.f32(1, n), a.f32(2, nb), n, nb);
})
LK_ENTRY(js_mul_f32, 5, {
  int64_t n = a.int64(3), nb = a.int64(4);
  mul_forward(a.f32(0, n), a.f32(1, n), a.f32(2, nb), n, nb);
})
LK_ENTRY(js_axpy_f32, 4, {
  int64_t n = a.int64(3);
  axpy(a.f32(0, n), a.f32(1, n), static_cast<float>(a.num(2)), n);
})
LK_ENTRY(js_scale_f32, 4, {
  int64_t n = a.int64(3);
  scale(a.f32(0, n), a.f32(1, n), static_cast<float>(a.num(2)), n);
})
LK_ENTRY(js_sum_rows_f32, 4, {
  int64_t rows = a.int64(2), cols = a.int64(3);
  sum_rows(a.f32(0, rows), a.f32(1, rows * cols), rows, cols);
})
LK_ENTRY(js_f32_to_bf16, 3, {
  int64_t n = a.int64(2);
  f32_to_bf16(a.u16(0, n), a.f32(1, n), n);
})
LK_ENTRY(js_bf16_to_f32, 3, {
  int64_t n = a.int64(2);
  bf16_to_f32(a.f32(0, n), a.u16(1, n), n);
})

LK_EXPORT("addF32", js_add_f32);
LK_EXPORT("mulF32", js_mul_f32);
LK_EXPORT("axpyF32", js_axpy_f32);
LK_EXPORT("scaleF32", js_scale_f32);
LK_EXPORT("sumRowsF32", js_sum_rows_f32);
LK_EXPORT("f32ToBf16", js_f32_to_bf16);
LK_EXPORT("bf16ToF32", js_bf16_to_f32);

}  // namespace lk
