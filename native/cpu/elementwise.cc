// Elementwise kernels: out = a + b, out = a * b (b broadcast over rows when shorter), y += alpha * x,
// out = alpha * x, fill, sum, and dtype casts. Memory-bound: one pass, all threads, auto-vectorized.
#include <cmath>
#include <cstring>

#include "napi_util.h"
#include "parallel.h"
#include "bf16.h"

namespace lk {
namespace {
constexpr int64_t kGrain = 1 << 14;

// out[n] = a[n] + b[n % nb]   (nb divides n: same shape, or b broadcast along leading dims)
void add_forward(float* out, const float* a, const float* b, int64_t n, int64_t nb) {
  parallel_for(n, kGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) out[i] = a[i] + b[nb == n ? i : i % nb];
  });
}

// out[n] = a[n] * b[n % nb]
void mul_forward(float* out, const float* a, const float* b, int64_t n, int64_t nb) {
  parallel_for(n, kGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) out[i] = a[i] * b[nb == n ? i : i % nb];
  });
}

// y[n] += alpha * x[n]
void axpy(float* y, const float* x, float alpha, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) y[i] += alpha * x[i];
  });
}

// out[n] = alpha * x[n]
void scale(float* out, const float* x, float alpha, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) out[i] = alpha * x[i];
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
  uint16_t* out = a.u16(0, n);
  const float* x = a.f32(1, n);
  parallel_for(n, kGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) out[i] = f32_to_bf16(x[i]);
  });
})
LK_ENTRY(js_bf16_to_f32, 3, {
  int64_t n = a.int64(2);
  float* out = a.f32(0, n);
  const uint16_t* x = a.u16(1, n);
  parallel_for(n, kGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) out[i] = bf16_to_f32(x[i]);
  });
})

LK_EXPORT("addF32", js_add_f32);
LK_EXPORT("mulF32", js_mul_f32);
LK_EXPORT("axpyF32", js_axpy_f32);
LK_EXPORT("scaleF32", js_scale_f32);
LK_EXPORT("sumRowsF32", js_sum_rows_f32);
LK_EXPORT("f32ToBf16", js_f32_to_bf16);
LK_EXPORT("bf16ToF32", js_bf16_to_f32);

}  // namespace lk
