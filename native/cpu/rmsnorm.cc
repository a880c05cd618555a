// RMSNorm as Llama/HF: y = (x / sqrt(mean(x²) + eps)) * w, computed in fp32.
// Forward saves rstd [rows] = 1/sqrt(mean(x²) + eps); backward needs x, w and rstd (x̂ = x·rstd is
// recomputed, never stored).
#include <algorithm>
#include <cmath>
#include <vector>

#include "napi_util.h"
#include "parallel.h"
#include "simd.h"

namespace lk {
namespace {
namespace v = simd;

// Rows per chunk so that one chunk is at least ~16K elements of work.
int64_t row_grain(int64_t D) { return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(D, 1)); }

// f(d, k) over [0, D): whole vectors (k = kLanes, a constant once inlined, so the loads and stores
// are unmasked and the one-lane path is a plain loop the compiler vectorizes), then one tail k < kLanes.
template <class Fn>
LK_INLINE void for_lanes(int64_t D, Fn&& f) {
  int64_t d = 0;
  for (; d + v::kLanes <= D; d += v::kLanes) f(d, int64_t{v::kLanes});
  if (d < D) f(d, D - d);
}

// Σ of the vectors f(d, k) over [0, D) (whole vectors, then a tail), in four independent partial sums so the
// adds overlap (one chain would wait on each add's latency; the one-lane path would be a serial sum).
template <class Fn>
LK_INLINE float sum_lanes(int64_t D, Fn&& f) {
  constexpr int64_t L = v::kLanes;
  v::F s0 = v::zero(), s1 = v::zero(), s2 = v::zero(), s3 = v::zero();
  int64_t d = 0;
  for (; d + 4 * L <= D; d += 4 * L) {
    s0 += f(d, L);
    s1 += f(d + L, L);
    s2 += f(d + 2 * L, L);
    s3 += f(d + 3 * L, L);
  }
  for (; d + L <= D; d += L) s0 += f(d, L);
  if (d < D) s1 += f(d, D - d);
  return v::sum((s0 + s1) + (s2 + s3));
}

// y [rows, D], rstd [rows]  <-  x [rows, D], w [D]
void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int64_t rows, int64_t D, float eps) {
  parallel_for(rows, row_grain(D), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; r++) {
      const float* xr = x + r * D;
      float* yr = y + r * D;
      const float ss = sum_lanes(D, [&](int64_t d, int64_t k) {
        const v::F xv = v::load(xr + d, k);
        return xv * xv;
      });
      const float s = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps);
      rstd[r] = s;
      // HF order: w * (x * rstd)
      const v::F sv = v::set1(s);
      for_lanes(D, [&](int64_t d, int64_t k) { v::store(yr + d, v::load(w + d, k) * (v::load(xr + d, k) * sv), k); });
    }
  });
}

// dx [rows, D] (optional), dw [D] (optional)  <-  dy [rows, D], x [rows, D], w [D], rstd [rows]
//   x̂ = x·rstd,  dx = rstd · (w·dy − x̂ · mean_d(w·dy·x̂)),  dw = Σ_rows dy·x̂
// dw is a reduction over rows: each chunk of rows sums into its own buffer, then the buffers are added.
void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, const float* rstd, int64_t rows,
                      int64_t D) {
  int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(num_threads(), (rows + row_grain(D) - 1) / row_grain(D)));
  std::vector<float> partial(dw ? chunks * D : 0, 0.0f);
  parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; c++) {
      float* acc = dw ? partial.data() + c * D : nullptr;
      for (int64_t r = rows * c / chunks; r < rows * (c + 1) / chunks; r++) {
        const float* xr = x + r * D;
        const float* gr = dy + r * D;
        const v::F sv = v::set1(rstd[r]);
        if (dx) {
          const float dot = sum_lanes(D, [&](int64_t d, int64_t k) {  // Σ_d w·dy·x̂
            return v::load(w + d, k) * v::load(gr + d, k) * (v::load(xr + d, k) * sv);
          });
          const v::F cv = v::set1(dot / static_cast<float>(D));
          float* dxr = dx + r * D;
          // One pass for dx and dw's partial: both need dy and x̂.
          if (acc)
            for_lanes(D, [&](int64_t d, int64_t k) {
              const v::F g = v::load(gr + d, k), xh = v::load(xr + d, k) * sv;
              v::store(dxr + d, sv * (v::load(w + d, k) * g - xh * cv), k);
              v::store(acc + d, v::load(acc + d, k) + g * xh, k);
            });
          else
            for_lanes(D, [&](int64_t d, int64_t k) {
              const v::F g = v::load(gr + d, k), xh = v::load(xr + d, k) * sv;
              v::store(dxr + d, sv * (v::load(w + d, k) * g - xh * cv), k);
            });
        } else if (acc) {
          for_lanes(D, [&](int64_t d, int64_t k) {
            v::store(acc + d, v::load(acc + d, k) + v::load(gr + d, k) * (v::load(xr + d, k) * sv), k);
          });
        }
      }
    }
  });
  if (dw)
    parallel_for(D, 1 << 12, [&](int64_t db, int64_t de) {
      for_lanes(de - db, [&](int64_t d, int64_t k) {
        v::F s = v::zero();
        for (int64_t c = 0; c < chunks; c++) s += v::load(partial.data() + c * D + db + d, k);
        v::store(dw + db + d, s, k);
      });
    });
}
}  // namespace

LK_ENTRY(js_rmsnorm_forward, 7, {
  int64_t rows = a.int64(4), D = a.int64(5);
  rmsnorm_forward(a.f32(0, rows * D), a.f32(1, rows), a.f32(2, rows * D), a.f32(3, D), rows, D, static_cast<float>(a.num(6)));
})
// (dx | null, dw | null, dy, x, w, rstd, rows, D)
LK_ENTRY(js_rmsnorm_backward, 8, {
  int64_t rows = a.int64(6), D = a.int64(7);
  float* dx = a.absent(0) ? nullptr : a.f32(0, rows * D);
  float* dw = a.absent(1) ? nullptr : a.f32(1, D);
  rmsnorm_backward(dx, dw, a.f32(2, rows * D), a.f32(3, rows * D), a.f32(4, D), a.f32(5, rows), rows, D);
})

LK_EXPORT("rmsnormForwardF32", js_rmsnorm_forward);
LK_EXPORT("rmsnormBackwardF32", js_rmsnorm_backward);

}  // namespace lk
