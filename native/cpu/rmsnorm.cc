// RMSNorm as Llama/HF: y = (x / sqrt(mean(x²) + eps)) * w, computed in fp32.
// Forward saves rstd [rows] = 1/sqrt(mean(x²) + eps); backward needs x, w and rstd (x̂ = x·rstd is
// recomputed, never stored).
#include <algorithm>
#include <cmath>
#include <vector>

#include "napi_util.h"
#include "parallel.h"

namespace lk {
namespace {
// Rows per chunk so that one chunk is at least ~16K elements of work.
int64_t row_grain(int64_t D) { return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(D, 1)); }

// y [rows, D], rstd [rows]  <-  x [rows, D], w [D]
void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int64_t rows, int64_t D, float eps) {
  parallel_for(rows, row_grain(D), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; r++) {
      const float* xr = x + r * D;
      float* yr = y + r * D;
      float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
      for (int64_t d = 0; d < D; d++) ss += xr[d] * xr[d];
      float s = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps);
      rstd[r] = s;
      // HF order: w * (x * rstd)
      for (int64_t d = 0; d < D; d++) yr[d] = w[d] * (xr[d] * s);
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
        const float s = rstd[r];
        if (dx) {
          float dot = 0.0f;  // Σ_d w·dy·x̂
#pragma omp simd reduction(+ : dot)
          for (int64_t d = 0; d < D; d++) dot += w[d] * gr[d] * (xr[d] * s);
          const float c_r = dot / static_cast<float>(D);
          float* dxr = dx + r * D;
          for (int64_t d = 0; d < D; d++) dxr[d] = s * (w[d] * gr[d] - (xr[d] * s) * c_r);
        }
        if (acc)
          for (int64_t d = 0; d < D; d++) acc[d] += gr[d] * (xr[d] * s);
      }
    }
  });
  if (dw)
    parallel_for(D, 1 << 12, [&](int64_t db, int64_t de) {
      for (int64_t d = db; d < de; d++) {
        float s = 0.0f;
        for (int64_t c = 0; c < chunks; c++) s += partial[c * D + d];
        dw[d] = s;
      }
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
