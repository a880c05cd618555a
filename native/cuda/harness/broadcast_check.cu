// Broadcast add/mul harness: out[i] = a[i] op b[i mod nb] for f32 and bf16, bit-exact against the same
// fp32 operation on the CPU (one op, one rounding), on odd sizes, nb odd (scalar path) and nb % 8 == 0
// (vector path), nb == n, misaligned pointers and out aliasing a; then bandwidth for a bias add over
// [16384, 4096] next to the same-size lkc::add.
#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

Buf upload(const std::vector<float>& v, DType t, int shift) {
  std::vector<float> p(shift, 0.f);
  p.insert(p.end(), v.begin(), v.end());
  return t == DType::BF16 ? up_bf16(p) : up(p);
}
void* at(const Buf& b, DType t, int shift) { return static_cast<char*>(b.p) + shift * lkc::dtype_size(t); }
std::vector<float> download(const void* p, DType t, size_t n) { return t == DType::BF16 ? down_bf16(p, n) : down<float>(p, n); }
double store(float v, DType t) { return t == DType::BF16 ? double(round_bf16(v)) : double(v); }

void correctness() {
  Rng r(91);
  struct Case {
    int64_t n, nb;
  };
  for (Case c : {Case{1, 1}, Case{7, 7}, Case{33, 1}, Case{35, 7}, Case{8 * 127, 8}, Case{64 * 33, 64}, Case{5 * 1003, 1003},
                 Case{257 * 4096, 4096}, Case{1000003, 1000003}, Case{3 * 40, 40}}) {
    for (int shift : {0, 1}) {
      for (DType t : {DType::F32, DType::BF16}) {
        const bool bf = t == DType::BF16;
        const std::string tag = std::string(lkc::dtype_name(t)) + " n=" + std::to_string(c.n) + " nb=" + std::to_string(c.nb) +
                                (shift ? " misaligned" : "");
        auto a = randn(r, c.n, 1.f, bf), b = randn(r, c.nb, 1.f, bf);
        Buf da = upload(a, t, shift), db = upload(b, t, shift), dout(size_t(c.n + shift) * lkc::dtype_size(t));
        std::vector<double> ref(c.n);
        dout.poison();
        lkc::add_broadcast(at(dout, t, shift), at(da, t, shift), at(db, t, shift), t, c.n, c.nb, nullptr);
        for (int64_t i = 0; i < c.n; i++) ref[i] = store(a[i] + b[i % c.nb], t);
        check("add_broadcast (bit-exact)", tag, compare(download(at(dout, t, shift), t, c.n), ref), 0);
        dout.poison();
        lkc::mul_broadcast(at(dout, t, shift), at(da, t, shift), at(db, t, shift), t, c.n, c.nb, nullptr);
        for (int64_t i = 0; i < c.n; i++) ref[i] = store(a[i] * b[i % c.nb], t);
        check("mul_broadcast (bit-exact)", tag, compare(download(at(dout, t, shift), t, c.n), ref), 0);
        // in place: out = a
        lkc::mul_broadcast(at(da, t, shift), at(da, t, shift), at(db, t, shift), t, c.n, c.nb, nullptr);
        check("mul_broadcast in place (out = a)", tag, compare(download(at(da, t, shift), t, c.n), ref), 0);
      }
    }
  }
  expect_throw("add_broadcast", "nb not dividing n", [] { lkc::add_broadcast(nullptr, nullptr, nullptr, DType::F32, 10, 3, nullptr); });
  expect_throw("mul_broadcast", "nb = 0", [] { lkc::mul_broadcast(nullptr, nullptr, nullptr, DType::F32, 10, 0, nullptr); });
  expect_throw("mul_broadcast", "i32 tensors", [] { lkc::mul_broadcast(nullptr, nullptr, nullptr, DType::I32, 4, 4, nullptr); });
}

void timings() {
  const int64_t rows = 16384, cols = 4096, n = rows * cols;
  Buf a = rand_bf16(n, 1), same = rand_bf16(n, 2), bias = rand_bf16(cols, 3), o(size_t(n) * 2);
  double us = time_us([&] { lkc::add(o.p, a.p, same.p, DType::BF16, n, nullptr); });
  timing("add bf16 (same size)", dims({rows, cols}), us, gbps(6.0 * n, us));
  us = time_us([&] { lkc::add_broadcast(o.p, a.p, bias.p, DType::BF16, n, cols, nullptr); });
  timing("add_broadcast bf16 (bias)", dims({rows, cols}) + " + " + std::to_string(cols), us, gbps(4.0 * n, us));
  us = time_us([&] { lkc::mul_broadcast(o.p, a.p, bias.p, DType::BF16, n, cols, nullptr); });
  timing("mul_broadcast bf16 (row scale)", dims({rows, cols}) + " * " + std::to_string(cols), us, gbps(4.0 * n, us));
  us = time_us([&] { lkc::mul_broadcast(o.p, a.p, same.p, DType::BF16, n, n, nullptr); });
  timing("mul_broadcast bf16 (same size)", dims({rows, cols}), us, gbps(6.0 * n, us));
  us = time_us([&] { lkc::add_broadcast(static_cast<char*>(o.p) + 2, a.p, bias.p, DType::BF16, n - 1, 1, nullptr); });
  timing("add_broadcast bf16 (scalar, misaligned)", dims({rows, cols}), us, gbps(4.0 * n, us));
}

}  // namespace

int main() {
  return run("broadcast", [] {
    correctness();
    if (!quick()) timings();
  });
}
