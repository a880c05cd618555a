// Row-sum harness: out[r] = Σ_c x[r, c] for every (out, x) dtype pair, against float64 sums of the
// exact inputs, on odd shapes covering both paths (warp per row below 1024 columns, block per row
// above), zero columns, more rows than the grid holds (grid-stride), a misaligned x; then bandwidth.
#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

void correctness() {
  Rng r(93);
  struct Case {
    int64_t rows, cols;
  };
  for (Case c : {Case{1, 1}, Case{7, 33}, Case{33, 0}, Case{127, 1023}, Case{5, 1024}, Case{3, 100003}, Case{1000, 7},
                 Case{70001, 3}, Case{5003, 1031}}) {
    for (DType xt : {DType::F32, DType::BF16}) {
      for (DType ot : {DType::F32, DType::BF16}) {
        const int shift = c.rows == 7 ? 1 : 0;  // one misaligned case
        const std::string tag = std::string(lkc::dtype_name(ot)) + " <- " + lkc::dtype_name(xt) + " " + dims({c.rows, c.cols}) +
                                (shift ? " misaligned" : "");
        const int64_t n = c.rows * c.cols;
        auto x = randn(r, n + shift, 1.f, xt == DType::BF16);
        Buf dx = xt == DType::BF16 ? up_bf16(x) : up(x), out(size_t(c.rows) * lkc::dtype_size(ot));
        out.poison();
        lkc::sum_rows(out.p, ot, static_cast<char*>(dx.p) + shift * lkc::dtype_size(xt), xt, c.rows, c.cols, nullptr);
        std::vector<double> ref(c.rows, 0.0);
        for (int64_t i = 0; i < c.rows; i++)
          for (int64_t j = 0; j < c.cols; j++) ref[i] += double(x[shift + i * c.cols + j]);
        const auto got = ot == DType::BF16 ? down_bf16(out.p, c.rows) : down<float>(out.p, c.rows);
        // fp32 accumulation; a bf16 result is one rounding (≤ 2⁻⁹ relative) away from the sum.
        check("sum_rows", tag, compare(got, ref), ot == DType::BF16 ? 1e-2 : 1e-5);
      }
    }
  }
  expect_throw("sum_rows", "i32 input", [] { lkc::sum_rows(nullptr, DType::F32, nullptr, DType::I32, 4, 4, nullptr); });
}

void timings() {
  struct Case {
    int64_t rows, cols;
  };
  for (Case c : {Case{16384, 4096}, Case{4096, 16384}, Case{64, int64_t(1) << 20}, Case{int64_t(1) << 22, 16}}) {
    const int64_t n = c.rows * c.cols;
    Buf x = rand_bf16(n, 1), out(size_t(c.rows) * 4);
    const double us = time_us([&] { lkc::sum_rows(out.p, DType::F32, x.p, DType::BF16, c.rows, c.cols, nullptr); });
    timing("sum_rows f32 <- bf16", dims({c.rows, c.cols}), us, gbps(2.0 * n + 4.0 * c.rows, us));
  }
}

}  // namespace

int main() {
  return run("sum_rows", [] {
    correctness();
    if (!quick()) timings();
  });
}
