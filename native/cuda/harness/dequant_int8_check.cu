// int8 row dequantize harness: out = T((q · scale[row]) · float(1/127)) for T = bf16 and f32, bit-exact
// against the CPU backend's expression (native/cpu/quant.cc, bitsandbytes' int8_vectorwise_dequant) on
// odd shapes with the full int8 range (−128 included); then bandwidth at an 8B MLP weight.
#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

void correctness() {
  Rng r(87);
  struct Case {
    int64_t rows, cols;
  };
  for (DType t : {DType::BF16, DType::F32})
    for (Case c : {Case{1, 1}, Case{7, 33}, Case{127, 1000}, Case{4099, 257}, Case{3, 100003}}) {
      const bool f32 = t == DType::F32;
      const std::string tag = std::string(lkc::dtype_name(t)) + " " + dims({c.rows, c.cols});
      const int64_t n = c.rows * c.cols;
      std::vector<int8_t> q(n);
      for (auto& v : q) v = int8_t(uint8_t(r.next()));
      std::vector<float> scale(c.rows);
      for (auto& s : scale) s = r.uniform(0.001f, 4.f);
      Buf dq = up(q), ds = up(scale), out(n * lkc::dtype_size(t));
      out.poison();
      lkc::dequantize_int8(out.p, t, dq.as<int8_t>(), ds.f(), c.rows, c.cols, nullptr);
      const float inv127 = static_cast<float>(7.874015718698502e-3);
      std::vector<double> ref(n);
      for (int64_t i = 0; i < n; i++) {
        volatile float v = float(q[i]) * scale[i / c.cols];  // volatile: two separate roundings
        const float value = v * inv127;
        ref[i] = f32 ? value : round_bf16(value);
      }
      check("dequantize_int8 (bit-exact)", tag, compare(f32 ? down<float>(out.p, n) : down_bf16(out.p, n), ref), 0);
    }
  expect_throw("dequantize_int8", "u8 output", [] { lkc::dequantize_int8(nullptr, DType::U8, nullptr, nullptr, 1, 1, nullptr); });
}

void timings() {
  const int64_t rows = 14336, cols = 4096, n = rows * cols;
  Buf q(n), s(rows * 4), out(n * 2);
  q.zero(), s.zero();
  const double us = time_us([&] { lkc::dequantize_int8(out.p, DType::BF16, q.as<int8_t>(), s.f(), rows, cols, nullptr); });
  timing("dequantize_int8", dims({rows, cols}), us, gbps(3.0 * n, us));
}

}  // namespace

int main() {
  return run("dequant_int8", [] {
    correctness();
    if (!quick()) timings();
  });
}
