// RoPE harness: tables from inv_freq, forward and backward (rotation by −θ), full and partial rotary,
// in place, per-token positions (packed sequences restart at 0), bf16 and f32 activations, pair and
// scalar paths, against float64 references.
#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

// Values already representable in t go up as t; results come back as floats.
Buf up_as(DType t, const std::vector<float>& v) { return t == DType::F32 ? up(v) : up_bf16(v); }
std::vector<float> down_as(DType t, const void* p, size_t n) { return t == DType::F32 ? down<float>(p, n) : down_bf16(p, n); }

void correctness() {
  Rng r(31);
  struct Case {
    int64_t rows;
    int H, D, half;
  };
  // half = 1, 5: the scalar path; even half: the pair path.
  for (Case c : {Case{1, 1, 2, 1}, Case{7, 3, 16, 8}, Case{33, 5, 16, 4}, Case{127, 2, 64, 32}, Case{9, 4, 128, 64}, Case{11, 3, 13, 5}, Case{5, 9, 128, 64}}) {
    const std::string tag = dims({c.rows, c.H, c.D}) + " half=" + std::to_string(c.half);
    const int P = 300;
    std::vector<float> inv(c.half);
    for (int i = 0; i < c.half; i++) inv[i] = float(std::pow(10000.0, -2.0 * i / (2 * c.half)));
    std::vector<int32_t> pos(c.rows);
    for (int64_t i = 0; i < c.rows; i++) pos[i] = int32_t(i % 41);  // sequences of 41 packed together
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
    for (DType t : {DType::BF16, DType::F32}) {
      const bool f32 = t == DType::F32;
      const size_t es = lkc::dtype_size(t);
      const double tol = f32 ? 1e-5 : 1e-2;  // bf16: one output rounding
      const std::string ttag = std::string(lkc::dtype_name(t)) + " " + tag;
      auto x = randn(r, c.rows * c.H * c.D, 1.f, !f32), dy = randn(r, c.rows * c.H * c.D, 1.f, !f32);
      Buf dx = up_as(t, x), out(x.size() * es);
      out.poison();
      lkc::rope_forward(out.p, dx.p, t, cosb.f(), sinb.f(), dpos.as<int32_t>(), c.rows, c.H, c.D, c.half, nullptr);
      check("rope fwd", ttag, compare(down_as(t, out.p, x.size()), rotate(x, 1)), tol);
      Buf ddy = up_as(t, dy), din(x.size() * es);
      din.poison();
      lkc::rope_backward(din.p, ddy.p, t, cosb.f(), sinb.f(), dpos.as<int32_t>(), c.rows, c.H, c.D, c.half, nullptr);
      check("rope bwd", ttag, compare(down_as(t, din.p, x.size()), rotate(dy, -1)), tol);
      lkc::rope_forward(dx.p, dx.p, t, cosb.f(), sinb.f(), dpos.as<int32_t>(), c.rows, c.H, c.D, c.half, nullptr);
      check("rope fwd in place", ttag, compare(down_as(t, dx.p, x.size()), rotate(x, 1)), tol);
    }
  }
  expect_throw("rope", "half-width over head_dim/2",
               [] { lkc::rope_forward(nullptr, nullptr, DType::BF16, nullptr, nullptr, nullptr, 4, 2, 8, 5, nullptr); });
  expect_throw("rope", "u8 tensors", [] { lkc::rope_forward(nullptr, nullptr, DType::U8, nullptr, nullptr, nullptr, 4, 2, 8, 4, nullptr); });
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
  const double us =
      time_us([&] { lkc::rope_forward(o.p, x.p, DType::BF16, cs.f(), sn.f(), dpos.as<int32_t>(), rows, H, D, D / 2, nullptr); });
  timing("rope fwd", dims({rows, H, D}), us, gbps(4.0 * rows * H * D, us));
}

}  // namespace

int main() {
  return run("rope", [] {
    correctness();
    if (!quick()) timings();
  });
}
