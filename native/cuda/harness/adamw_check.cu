// AdamW harness: three steps with weight decay and a device-side clip coefficient, against the same
// sequence of fp32 operations on the CPU (torch's order), plus the bf16 copy; bandwidth on 64 Mi params.
#include "harness.h"

using namespace hx;

namespace {

void correctness() {
  Rng r(71);
  for (int64_t n : {1, 7, 33, 127, 100003}) {
    const std::string tag = "n=" + std::to_string(n);
    auto p = randn(r, n, 0.1f, false);
    std::vector<float> m(n, 0.f), v(n, 0.f);
    Buf dp = up(p), dm = up(m), dv = up(v), pb(n * 2), coef = up(std::vector<float>{0.8f});
    const float lr = 2e-4f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.01f;
    for (int step = 1; step <= 3; step++) {
      auto g = randn(r, n, 1.f, false);
      Buf dg = up(g);
      pb.poison();
      lkc::adamw_step(dp.f(), dm.f(), dv.f(), pb.bf(), dg.f(), coef.f(), n, lr, b1, b2, eps, wd, step, nullptr);
      const float decay = float(1.0 - double(lr) * double(wd)), w1 = float(1.0 - double(b1)), fb2 = b2, w2 = float(1.0 - double(b2));
      const float bc2 = float(std::sqrt(1.0 - std::pow(double(b2), step)));
      const float ns = float(-(double(lr) / (1.0 - std::pow(double(b1), step))));
      for (int64_t i = 0; i < n; i++) {
        const float gi = g[i] * 0.8f;
        float pi = p[i] * decay;
        m[i] = m[i] + w1 * (gi - m[i]);
        v[i] = v[i] * fb2 + w2 * (gi * gi);
        p[i] = pi + ns * (m[i] / (std::sqrt(v[i]) / bc2 + eps));
      }
    }
    std::vector<double> pr(p.begin(), p.end()), mr(m.begin(), m.end()), vr(v.begin(), v.end()), pbr(n);
    for (int64_t i = 0; i < n; i++) pbr[i] = round_bf16(p[i]);
    check("adamw p", tag, compare(down<float>(dp.p, n), pr), 1e-6);
    check("adamw m", tag, compare(down<float>(dm.p, n), mr), 1e-6);
    check("adamw v", tag, compare(down<float>(dv.p, n), vr), 1e-6);
    check("adamw p bf16 copy", tag, compare(down_bf16(pb.p, n), pbr), 1e-6);
  }
  expect_throw("adamw", "step 0", [] {
    lkc::adamw_step(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 4, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.f, 0, nullptr);
  });
}

void timings() {
  const int64_t n = int64_t(64) << 20;
  Buf p(n * 4), m(n * 4), v(n * 4), g(n * 4), pb(n * 2);
  lkc::fill(p.p, lkc::DType::F32, 0.5f, n, nullptr), lkc::fill(g.p, lkc::DType::F32, 0.01f, n, nullptr);
  m.zero(), v.zero();
  const double us = time_us([&] { lkc::adamw_step(p.f(), m.f(), v.f(), pb.bf(), g.f(), nullptr, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 5, nullptr); });
  timing("adamw step (+bf16 copy)", "64Mi params", us, gbps(30.0 * n, us));
}

}  // namespace

int main() {
  return run("adamw", [] {
    correctness();
    if (!quick()) timings();
  });
}
