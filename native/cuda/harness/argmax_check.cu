// Greedy-pick harness: argmax_rows against the host's sequential scan (`if x[i] > x[best]`) on odd
// shapes in f32 and bf16, with many ties (values from a few integers), NaNs inside rows and at index 0,
// a row of -inf, more rows than the grid holds; then bandwidth on a vocabulary-sized batch.
#include <cmath>
#include <limits>

#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

int32_t scan(const float* row, int64_t cols) {
  int64_t best = 0;
  for (int64_t i = 1; i < cols; i++)
    if (row[i] > row[best]) best = i;
  return int32_t(best);
}

void correctness() {
  Rng r(7);
  struct Case {
    int64_t rows, cols;
  };
  for (Case c : {Case{1, 1}, Case{3, 7}, Case{17, 255}, Case{5, 257}, Case{64, 49152}, Case{3, 128256}, Case{4099, 33}}) {
    for (DType t : {DType::F32, DType::BF16}) {
      const int64_t n = c.rows * c.cols;
      auto x = randn(r, n, 1.f, true);
      // Ties: most rows take a handful of integer values, so the maximum repeats.
      for (int64_t i = 0; i < n; i++)
        if ((i / c.cols) % 3 != 0) x[i] = std::floor(x[i] * 2.f);
      const float nan = std::numeric_limits<float>::quiet_NaN();
      if (c.rows > 1) x[c.cols + c.cols / 2] = nan;   // NaN inside row 1: skipped
      if (c.rows > 2) x[2 * c.cols] = nan;            // NaN first in row 2: index 0
      if (c.rows > 3 && c.cols > 1)
        for (int64_t j = 0; j < c.cols; j++) x[3 * c.cols + j] = -INFINITY;  // all -inf: index 0
      Buf dx = t == DType::BF16 ? up_bf16(x) : up(x), out(size_t(c.rows) * 4);
      out.poison();
      lkc::argmax_rows(static_cast<int32_t*>(out.p), dx.p, t, c.rows, c.cols, nullptr);
      const auto got = down<int32_t>(out.p, c.rows);
      int64_t wrong = 0;
      for (int64_t i = 0; i < c.rows; i++) wrong += got[i] != scan(&x[i * c.cols], c.cols);
      expect("argmax_rows", std::string(lkc::dtype_name(t)) + " " + dims({c.rows, c.cols}) + ": rows equal to the scan", wrong == 0);
    }
  }
  expect_throw("argmax_rows", "i32 input", [] { lkc::argmax_rows(nullptr, nullptr, DType::I32, 1, 1, nullptr); });
  expect_throw("argmax_rows", "zero columns", [] { lkc::argmax_rows(nullptr, nullptr, DType::F32, 1, 0, nullptr); });
}

void timings() {
  for (int64_t rows : {1, 64, 256}) {
    const int64_t cols = 128256, n = rows * cols;
    Buf x = rand_bf16(n, 3), out(size_t(rows) * 4);
    const double us = time_us([&] { lkc::argmax_rows(static_cast<int32_t*>(out.p), x.p, DType::BF16, rows, cols, nullptr); });
    timing("argmax_rows bf16", dims({rows, cols}), us, gbps(2.0 * n, us));
  }
}

}  // namespace

int main() {
  return run("argmax_rows", [] {
    correctness();
    if (!quick()) timings();
  });
}
