// SwiGLU harness: forward and backward, bf16 and f32, against float64 references on odd sizes and
// misaligned pointers; bandwidth at the 8B model's MLP shape.
#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

// Values already representable in t go up as t; results come back as floats.
Buf up_as(DType t, const std::vector<float>& v) { return t == DType::F32 ? up(v) : up_bf16(v); }
std::vector<float> down_as(DType t, const void* p, size_t n) { return t == DType::F32 ? down<float>(p, n) : down_bf16(p, n); }

void correctness() {
  Rng r(41);
  for (DType t : {DType::BF16, DType::F32}) {
    const bool f32 = t == DType::F32;
    const size_t es = lkc::dtype_size(t);
    const double tol = f32 ? 1e-5 : 1e-2;  // bf16: one output rounding
    for (int64_t n : {1, 7, 33, 127, 100003}) {
      for (int shift : {0, 1}) {
        const std::string tag = std::string(lkc::dtype_name(t)) + " n=" + std::to_string(n) + (shift ? " misaligned" : "");
        auto g = randn(r, n + shift, 2.f, !f32), u = randn(r, n + shift, 1.f, !f32), dh = randn(r, n + shift, 1.f, !f32);
        Buf dg = up_as(t, g), du = up_as(t, u), ddh = up_as(t, dh), h((n + shift) * es), og((n + shift) * es), ou((n + shift) * es);
        h.poison(), og.poison(), ou.poison();
        // shift elements in: 2 (bf16) or 4 (f32) bytes off the 16-byte alignment the vector path needs.
        auto at = [&](const Buf& b) { return static_cast<char*>(b.p) + shift * es; };
        lkc::swiglu_forward(at(h), at(dg), at(du), t, n, nullptr);
        lkc::swiglu_backward(at(og), at(ou), at(ddh), at(dg), at(du), t, n, nullptr);
        std::vector<double> hr(n), gr(n), ur(n);
        for (int64_t i = 0; i < n; i++) {
          const double a = g[i + shift], b = u[i + shift], d = dh[i + shift], s = 1.0 / (1.0 + std::exp(-a));
          hr[i] = a * s * b;
          ur[i] = d * a * s;
          gr[i] = d * b * s * (1 + a * (1 - s));
        }
        check("swiglu fwd", tag, compare(down_as(t, at(h), n), hr), tol);
        check("swiglu bwd dg", tag, compare(down_as(t, at(og), n), gr), tol);
        check("swiglu bwd du", tag, compare(down_as(t, at(ou), n), ur), tol);
      }
    }
  }
  expect_throw("swiglu", "i32 tensors", [] { lkc::swiglu_forward(nullptr, nullptr, nullptr, DType::I32, 8, nullptr); });
}

void timings() {
  const int64_t n = int64_t(4096) * 14336;
  Buf g = rand_bf16(n, 1), u = rand_bf16(n, 2), dh = rand_bf16(n, 3), h(n * 2), a(n * 2), b(n * 2);
  double us = time_us([&] { lkc::swiglu_forward(h.p, g.p, u.p, DType::BF16, n, nullptr); });
  timing("swiglu fwd", "4096x14336", us, gbps(6.0 * n, us));
  us = time_us([&] { lkc::swiglu_backward(a.p, b.p, dh.p, g.p, u.p, DType::BF16, n, nullptr); });
  timing("swiglu bwd", "4096x14336", us, gbps(10.0 * n, us));
}

}  // namespace

int main() {
  return run("swiglu", [] {
    correctness();
    if (!quick()) timings();
  });
}
