// SwiGLU harness: forward and backward against float64 references on odd sizes and misaligned
// pointers; bandwidth at the 8B model's MLP shape.
#include "harness.h"

using namespace hx;

namespace {

void correctness() {
  Rng r(41);
  for (int64_t n : {1, 7, 33, 127, 100003}) {
    for (int shift : {0, 1}) {
      const std::string tag = "n=" + std::to_string(n) + (shift ? " misaligned" : "");
      auto g = randn(r, n + shift, 2.f), u = randn(r, n + shift, 1.f), dh = randn(r, n + shift, 1.f);
      Buf dg = up_bf16(g), du = up_bf16(u), ddh = up_bf16(dh), h((n + shift) * 2), og((n + shift) * 2), ou((n + shift) * 2);
      h.poison(), og.poison(), ou.poison();
      lkc::swiglu_forward(h.bf() + shift, dg.bf() + shift, du.bf() + shift, n, nullptr);
      lkc::swiglu_backward(og.bf() + shift, ou.bf() + shift, ddh.bf() + shift, dg.bf() + shift, du.bf() + shift, n, nullptr);
      std::vector<double> hr(n), gr(n), ur(n);
      for (int64_t i = 0; i < n; i++) {
        const double a = g[i + shift], b = u[i + shift], d = dh[i + shift], s = 1.0 / (1.0 + std::exp(-a));
        hr[i] = a * s * b;
        ur[i] = d * a * s;
        gr[i] = d * b * s * (1 + a * (1 - s));
      }
      check("swiglu fwd", tag, compare(down_bf16(h.bf() + shift, n), hr), 1e-2);
      check("swiglu bwd dg", tag, compare(down_bf16(og.bf() + shift, n), gr), 1e-2);
      check("swiglu bwd du", tag, compare(down_bf16(ou.bf() + shift, n), ur), 1e-2);
    }
  }
}

void timings() {
  const int64_t n = int64_t(4096) * 14336;
  Buf g = rand_bf16(n, 1), u = rand_bf16(n, 2), dh = rand_bf16(n, 3), h(n * 2), a(n * 2), b(n * 2);
  double us = time_us([&] { lkc::swiglu_forward(h.bf(), g.bf(), u.bf(), n, nullptr); });
  timing("swiglu fwd", "4096x14336", us, gbps(6.0 * n, us));
  us = time_us([&] { lkc::swiglu_backward(a.bf(), b.bf(), dh.bf(), g.bf(), u.bf(), n, nullptr); });
  timing("swiglu bwd", "4096x14336", us, gbps(10.0 * n, us));
}

}  // namespace

int main() {
  return run("swiglu", [] {
    correctness();
    if (!quick()) timings();
  });
}
