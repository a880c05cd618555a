// RMSNorm harness: forward (output and saved rstd) and backward (dx, and dw accumulated), vector and
// scalar paths, odd sizes, against float64 references; bandwidth at the 8B model's shape.
#include "harness.h"

using namespace hx;

namespace {

void correctness() {
  Rng r(21);
  const float eps = 1e-5f;
  struct Case {
    int64_t N;
    int C;
  };
  for (Case c : {Case{1, 7}, Case{7, 33}, Case{33, 127}, Case{5, 2048}, Case{127, 64}}) {
    const std::string tag = dims({c.N, c.C});
    auto x = randn(r, c.N * c.C, 2.f), w = randn(r, c.C, 1.f), dy = randn(r, c.N * c.C, 1.f);
    for (auto& v : w) v = round_bf16(1.f + 0.3f * v);
    Buf dx_ = up_bf16(x), dw_ = up_bf16(w), ddy = up_bf16(dy), out(c.N * c.C * 2), rstd(c.N * 4), dxo(c.N * c.C * 2), dwo(c.C * 4);
    out.poison();
    rstd.poison();
    lkc::rmsnorm_forward(out.bf(), rstd.f(), dx_.bf(), dw_.bf(), c.N, c.C, eps, nullptr);
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
    check("rmsnorm fwd y", tag, compare(down_bf16(out.p, c.N * c.C), ref), 1e-2);
    check("rmsnorm fwd rstd", tag, compare(down<float>(rstd.p, c.N), rref), 1e-5);
    dxo.poison();
    dwo.zero();
    lkc::rmsnorm_backward(dxo.bf(), dwo.f(), ddy.bf(), dx_.bf(), dw_.bf(), rstd.f(), c.N, c.C, nullptr);
    check("rmsnorm bwd dx", tag, compare(down_bf16(dxo.p, c.N * c.C), dxr), 1e-2);
    check("rmsnorm bwd dw", tag, compare(down<float>(dwo.p, c.C), dwr), 1e-4);
    dxo.poison();
    lkc::rmsnorm_backward(dxo.bf(), nullptr, ddy.bf(), dx_.bf(), dw_.bf(), rstd.f(), c.N, c.C, nullptr);
    check("rmsnorm bwd dx (frozen w)", tag, compare(down_bf16(dxo.p, c.N * c.C), dxr), 1e-2);
  }
  expect_throw("rmsnorm", "zero channels", [] { lkc::rmsnorm_forward(nullptr, nullptr, nullptr, nullptr, 4, 0, 1e-5f, nullptr); });
}

void timings() {
  const int64_t N = 16384;
  const int C = 4096;
  Buf x = rand_bf16(N * C, 1), w = rand_bf16(C, 2), dy = rand_bf16(N * C, 3), o(N * C * 2), rs(N * 4), dx(N * C * 2), dw(C * 4);
  double us = time_us([&] { lkc::rmsnorm_forward(o.bf(), rs.f(), x.bf(), w.bf(), N, C, 1e-5f, nullptr); });
  timing("rmsnorm fwd", dims({N, C}), us, gbps(4.0 * N * C, us));
  us = time_us([&] { lkc::rmsnorm_backward(dx.bf(), nullptr, dy.bf(), x.bf(), w.bf(), rs.f(), N, C, nullptr); });
  timing("rmsnorm bwd", dims({N, C}), us, gbps(6.0 * N * C, us));
  us = time_us([&] { lkc::rmsnorm_backward(dx.bf(), dw.f(), dy.bf(), x.bf(), w.bf(), rs.f(), N, C, nullptr); });
  timing("rmsnorm bwd +dw", dims({N, C}), us, gbps(6.0 * N * C, us));
}

}  // namespace

int main() {
  return run("rmsnorm", [] {
    correctness();
    if (!quick()) timings();
  });
}
