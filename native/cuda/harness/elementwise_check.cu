// Elementwise harness: add, scale, axpy (all dtype pairs), casts, fill, Σx², clip coefficient, on odd
// sizes and on misaligned pointers (the scalar path), against float64 references; then bandwidth at
// 64 Mi elements.
#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

std::vector<double> rounded(const std::vector<double>& v, DType t) {
  if (t == DType::F32) {
    std::vector<double> o(v.size());
    for (size_t i = 0; i < v.size(); i++) o[i] = double(float(v[i]));
    return o;
  }
  std::vector<double> o(v.size());
  for (size_t i = 0; i < v.size(); i++) o[i] = double(round_bf16(float(v[i])));
  return o;
}

Buf upload(const std::vector<float>& v, DType t, int shift) {
  // shift elements of padding at the front make the pointer misaligned for the vector path
  std::vector<float> p(shift, 0.f);
  p.insert(p.end(), v.begin(), v.end());
  return t == DType::BF16 ? up_bf16(p) : up(p);
}
void* at(const Buf& b, DType t, int shift) { return static_cast<char*>(b.p) + shift * lkc::dtype_size(t); }
std::vector<float> download(const void* p, DType t, size_t n) { return t == DType::BF16 ? down_bf16(p, n) : down<float>(p, n); }

void correctness() {
  Rng r(11);
  for (int64_t n : {1, 7, 33, 127, 1000003}) {
    for (int shift : {0, 1}) {
      for (DType t : {DType::F32, DType::BF16}) {
        const bool bf = t == DType::BF16;
        const std::string tag = std::string(dtype_name(t)) + " n=" + std::to_string(n) + (shift ? " misaligned" : "");
        auto a = randn(r, n, 1.f, bf), b = randn(r, n, 1.f, bf);
        Buf da = upload(a, t, shift), db = upload(b, t, shift), dout(size_t(n + shift) * lkc::dtype_size(t));
        std::vector<double> ref(n);
        dout.poison();
        lkc::add(at(dout, t, shift), at(da, t, shift), at(db, t, shift), t, n, nullptr);
        for (int64_t i = 0; i < n; i++) ref[i] = double(a[i]) + b[i];
        check("add", tag, compare(download(at(dout, t, shift), t, n), rounded(ref, t)), 1e-6);
        dout.poison();
        lkc::scale(at(dout, t, shift), at(da, t, shift), -0.37f, t, n, nullptr);
        for (int64_t i = 0; i < n; i++) ref[i] = double(a[i]) * double(-0.37f);
        check("scale", tag, compare(download(at(dout, t, shift), t, n), rounded(ref, t)), 1e-6);
        for (DType xt : {DType::F32, DType::BF16}) {
          auto x = randn(r, n, 1.f, xt == DType::BF16);
          Buf dx = upload(x, xt, shift), dy = upload(a, t, shift);
          lkc::axpy(at(dy, t, shift), t, at(dx, xt, shift), xt, 0.25f, n, nullptr);
          for (int64_t i = 0; i < n; i++) ref[i] = double(a[i]) + 0.25 * x[i];
          check(std::string("axpy x:") + dtype_name(xt), tag, compare(download(at(dy, t, shift), t, n), rounded(ref, t)), 1e-6);
        }
        dout.poison();
        lkc::fill(at(dout, t, shift), t, 2.5f, n, nullptr);
        for (int64_t i = 0; i < n; i++) ref[i] = 2.5;
        check("fill", tag, compare(download(at(dout, t, shift), t, n), ref), 0);
        Buf acc(4);
        acc.zero();
        lkc::sum_squares(acc.f(), at(da, t, shift), t, n, nullptr);
        double ss = 0;
        for (float v : a) ss += double(v) * v;
        check("sum_squares", tag, compare(down<float>(acc.p, 1), std::vector<double>{ss}), 1e-5);
      }
      // casts
      auto a = randn(r, n, 3.f, false);
      Buf src = upload(a, DType::F32, shift), dst(size_t(n + shift) * 2);
      dst.poison();
      lkc::cast(at(dst, DType::BF16, shift), DType::BF16, at(src, DType::F32, shift), DType::F32, n, nullptr);
      std::vector<double> ref(n);
      for (int64_t i = 0; i < n; i++) ref[i] = round_bf16(a[i]);
      const std::string tag = "n=" + std::to_string(n) + (shift ? " misaligned" : "");
      check("cast f32->bf16 (RNE)", tag, compare(down_bf16(at(dst, DType::BF16, shift), n), ref), 0);
      Buf back(size_t(n + shift) * 4);
      back.poison();
      lkc::cast(at(back, DType::F32, shift), DType::F32, at(dst, DType::BF16, shift), DType::BF16, n, nullptr);
      check("cast bf16->f32", tag, compare(download(at(back, DType::F32, shift), DType::F32, n), ref), 0);
    }
  }
  // clip coefficient, as torch.nn.utils.clip_grad_norm_
  for (float ss : {0.25f, 400.f}) {
    Buf s = up(std::vector<float>{ss}), coef(4), norm(4);
    lkc::clip_coef(coef.f(), norm.f(), s.f(), 1.0f, nullptr);
    const double nrm = std::sqrt(double(ss)), c = std::min(1.0, 1.0 / (nrm + 1e-6));
    check("clip_coef", "sumsq=" + std::to_string(ss), compare(down<float>(coef.p, 1), std::vector<double>{c}), 1e-6);
    check("clip_coef norm", "sumsq=" + std::to_string(ss), compare(down<float>(norm.p, 1), std::vector<double>{nrm}), 1e-6);
  }
  expect_throw("add", "i32 tensors", [] { lkc::add(nullptr, nullptr, nullptr, DType::I32, 4, nullptr); });
}

void timings() {
  const int64_t n = int64_t(64) << 20;
  Buf a = rand_bf16(n, 1), b = rand_bf16(n, 2), o(size_t(n) * 2), f(size_t(n) * 4), acc(4);
  double us = time_us([&] { lkc::add(o.p, a.p, b.p, DType::BF16, n, nullptr); });
  timing("add bf16", "64Mi", us, gbps(6.0 * n, us));
  us = time_us([&] { lkc::cast(f.p, DType::F32, a.p, DType::BF16, n, nullptr); });
  timing("cast bf16->f32", "64Mi", us, gbps(6.0 * n, us));
  us = time_us([&] { lkc::axpy(f.p, DType::F32, a.p, DType::BF16, 0.5f, n, nullptr); });
  timing("axpy f32 += bf16", "64Mi", us, gbps(10.0 * n, us));
  us = time_us([&] { lkc::sum_squares(acc.f(), f.p, DType::F32, n, nullptr); });
  timing("sum_squares f32", "64Mi", us, gbps(4.0 * n, us));
}

}  // namespace

int main() {
  return run("elementwise", [] {
    correctness();
    if (!quick()) timings();
  });
}
