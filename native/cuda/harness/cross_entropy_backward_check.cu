// Cross-entropy over given logits, the pieces the unfused path adds: lkc::cross_entropy_forward followed
// by cross_entropy_zero_ignored (loss and lse 0 on ignored rows, the CPU backend's convention), then
// cross_entropy_backward: dlogits = gradLoss·(softmax − onehot), ignored rows (−100, and a target outside
// [0, V)) all zero; f32 and bf16 logits, separate output and in place (dlogits = logits), against
// float64 references on the exact inputs; then bandwidth at a small model's [tokens, vocab].
#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

void correctness() {
  Rng r(95);
  struct Case {
    int64_t N, V;
  };
  // Logits ~ N(0, 1.5²) and at least 3 kept rows where V > 1: a row whose target logit dominates has
  // softmax − 1 ≈ −Σ(other p), an fp32 cancellation that a lone row would turn into a large relative error.
  for (Case c : {Case{4, 7}, Case{33, 1000}, Case{127, 2053}, Case{17, 130}, Case{5, 50257}, Case{2, 1}}) {
    for (DType t : {DType::F32, DType::BF16}) {
      const bool bf = t == DType::BF16;
      const std::string tag = std::string(lkc::dtype_name(t)) + " " + dims({c.N, c.V});
      auto z = randn(r, c.N * c.V, 1.5f, bf);
      std::vector<int32_t> tg(c.N);
      int count = 0;
      for (int64_t n = 0; n < c.N; n++) {
        tg[n] = (n % 5 == 3) ? -100 : (n % 7 == 5 ? int32_t(c.V) : r.below(int(c.V)));  // −100 and out of range: zero rows
        count += tg[n] >= 0 && tg[n] < c.V;
      }
      const float gl = 1.f / float(std::max(count, 1)) * 0.75f;
      Buf dz = bf ? up_bf16(z) : up(z), dt = up(tg), loss(c.N * 4), lse(c.N * 4), dgl = up(std::vector<float>{gl});
      Buf dd(size_t(c.N * c.V) * lkc::dtype_size(t));
      loss.poison(), lse.poison();
      lkc::cross_entropy_forward(loss.f(), lse.f(), dz.p, t, dt.as<int32_t>(), c.N, c.V, nullptr);
      const auto loss0 = down<float>(loss.p, c.N), lse0 = down<float>(lse.p, c.N);
      lkc::cross_entropy_zero_ignored(loss.f(), lse.f(), dt.as<int32_t>(), c.N, c.V, nullptr);
      const auto loss1 = down<float>(loss.p, c.N), lse1 = down<float>(lse.p, c.N);
      bool zeroed = true;
      for (int64_t n = 0; n < c.N; n++) {
        const bool ignored = tg[n] < 0 || tg[n] >= c.V;
        zeroed = zeroed && (ignored ? (loss1[n] == 0.f && lse1[n] == 0.f)
                                    : (std::memcmp(&loss1[n], &loss0[n], 4) == 0 && std::memcmp(&lse1[n], &lse0[n], 4) == 0));
      }
      expect("cross-entropy zero_ignored", tag + ": ignored rows 0, kept rows untouched", zeroed);
      std::vector<double> ref(c.N * c.V, 0.0), lseref(c.N, 0.0);
      for (int64_t n = 0; n < c.N; n++) {
        if (tg[n] < 0 || tg[n] >= c.V) continue;
        double m = -1e300, s = 0;
        for (int64_t v = 0; v < c.V; v++) m = std::max(m, double(z[n * c.V + v]));
        for (int64_t v = 0; v < c.V; v++) s += std::exp(double(z[n * c.V + v]) - m);
        const double l = m + std::log(s);
        lseref[n] = l;
        for (int64_t v = 0; v < c.V; v++)
          ref[n * c.V + v] = double(gl) * (std::exp(double(z[n * c.V + v]) - l) - (v == tg[n] ? 1.0 : 0.0));
      }
      check("cross-entropy fwd + zero_ignored: lse", tag, compare(lse1, lseref), 1e-5);
      // f32: the saved lse and expf are within a few ulp; bf16: the result is rounded to bf16.
      const double tol = bf ? 1e-2 : 1e-5;
      auto download = [&](const void* p) { return bf ? down_bf16(p, c.N * c.V) : down<float>(p, c.N * c.V); };
      dd.poison();
      lkc::cross_entropy_backward(dd.p, dz.p, t, dt.as<int32_t>(), lse.f(), dgl.f(), c.N, c.V, nullptr);
      check("cross-entropy bwd", tag, compare(download(dd.p), ref), tol);
      lkc::cross_entropy_backward(dz.p, dz.p, t, dt.as<int32_t>(), lse.f(), dgl.f(), c.N, c.V, nullptr);
      check("cross-entropy bwd in place", tag, compare(download(dz.p), ref), tol);
    }
  }
  expect_throw("cross-entropy bwd", "i32 logits", [] {
    lkc::cross_entropy_backward(nullptr, nullptr, DType::I32, nullptr, nullptr, nullptr, 4, 4, nullptr);
  });
}

void timings() {
  const int64_t N = 4096, V = 49152;
  Buf z = rand_bf16(N * V, 1, 4.f), d(size_t(N * V) * 2), loss(N * 4), lse(N * 4), gl = up(std::vector<float>{1.f / N});
  std::vector<int32_t> tg(N);
  Rng r(7);
  for (auto& x : tg) x = r.below(int(V));
  Buf dt = up(tg);
  lkc::cross_entropy_forward(loss.f(), lse.f(), z.p, DType::BF16, dt.as<int32_t>(), N, V, nullptr);
  double us = time_us([&] { lkc::cross_entropy_forward(loss.f(), lse.f(), z.p, DType::BF16, dt.as<int32_t>(), N, V, nullptr); });
  timing("cross-entropy fwd bf16", dims({N, V}), us, gbps(2.0 * N * V, us));
  us = time_us([&] { lkc::cross_entropy_backward(d.p, z.p, DType::BF16, dt.as<int32_t>(), lse.f(), gl.f(), N, V, nullptr); });
  timing("cross-entropy bwd bf16", dims({N, V}), us, gbps(4.0 * N * V, us));
}

}  // namespace

int main() {
  return run("cross_entropy_backward", [] {
    correctness();
    if (!quick()) timings();
  });
}
