// SGD harness: three steps with and without momentum and weight decay, bit-exact against the same fp32
// operations on the CPU (torch's roundings: fma for the add-with-alpha ops, mul then add for the
// buffer), and in float64 against torch.optim.SGD's own definition (first step buf = d, no zero buffer)
// to show that a zeroed buffer gives torch's first step; then bandwidth on 64 Mi parameters.
#include "harness.h"

using namespace hx;

namespace {

void correctness() {
  Rng r(97);
  struct Cfg {
    float momentum, wd;
    bool buf;
  };
  for (int64_t n : {1, 7, 33, 127, 100003}) {
    for (Cfg cfg : {Cfg{0.9f, 0.01f, true}, Cfg{0.9f, 0.f, true}, Cfg{0.f, 0.01f, false}, Cfg{0.f, 0.f, false}, Cfg{0.5f, 0.1f, true}}) {
      char tagc[128];
      std::snprintf(tagc, sizeof tagc, "n=%lld momentum=%g wd=%g%s", static_cast<long long>(n), double(cfg.momentum), double(cfg.wd),
                    cfg.buf ? "" : " no buffer");
      const std::string tag = tagc;
      const double lr_d = 0.05;
      const float lr = float(lr_d), neg_lr = float(-lr_d);
      auto p = randn(r, n, 0.5f, false);
      std::vector<float> buf(n, 0.f);
      std::vector<double> pd(p.begin(), p.end()), bd(n, 0.0);
      Buf dp = up(p), db = up(buf);
      for (int step = 1; step <= 3; step++) {
        auto g = randn(r, n, 1.f, false);
        Buf dg = up(g);
        lkc::sgd_step(dp.f(), cfg.buf ? db.f() : nullptr, dg.f(), n, lr, cfg.wd, cfg.momentum, nullptr);
        for (int64_t i = 0; i < n; i++) {
          // fp32, torch's roundings
          float d = cfg.wd != 0.f ? std::fma(cfg.wd, p[i], g[i]) : g[i];
          if (cfg.buf) {
            volatile float t = buf[i] * cfg.momentum;  // volatile: no host FMA
            d = t + d;
            buf[i] = d;
          }
          p[i] = std::fma(neg_lr, d, p[i]);
          // float64, torch.optim.SGD's definition
          double dd = double(g[i]) + double(cfg.wd) * pd[i];
          if (cfg.buf) {
            bd[i] = step == 1 ? dd : double(cfg.momentum) * bd[i] + dd;
            dd = bd[i];
          }
          pd[i] -= lr_d * dd;
        }
      }
      std::vector<double> pr(p.begin(), p.end()), br(buf.begin(), buf.end());
      const auto gp = down<float>(dp.p, n);
      check("sgd p (bit-exact)", tag, compare(gp, pr), 0);
      if (cfg.buf) check("sgd momentum buffer (bit-exact)", tag, compare(down<float>(db.p, n), br), 0);
      check("sgd p vs float64 torch definition", tag, compare(gp, pd), 1e-6);
    }
  }
}

void timings() {
  const int64_t n = int64_t(64) << 20;
  Buf p(size_t(n) * 4), b(size_t(n) * 4), g(size_t(n) * 4);
  p.zero(), b.zero(), g.zero();
  double us = time_us([&] { lkc::sgd_step(p.f(), b.f(), g.f(), n, 1e-3f, 0.01f, 0.9f, nullptr); });
  timing("sgd step (momentum)", "64Mi", us, gbps(20.0 * n, us));
  us = time_us([&] { lkc::sgd_step(p.f(), nullptr, g.f(), n, 1e-3f, 0.f, 0.f, nullptr); });
  timing("sgd step (plain)", "64Mi", us, gbps(12.0 * n, us));
}

}  // namespace

int main() {
  return run("sgd", [] {
    correctness();
    if (!quick()) timings();
  });
}
