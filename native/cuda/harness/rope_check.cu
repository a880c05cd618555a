// RoPE harness: tables from inv_freq, forward and backward (rotation by −θ), full and partial rotary,
// in place, per-token positions (packed sequences restart at 0), against float64 references.
#include "harness.h"

using namespace hx;

namespace {

void correctness() {
  Rng r(31);
  struct Case {
    int64_t rows;
    int H, D, half;
  };
  for (Case c : {Case{1, 1, 2, 1}, Case{7, 3, 16, 8}, Case{33, 5, 16, 4}, Case{127, 2, 64, 32}, Case{9, 4, 128, 64}}) {
    const std::string tag = dims({c.rows, c.H, c.D}) + " half=" + std::to_string(c.half);
    const int P = 300;
    std::vector<float> inv(c.half);
    for (int i = 0; i < c.half; i++) inv[i] = float(std::pow(10000.0, -2.0 * i / (2 * c.half)));
    std::vector<int32_t> pos(c.rows);
    for (int64_t i = 0; i < c.rows; i++) pos[i] = int32_t(i % 41);  // sequences of 41 packed together
    auto x = randn(r, c.rows * c.H * c.D), dy = randn(r, c.rows * c.H * c.D);
    Buf dinv = up(inv), dpos = up(pos), cosb(size_t(P) * c.half * 4), sinb(size_t(P) * c.half * 4);
    lkc::rope_tables(cosb.f(), sinb.f(), dinv.f(), P, c.half, 1.f, nullptr);
    std::vector<double> cref(P * c.half), sref(P * c.half);
    for (int p = 0; p < P; p++)
      for (int i = 0; i < c.half; i++) {
        const double a = double(float(p) * inv[i]);
        cref[p * c.half + i] = std::cos(a), sref[p * c.half + i] = std::sin(a);
      }
    check("rope tables cos", tag, compare(down<float>(cosb.p, P * c.half), cref), 1e-6);
    check("rope tables sin", tag, compare(down<float>(sinb.p, P * c.half), sref), 1e-6);
    const auto ch = down<float>(cosb.p, P * c.half), sh = down<float>(sinb.p, P * c.half);
    auto rotate = [&](const std::vector<float>& in, double sign) {
      std::vector<double> o(in.size());
      for (int64_t rr = 0; rr < c.rows; rr++)
        for (int h = 0; h < c.H; h++) {
          const int64_t base = (rr * c.H + h) * c.D;
          for (int i = 0; i < c.half; i++) {
            const double co = ch[pos[rr] * c.half + i], si = sign * sh[pos[rr] * c.half + i];
            const double x1 = in[base + i], x2 = in[base + i + c.half];
            o[base + i] = x1 * co - x2 * si;
            o[base + i + c.half] = x2 * co + x1 * si;
          }
          for (int i = 2 * c.half; i < c.D; i++) o[base + i] = in[base + i];
        }
      return o;
    };
    Buf dx = up_bf16(x), out(x.size() * 2);
    out.poison();
    lkc::rope_forward(out.bf(), dx.bf(), cosb.f(), sinb.f(), dpos.as<int32_t>(), c.rows, c.H, c.D, c.half, nullptr);
    check("rope fwd", tag, compare(down_bf16(out.p, x.size()), rotate(x, 1)), 1e-2);
    Buf ddy = up_bf16(dy), din(x.size() * 2);
    din.poison();
    lkc::rope_backward(din.bf(), ddy.bf(), cosb.f(), sinb.f(), dpos.as<int32_t>(), c.rows, c.H, c.D, c.half, nullptr);
    check("rope bwd", tag, compare(down_bf16(din.p, x.size()), rotate(dy, -1)), 1e-2);
    lkc::rope_forward(dx.bf(), dx.bf(), cosb.f(), sinb.f(), dpos.as<int32_t>(), c.rows, c.H, c.D, c.half, nullptr);
    check("rope fwd in place", tag, compare(down_bf16(dx.p, x.size()), rotate(x, 1)), 1e-2);
  }
  expect_throw("rope", "half-width over head_dim/2",
               [] { lkc::rope_forward(nullptr, nullptr, nullptr, nullptr, nullptr, 4, 2, 8, 5, nullptr); });
}

void timings() {
  const int64_t rows = 16384;
  const int H = 32, D = 128, P = 4096;
  Buf x = rand_bf16(rows * H * D, 1), o(rows * H * D * 2), inv(D / 2 * 4), cs(size_t(P) * D / 2 * 4), sn(size_t(P) * D / 2 * 4);
  std::vector<int32_t> pos(rows);
  for (int64_t i = 0; i < rows; i++) pos[i] = int32_t(i % 2048);
  Buf dpos = up(pos);
  lkc::fill(inv.p, lkc::DType::F32, 0.01f, D / 2, nullptr);
  lkc::rope_tables(cs.f(), sn.f(), inv.f(), P, D / 2, 1.f, nullptr);
  const double us = time_us([&] { lkc::rope_forward(o.bf(), x.bf(), cs.f(), sn.f(), dpos.as<int32_t>(), rows, H, D, D / 2, nullptr); });
  timing("rope fwd", dims({rows, H, D}), us, gbps(4.0 * rows * H * D, us));
}

}  // namespace

int main() {
  return run("rope", [] {
    correctness();
    if (!quick()) timings();
  });
}
