// Attention harness: forward (out, lse) and backward (dq, dk, dv) of both paths (tensor cores for bf16
// with D = 64/128, CUDA cores otherwise, when forced and for every f32 call) against a float64 CPU
// reference, with GQA, packed sequences, left and right padding, fewer queries than keys, odd lengths;
// then timings at the three models' shapes (T = 2048), including packed sequences, with a spot-check of
// rows at full size.
#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

struct Cfg {
  int B, Tq, Tk, Hq, Hkv, D;
  std::vector<int32_t> seg;  // [B, Tk]
  std::string name;
};

struct Ref {
  std::vector<double> out, lse, dq, dk, dv;
};

// Float64 reference of the documented semantics (see attention.cu).
Ref reference(const Cfg& c, const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
              const std::vector<float>& dout, bool backward) {
  const int off = c.Tk - c.Tq, G = c.Hq / c.Hkv;
  const double scale = 1.0 / std::sqrt(double(c.D));
  Ref r;
  r.out.assign(size_t(c.B) * c.Tq * c.Hq * c.D, 0.0);
  r.lse.assign(size_t(c.B) * c.Hq * c.Tq, -INFINITY);
  r.dq.assign(r.out.size(), 0.0);
  r.dk.assign(size_t(c.B) * c.Tk * c.Hkv * c.D, 0.0);
  r.dv.assign(r.dk.size(), 0.0);
  std::vector<double> s(c.Tk), dp(c.Tk);
  auto Q = [&](int b, int i, int h) { return &q[((size_t(b) * c.Tq + i) * c.Hq + h) * c.D]; };
  auto K = [&](int b, int j, int h) { return &k[((size_t(b) * c.Tk + j) * c.Hkv + h) * c.D]; };
  auto V = [&](int b, int j, int h) { return &v[((size_t(b) * c.Tk + j) * c.Hkv + h) * c.D]; };
  for (int b = 0; b < c.B; b++)
    for (int h = 0; h < c.Hq; h++)
      for (int i = 0; i < c.Tq; i++) {
        const int p = off + i, sp = c.seg[b * c.Tk + p], kh = h / G;
        if (sp == 0) continue;
        double m = -1e300;
        for (int j = 0; j <= p; j++) {
          if (c.seg[b * c.Tk + j] != sp) continue;
          double a = 0;
          for (int d = 0; d < c.D; d++) a += double(Q(b, i, h)[d]) * K(b, j, kh)[d];
          s[j] = a * scale;
          m = std::max(m, s[j]);
        }
        double l = 0;
        for (int j = 0; j <= p; j++)
          if (c.seg[b * c.Tk + j] == sp) l += std::exp(s[j] - m);
        const size_t oi = ((size_t(b) * c.Tq + i) * c.Hq + h) * c.D;
        r.lse[(size_t(b) * c.Hq + h) * c.Tq + i] = m + std::log(l);
        for (int j = 0; j <= p; j++) {
          if (c.seg[b * c.Tk + j] != sp) continue;
          s[j] = std::exp(s[j] - m) / l;  // now P
          for (int d = 0; d < c.D; d++) r.out[oi + d] += s[j] * V(b, j, kh)[d];
        }
        if (!backward) continue;
        const float* dO = &dout[oi];
        double delta = 0;
        for (int j = 0; j <= p; j++) {
          if (c.seg[b * c.Tk + j] != sp) continue;
          double a = 0;
          for (int d = 0; d < c.D; d++) a += double(dO[d]) * V(b, j, kh)[d];
          dp[j] = a;
          delta += s[j] * a;
        }
        for (int j = 0; j <= p; j++) {
          if (c.seg[b * c.Tk + j] != sp) continue;
          const double ds = s[j] * (dp[j] - delta);
          const size_t ki = ((size_t(b) * c.Tk + j) * c.Hkv + kh) * c.D;
          for (int d = 0; d < c.D; d++) {
            r.dq[oi + d] += scale * ds * K(b, j, kh)[d];
            r.dk[ki + d] += scale * ds * Q(b, i, h)[d];
            r.dv[ki + d] += s[j] * dO[d];
          }
        }
      }
  return r;
}

// Values already representable in t go up as t; results come back as floats.
Buf up_as(DType t, const std::vector<float>& v) { return t == DType::F32 ? up(v) : up_bf16(v); }
std::vector<float> down_as(DType t, const void* p, size_t n) { return t == DType::F32 ? down<float>(p, n) : down_bf16(p, n); }

void run_case(const Cfg& c, Rng& rng, bool force_generic, DType t = DType::BF16) {
  const bool f32 = t == DType::F32;
  const size_t nq = size_t(c.B) * c.Tq * c.Hq * c.D, nk = size_t(c.B) * c.Tk * c.Hkv * c.D, es = lkc::dtype_size(t);
  auto q = randn(rng, nq, 1.f, !f32), k = randn(rng, nk, 1.f, !f32), v = randn(rng, nk, 1.f, !f32), dout = randn(rng, nq, 1.f, !f32);
  Buf dq_ = up_as(t, q), dk_ = up_as(t, k), dv_ = up_as(t, v), ddo = up_as(t, dout), dseg = up(c.seg);
  Buf out(nq * es), lse(size_t(c.B) * c.Hq * c.Tq * 4), gq(nq * es), gk(nk * es), gv(nk * es);
  Buf ws(lkc::attention_backward_workspace(c.B, c.Tq, c.Tk, c.Hq, c.Hkv, c.D));
  const float scale = float(1.0 / std::sqrt(double(c.D)));
  lkc::attention_set_force_generic(force_generic);
  out.poison(), lse.poison(), gq.poison(), gk.poison(), gv.poison();
  lkc::attention_forward(out.p, lse.f(), dq_.p, dk_.p, dv_.p, t, dseg.as<int32_t>(), c.B, c.Tq, c.Tk, c.Hq, c.Hkv, c.D, scale, nullptr);
  lkc::attention_backward(gq.p, gk.p, gv.p, ddo.p, out.p, dq_.p, dk_.p, dv_.p, t, lse.f(), dseg.as<int32_t>(), c.B, c.Tq, c.Tk, c.Hq,
                          c.Hkv, c.D, scale, ws.p, nullptr);
  lkc::attention_set_force_generic(false);
  const Ref r = reference(c, q, k, v, dout, true);
  const std::string path = force_generic || f32 || !(c.D == 64 || c.D == 128) ? "cuda-core" : "tensor-core";
  const std::string tag = std::string(lkc::dtype_name(t)) + " " + c.name + " " + path;
  // bf16: rounded inputs to the P·V and gradient products (tensor cores) and rounded outputs; f32: fp32 throughout.
  const double tol_out = f32 ? 1e-4 : 1e-2, tol_grad = f32 ? 1e-4 : 2e-2;
  check("attention fwd out", tag, compare(down_as(t, out.p, nq), r.out), tol_out);
  check("attention fwd lse", tag, compare(down<float>(lse.p, r.lse.size()), r.lse), 1e-4);
  check("attention bwd dq", tag, compare(down_as(t, gq.p, nq), r.dq), tol_grad);
  check("attention bwd dk", tag, compare(down_as(t, gk.p, nk), r.dk), tol_grad);
  check("attention bwd dv", tag, compare(down_as(t, gv.p, nk), r.dv), tol_grad);
}

std::vector<int32_t> segs(int B, int T, std::initializer_list<std::initializer_list<std::pair<int, int>>> runs) {
  // runs per batch row: (segment id, length), filling T exactly
  std::vector<int32_t> s;
  for (auto row : runs)
    for (auto [id, len] : row)
      for (int i = 0; i < len; i++) s.push_back(id);
  if (int(s.size()) != B * T) throw std::logic_error("segment runs do not fill the batch");
  return s;
}

void correctness() {
  Rng rng(91);
  std::vector<Cfg> cfgs = {
      {2, 127, 127, 6, 2, 64, segs(2, 127, {{{1, 127}}, {{1, 40}, {2, 50}, {0, 37}}}), "B2 T127 Hq6 Hkv2 D64 packed+right pad"},
      {1, 200, 200, 4, 1, 128, segs(1, 200, {{{0, 13}, {7, 187}}}), "B1 T200 Hq4 Hkv1 D128 left pad"},
      {2, 70, 150, 2, 2, 128, segs(2, 150, {{{1, 150}}, {{1, 100}, {2, 50}}}), "B2 Tq70 Tk150 Hq2 D128 (cache)"},
      {1, 515, 515, 4, 2, 128, segs(1, 515, {{{1, 200}, {2, 315}}}), "B1 T515 Hq4 Hkv2 D128 packed"},
      {2, 37, 37, 8, 4, 8, segs(2, 37, {{{1, 37}}, {{3, 10}, {4, 20}, {0, 7}}}), "B2 T37 Hq8 Hkv4 D8"},
      {1, 33, 33, 3, 1, 80, segs(1, 33, {{{1, 33}}}), "B1 T33 Hq3 Hkv1 D80"},
      // Tile edges of the tensor-core kernels' 128-row / 128-key blocks: ids out of order with padding
      // between sequences, a 1-row tail block with fewer queries than keys, several key blocks without
      // GQA, one query.
      {1, 300, 300, 8, 2, 64, segs(1, 300, {{{5, 100}, {0, 20}, {2, 180}}}), "B1 T300 Hq8 Hkv2 D64 packed ids 5,0,2"},
      {2, 129, 390, 4, 2, 128, segs(2, 390, {{{1, 390}}, {{0, 5}, {3, 200}, {4, 185}}}), "B2 Tq129 Tk390 Hq4 Hkv2 D128 (cache) packed"},
      {1, 700, 700, 2, 2, 64, segs(1, 700, {{{1, 700}}}), "B1 T700 Hq2 Hkv2 D64"},
      {1, 1, 77, 4, 1, 128, segs(1, 77, {{{1, 77}}}), "B1 Tq1 Tk77 Hq4 Hkv1 D128"},
  };
  for (const Cfg& c : cfgs) run_case(c, rng, false);
  run_case(cfgs[0], rng, true);
  run_case(cfgs[1], rng, true);
  for (const Cfg& c : cfgs) run_case(c, rng, false, DType::F32);  // D = 64/128 too: f32 never takes the tensor cores
  expect_throw("attention", "Hq not a multiple of Hkv", [] {
    lkc::attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr, DType::BF16, nullptr, 1, 4, 4, 3, 2, 64, 1.f, nullptr);
  });
  expect_throw("attention", "head_dim 512", [] {
    lkc::attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr, DType::BF16, nullptr, 1, 4, 4, 2, 2, 512, 1.f, nullptr);
  });
  expect_throw("attention", "u8 tensors", [] {
    lkc::attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr, DType::U8, nullptr, 1, 4, 4, 2, 2, 64, 1.f, nullptr);
  });
}

void timings() {
  struct M {
    const char* name;
    int Hq, Hkv, D;
    int seglen;  // 0: one sequence of T
  };
  const int B = 1, T = 2048;
  for (M m : {M{"Llama-3.2-1B", 32, 8, 64, 0}, M{"Qwen2.5-0.5B", 14, 2, 64, 0}, M{"Llama-3.1-8B", 32, 8, 128, 0},
              M{"Llama-3.1-8B packed 4x512", 32, 8, 128, 512}}) {
    const int64_t nq = int64_t(B) * T * m.Hq * m.D, nk = int64_t(B) * T * m.Hkv * m.D;
    Buf q = rand_bf16(nq, 1, 2.f), k = rand_bf16(nk, 2, 2.f), v = rand_bf16(nk, 3), dout = rand_bf16(nq, 4);
    Buf out(nq * 2), lse(int64_t(B) * m.Hq * T * 4), gq(nq * 2), gk(nk * 2), gv(nk * 2), ws(lkc::attention_backward_workspace(B, T, T, m.Hq, m.Hkv, m.D));
    std::vector<int32_t> seg(int64_t(B) * T);
    for (int i = 0; i < T; i++) seg[i] = m.seglen ? 1 + i / m.seglen : 1;
    Buf dseg = up(seg);
    const float scale = float(1.0 / std::sqrt(double(m.D)));
    const double pairs = m.seglen ? double(T / m.seglen) * m.seglen * (m.seglen + 1) / 2 : double(T) * (T + 1) / 2;
    const double fwd_flops = 4.0 * B * m.Hq * pairs * m.D;
    const std::string shape = std::string(m.name) + " B1 T2048 Hq" + std::to_string(m.Hq) + " Hkv" + std::to_string(m.Hkv) + " D" +
                              std::to_string(m.D);
    auto hq = down_bf16(q.p, nq), hk = down_bf16(k.p, nk), hv = down_bf16(v.p, nk);
    double us = time_us([&] {
      lkc::attention_forward(out.p, lse.f(), q.p, k.p, v.p, DType::BF16, dseg.as<int32_t>(), B, T, T, m.Hq, m.Hkv, m.D, scale, nullptr);
    });
    timing("attention fwd", shape, us, tflops(fwd_flops, us));
    us = time_us([&] {
      lkc::attention_backward(gq.p, gk.p, gv.p, dout.p, out.p, q.p, k.p, v.p, DType::BF16, lse.f(), dseg.as<int32_t>(), B, T, T, m.Hq,
                              m.Hkv, m.D, scale, ws.p, nullptr);
    });
    timing("attention bwd", shape, us, tflops(2.5 * fwd_flops, us));
    const auto ho = down_bf16(out.p, nq);
    // Spot-check 8 rows of the full-size forward against the float64 reference of those rows.
    Rng r(17);
    std::vector<float> got;
    std::vector<double> ref;
    for (int t = 0; t < 8; t++) {
      const int i = r.below(T), h = r.below(m.Hq), kh = h / (m.Hq / m.Hkv);
      std::vector<double> s(i + 1);
      double mx = -1e300, l = 0;
      for (int j = 0; j <= i; j++) {
        if (seg[j] != seg[i]) continue;
        double a = 0;
        for (int d = 0; d < m.D; d++) a += double(hq[(int64_t(i) * m.Hq + h) * m.D + d]) * hk[(int64_t(j) * m.Hkv + kh) * m.D + d];
        s[j] = a * scale, mx = std::max(mx, s[j]);
      }
      for (int j = 0; j <= i; j++)
        if (seg[j] == seg[i]) l += std::exp(s[j] - mx);
      for (int d = 0; d < m.D; d++) {
        double o = 0;
        for (int j = 0; j <= i; j++)
          if (seg[j] == seg[i]) o += std::exp(s[j] - mx) / l * hv[(int64_t(j) * m.Hkv + kh) * m.D + d];
        ref.push_back(o);
        got.push_back(ho[(int64_t(i) * m.Hq + h) * m.D + d]);
      }
    }
    check("attention fwd spot rows", shape, compare(got, ref), 1e-2);
  }
}

}  // namespace

int main() {
  return run("attention", [] {
    correctness();
    if (!quick()) timings();
  });
}
