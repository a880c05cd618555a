// DoRA weight-norm harness: weight_norm against a float64 host reference ‖w[r] + s·delta[r]‖ (and its
// reciprocal) on odd shapes in f32 and bf16 w: the 16-byte path (cols % 8 == 0), the scalar path (odd
// cols, and an aligned shape read from a base one element off), more rows than the grid holds; the
// output poisoned before each run. Then bandwidth at an 8B model's projection shapes.
#include <cmath>

#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

// ‖w[r] + s·d[r]‖ (or 1/‖…‖) per row, in double.
std::vector<double> reference(const std::vector<float>& w, const std::vector<float>& d, float s, bool inverse, int64_t rows,
                              int64_t cols) {
  std::vector<double> out(rows);
  for (int64_t r = 0; r < rows; r++) {
    double acc = 0;
    for (int64_t c = 0; c < cols; c++) {
      const double v = double(w[r * cols + c]) + double(s) * double(d[r * cols + c]);
      acc += v * v;
    }
    out[r] = inverse ? 1.0 / std::sqrt(acc) : std::sqrt(acc);
  }
  return out;
}

void correctness() {
  Rng r(11);
  struct Case {
    int64_t rows, cols;
  };
  const float s = 1.75f;
  for (Case c : {Case{1, 1}, Case{3, 7}, Case{17, 255}, Case{5, 1000}, Case{67, 320}, Case{4099, 33}, Case{9, 4104}}) {
    for (DType t : {DType::F32, DType::BF16}) {
      for (bool inverse : {false, true}) {
        for (int shift : {0, 1}) {  // shift 1: both bases one element off 16-byte alignment
          if (shift && c.cols % 8 != 0) continue;
          const int64_t n = c.rows * c.cols;
          // w ~ N(0, 0.05²), as a projection's weights; delta a product of small factors.
          auto w = randn(r, n + shift, 0.05f, t == DType::BF16);
          auto d = randn(r, n + shift, 0.02f, false);
          Buf dw = t == DType::BF16 ? up_bf16(w) : up(w), dd = up(d), out(size_t(c.rows) * 4);
          out.poison();
          const size_t esize = t == DType::BF16 ? 2 : 4;
          const void* wp = static_cast<const char*>(dw.p) + shift * esize;
          const float* dp = dd.f() + shift;
          lkc::weight_norm(out.f(), wp, t, dp, s, inverse, c.rows, c.cols, nullptr);
          const std::vector<float> ws(w.begin() + shift, w.end()), ds(d.begin() + shift, d.end());
          const auto ref = reference(ws, ds, s, inverse, c.rows, c.cols);
          std::string what = std::string(lkc::dtype_name(t)) + " " + dims({c.rows, c.cols}) + (inverse ? " inverse" : " norm") +
                             (shift ? " unaligned" : "");
          check("weight_norm", what, compare(down<float>(out.p, c.rows), ref), 1e-5);
        }
      }
    }
  }
  expect_throw("weight_norm", "i32 weight", [] { lkc::weight_norm(nullptr, nullptr, DType::I32, nullptr, 1.f, false, 1, 1, nullptr); });
  expect_throw("weight_norm", "negative rows",
               [] { lkc::weight_norm(nullptr, nullptr, DType::F32, nullptr, 1.f, false, -1, 1, nullptr); });
}

// Device-side random f32 fill for timing inputs.
__global__ void fill_f32_kernel(float* p, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = 1e-3f * float((i * 2654435761ll) % 2001 - 1000);
}

void timings() {
  struct Shape {
    int64_t rows, cols;
  };
  for (Shape sh : {Shape{4096, 4096}, Shape{14336, 4096}, Shape{4096, 14336}}) {
    const int64_t n = sh.rows * sh.cols;
    Buf w = rand_bf16(n, 5, 0.05f), d(size_t(n) * 4), out(size_t(sh.rows) * 4);
    fill_f32_kernel<<<1024, 256>>>(d.f(), n);
    HX_CUDA(cudaGetLastError());
    const double us = time_us([&] { lkc::weight_norm(out.f(), w.p, DType::BF16, d.f(), 2.f, true, sh.rows, sh.cols, nullptr); });
    timing("weight_norm bf16 w", dims({sh.rows, sh.cols}), us, gbps(6.0 * double(n), us));
  }
}

}  // namespace

int main() {
  return run("weight_norm", [] {
    correctness();
    if (!quick()) timings();
  });
}
