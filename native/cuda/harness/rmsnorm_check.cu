// RMSNorm harness: forward (output and saved rstd) and backward (dx, and dw accumulated), bf16 and f32,
// vector, scalar and register-row paths, odd sizes, against float64 references; bandwidth at the 8B
// model's shape.
#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

// Values already representable in t go up as t; results come back as floats.
Buf up_as(DType t, const std::vector<float>& v) { return t == DType::F32 ? up(v) : up_bf16(v); }
std::vector<float> down_as(DType t, const void* p, size_t n) { return t == DType::F32 ? down<float>(p, n) : down_bf16(p, n); }

void correctness() {
  Rng r(21);
  const float eps = 1e-5f;
  struct Case {
    int64_t N;
    int C;
  };
  for (DType t : {DType::BF16, DType::F32}) {
    const bool f32 = t == DType::F32;
    const size_t es = lkc::dtype_size(t);
    // bf16 rounds y, dx once more than fp32: a bf16 tolerance there; f32 is fp32 arithmetic throughout.
    const double tol_y = f32 ? 1e-5 : 1e-2, tol_dw = f32 ? 1e-5 : 1e-4;
    for (Case c : {Case{1, 7}, Case{7, 33}, Case{33, 127}, Case{5, 2048}, Case{127, 64}, Case{9, 896}, Case{11, 1032}, Case{3, 4096}, Case{2, 8192}, Case{2, 8200}}) {
      const std::string tag = std::string(lkc::dtype_name(t)) + " " + dims({c.N, c.C});
      auto x = randn(r, c.N * c.C, 2.f, !f32), w = randn(r, c.C, 1.f, !f32), dy = randn(r, c.N * c.C, 1.f, !f32);
      for (auto& v : w) v = f32 ? 1.f + 0.3f * v : round_bf16(1.f + 0.3f * v);
      Buf dx_ = up_as(t, x), dw_ = up_as(t, w), ddy = up_as(t, dy), out(c.N * c.C * es), rstd(c.N * 4), dxo(c.N * c.C * es), dwo(c.C * 4);
      out.poison();
      rstd.poison();
      lkc::rmsnorm_forward(out.p, rstd.f(), dx_.p, dw_.p, t, c.N, c.C, eps, nullptr);
      std::vector<double> ref(c.N * c.C), rref(c.N), dxr(c.N * c.C), dwr(c.C, 0.0);
      for (int64_t n = 0; n < c.N; n++) {
        double ss = 0;
        for (int k = 0; k < c.C; k++) ss += double(x[n * c.C + k]) * x[n * c.C + k];
        const double rs = 1.0 / std::sqrt(ss / c.C + eps);
        rref[n] = rs;
        double dot = 0;
        for (int k = 0; k < c.C; k++) {
          ref[n * c.C + k] = double(w[k]) * x[n * c.C + k] * rs;
          dot += double(dy[n * c.C + k]) * w[k] * x[n * c.C + k];
        }
        for (int k = 0; k < c.C; k++) {
          const double xi = x[n * c.C + k], gi = double(dy[n * c.C + k]) * w[k];
          dxr[n * c.C + k] = rs * (gi - xi * rs * rs * dot / c.C);
          dwr[k] += double(dy[n * c.C + k]) * xi * rs;
        }
      }
      check("rmsnorm fwd y", tag, compare(down_as(t, out.p, c.N * c.C), ref), tol_y);
      check("rmsnorm fwd rstd", tag, compare(down<float>(rstd.p, c.N), rref), 1e-5);
      dxo.poison();
      dwo.zero();
      lkc::rmsnorm_backward(dxo.p, dwo.f(), ddy.p, dx_.p, dw_.p, t, rstd.f(), c.N, c.C, nullptr);
      check("rmsnorm bwd dx", tag, compare(down_as(t, dxo.p, c.N * c.C), dxr), tol_y);
      check("rmsnorm bwd dw", tag, compare(down<float>(dwo.p, c.C), dwr), tol_dw);
      dxo.poison();
      lkc::rmsnorm_backward(dxo.p, nullptr, ddy.p, dx_.p, dw_.p, t, rstd.f(), c.N, c.C, nullptr);
      check("rmsnorm bwd dx (frozen w)", tag, compare(down_as(t, dxo.p, c.N * c.C), dxr), tol_y);
    }
  }
  expect_throw("rmsnorm", "zero channels",
               [] { lkc::rmsnorm_forward(nullptr, nullptr, nullptr, nullptr, DType::BF16, 4, 0, 1e-5f, nullptr); });
  expect_throw("rmsnorm", "i32 tensors", [] { lkc::rmsnorm_forward(nullptr, nullptr, nullptr, nullptr, DType::I32, 4, 8, 1e-5f, nullptr); });
}

// The 8B model's width at a training step's 2048 rows and at 16384.
void timings() {
  const int C = 4096;
  for (int64_t N : {int64_t(2048), int64_t(16384)}) {
    Buf x = rand_bf16(N * C, 1), w = rand_bf16(C, 2), dy = rand_bf16(N * C, 3), o(N * C * 2), rs(N * 4), dx(N * C * 2), dw(C * 4);
    double us = time_us([&] { lkc::rmsnorm_forward(o.p, rs.f(), x.p, w.p, DType::BF16, N, C, 1e-5f, nullptr); });
    timing("rmsnorm fwd", dims({N, C}), us, gbps(4.0 * N * C, us));
    us = time_us([&] { lkc::rmsnorm_backward(dx.p, nullptr, dy.p, x.p, w.p, DType::BF16, rs.f(), N, C, nullptr); });
    timing("rmsnorm bwd", dims({N, C}), us, gbps(6.0 * N * C, us));
    us = time_us([&] { lkc::rmsnorm_backward(dx.p, dw.f(), dy.p, x.p, w.p, DType::BF16, rs.f(), N, C, nullptr); });
    timing("rmsnorm bwd +dw", dims({N, C}), us, gbps(6.0 * N * C, us));
  }
}

}  // namespace

int main() {
  return run("rmsnorm", [] {
    correctness();
    if (!quick()) timings();
  });
}
