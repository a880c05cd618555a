// Fused linear + cross-entropy harness: loss and lse forward, forward_grad's loss, lse and dh_unit, and
// scale_by_scalar, over several vocabulary chunks (one partial), ignored targets, bf16 and f32 h and W,
// logits whose row maxima move between chunks, against float64 references on the exact inputs; plain
// cross-entropy over given logits; then times at the three models' lm_head shapes.
#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

// Values already representable in t go up as t; results come back as floats.
Buf up_as(DType t, const std::vector<float>& v) { return t == DType::F32 ? up(v) : up_bf16(v); }
std::vector<float> down_as(DType t, const void* p, size_t n) { return t == DType::F32 ? down<float>(p, n) : down_bf16(p, n); }

void correctness() {
  Rng r(61);
  struct Case {
    int64_t N;
    int C;
    int64_t V;
    int chunk;
  };
  for (Case c : {Case{1, 8, 7, 7}, Case{33, 64, 1000, 300}, Case{127, 96, 2053, 1024}, Case{17, 40, 130, 1000}})
    for (DType type : {DType::BF16, DType::F32}) {
      const bool f32 = type == DType::F32;
      const std::string tag = std::string(lkc::dtype_name(type)) + " " + dims({c.N, c.C}) + " V=" + std::to_string(c.V) +
                              " chunk=" + std::to_string(c.chunk);
      auto h = randn(r, c.N * c.C, 1.f, !f32), W = randn(r, c.V * c.C, 0.3f, !f32);
      // Later vocabulary rows grow, so most rows' running max moves from chunk to chunk (the rescale path).
      for (int64_t v = 0; v < c.V; v++)
        for (int k = 0; k < c.C; k++) {
          const float x = W[v * c.C + k] * (1.f + 2.f * float(v) / float(c.V));
          W[v * c.C + k] = f32 ? x : hx::round_bf16(x);
        }
      std::vector<int32_t> t(c.N);
      int count = 0;
      for (int64_t n = 0; n < c.N; n++) {
        t[n] = (n % 5 == 3) ? -100 : r.below(int(c.V));
        count += t[n] != -100;
      }
      const float gs = 1.f / std::max(count, 1);
      Buf dh_ = up_as(type, h), dW_ = up_as(type, W), dtg = up(t), dgs = up(std::vector<float>{gs}), loss(c.N * 4), lse(c.N * 4),
          dhu(c.N * c.C * 4), dhg(c.N * c.C * lkc::dtype_size(type));
      Buf ws(lkc::linear_cross_entropy_workspace(c.N, c.chunk));
      loss.poison(), lse.poison();
      lkc::linear_cross_entropy_forward(loss.f(), lse.f(), dh_.p, dW_.p, type, dtg.as<int32_t>(), c.N, c.C, c.V, c.chunk, ws.p, nullptr);
      std::vector<double> lref(c.N), lseref(c.N), dhref(c.N * c.C, 0.0);
      std::vector<double> z(c.V);
      for (int64_t n = 0; n < c.N; n++) {
        double m = -1e300;
        for (int64_t v = 0; v < c.V; v++) {
          double a = 0;
          for (int k = 0; k < c.C; k++) a += double(h[n * c.C + k]) * W[v * c.C + k];
          z[v] = a, m = std::max(m, a);
        }
        double s = 0;
        for (int64_t v = 0; v < c.V; v++) s += std::exp(z[v] - m);
        lseref[n] = m + std::log(s);
        lref[n] = t[n] == -100 ? 0.0 : lseref[n] - z[t[n]];
        if (t[n] == -100) continue;
        for (int64_t v = 0; v < c.V; v++) {
          const double g = gs * (std::exp(z[v] - lseref[n]) - (v == t[n] ? 1.0 : 0.0));
          for (int k = 0; k < c.C; k++) dhref[n * c.C + k] += g * W[v * c.C + k];
        }
      }
      check("linear CE fwd loss", tag, compare(down<float>(loss.p, c.N), lref), 1e-5);
      check("linear CE fwd lse", tag, compare(down<float>(lse.p, c.N), lseref), 1e-5);
      loss.poison();  // lse is optional: the training path does not read it
      lkc::linear_cross_entropy_forward(loss.f(), nullptr, dh_.p, dW_.p, type, dtg.as<int32_t>(), c.N, c.C, c.V, c.chunk, ws.p, nullptr);
      check("linear CE fwd loss, no lse", tag, compare(down<float>(loss.p, c.N), lref), 1e-5);
      loss.poison(), lse.poison(), dhu.poison();
      lkc::linear_cross_entropy_forward_grad(loss.f(), lse.f(), dhu.f(), dh_.p, dW_.p, type, dtg.as<int32_t>(), c.N, c.C, c.V, c.chunk,
                                             ws.p, nullptr);
      check("linear CE fwd+grad loss", tag, compare(down<float>(loss.p, c.N), lref), 1e-5);
      check("linear CE fwd+grad lse", tag, compare(down<float>(lse.p, c.N), lseref), 1e-5);
      loss.poison(), dhu.poison();
      lkc::linear_cross_entropy_forward_grad(loss.f(), nullptr, dhu.f(), dh_.p, dW_.p, type, dtg.as<int32_t>(), c.N, c.C, c.V, c.chunk,
                                             ws.p, nullptr);
      check("linear CE fwd+grad loss, no lse", tag, compare(down<float>(loss.p, c.N), lref), 1e-5);
      dhg.poison();
      lkc::scale_by_scalar(dhg.p, type, dhu.f(), dgs.f(), c.N * c.C, nullptr);
      // bf16: P is rounded to bf16 before its GEMM (~3e-3 relative), so a bf16 tolerance; f32: fp32 throughout.
      const double tol = f32 ? 1e-4 : 1e-2;
      check("linear CE fwd+grad dh (scaled)", tag, compare(down_as(type, dhg.p, c.N * c.C), dhref), tol);
      // plain cross-entropy on the full logits (f32)
      std::vector<float> logits(c.N * c.V);
      for (int64_t n = 0; n < c.N; n++)
        for (int64_t v = 0; v < c.V; v++) {
          double a = 0;
          for (int k = 0; k < c.C; k++) a += double(h[n * c.C + k]) * W[v * c.C + k];
          logits[n * c.V + v] = float(a);
        }
      Buf dl = up(logits);
      loss.poison();
      lkc::cross_entropy_forward(loss.f(), lse.f(), dl.p, DType::F32, dtg.as<int32_t>(), c.N, c.V, nullptr);
      check("cross-entropy on logits f32", tag, compare(down<float>(loss.p, c.N), lref), 1e-5);
    }
  expect_throw("linear CE", "zero chunk", [] {
    lkc::linear_cross_entropy_forward(nullptr, nullptr, nullptr, nullptr, DType::BF16, nullptr, 4, 4, 4, 0, nullptr, nullptr);
  });
  expect_throw("linear CE", "i32 h and W", [] {
    lkc::linear_cross_entropy_forward(nullptr, nullptr, nullptr, nullptr, DType::I32, nullptr, 4, 4, 4, 4, nullptr, nullptr);
  });
}

void timings() {
  struct M {
    const char* name;
    int C;
    int64_t V;
  };
  const int64_t N = 8192;  // 4 × 2048 tokens
  const int chunk = 16384;
  for (M m : {M{"Llama-3.2-1B", 2048, 128256}, M{"Qwen2.5-0.5B", 896, 151936}, M{"Llama-3.1-8B", 4096, 128256}}) {
    Buf h = rand_bf16(N * m.C, 1), W = rand_bf16(m.V * m.C, 2, 0.05f), loss(N * 4), lse(N * 4), dhu(N * m.C * 4);
    std::vector<int32_t> t(N);
    Rng r(3);
    for (auto& x : t) x = r.below(int(m.V));
    Buf dt = up(t), ws(lkc::linear_cross_entropy_workspace(N, chunk));
    const double flops = 2.0 * N * m.C * m.V;
    const std::string shape = std::string(m.name) + " " + dims({N, m.C}) + " V=" + std::to_string(m.V);
    double us = time_us(
        [&] {
          lkc::linear_cross_entropy_forward(loss.f(), lse.f(), h.p, W.p, DType::BF16, dt.as<int32_t>(), N, m.C, m.V, chunk, ws.p, nullptr);
        },
        2, 10);
    timing("linear CE fwd (1 GEMM)", shape, us, tflops(flops, us));
    us = time_us(
        [&] {
          lkc::linear_cross_entropy_forward_grad(loss.f(), lse.f(), dhu.f(), h.p, W.p, DType::BF16, dt.as<int32_t>(), N, m.C, m.V, chunk,
                                                 ws.p, nullptr);
        },
        2, 10);
    timing("linear CE fwd+grad (2 GEMMs)", shape, us, tflops(2 * flops, us));
    std::printf("| time | linear CE workspace | %s | - | %.0f MiB |\n", shape.c_str(),
                double(lkc::linear_cross_entropy_workspace(N, chunk)) / (1 << 20));
  }
}

}  // namespace

int main() {
  return run("cross_entropy", [] {
    correctness();
    if (!quick()) timings();
  });
}
