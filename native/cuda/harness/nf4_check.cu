// NF4 dequantize harness: bit-exact against the bitsandbytes formula on the CPU (plain absmax and
// double-quantized absmax), odd lengths and the scalar tail; then dequantize bandwidth and the QLoRA
// linear path (dequantize one weight into a bf16 buffer + cuBLASLt GEMM) against the bf16 GEMM alone.
#include "harness.h"

using namespace hx;

namespace {

const float kNF4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
                        -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
                        0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                        0.7229568362236023f, 1.0f};

void correctness() {
  Rng r(81);
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(33), int64_t(127), int64_t(64 * 33), int64_t(1000001)}) {
    for (int bs : {64, 128, 16}) {
      const std::string tag = "n=" + std::to_string(n) + " block=" + std::to_string(bs);
      const int64_t nb = (n + bs - 1) / bs, bytes = (n + 1) / 2;
      std::vector<uint8_t> q(bytes);
      for (auto& b : q) b = uint8_t(r.next());
      std::vector<float> absmax(nb);
      for (auto& a : absmax) a = r.uniform(0.01f, 3.f);
      Buf dq = up(q), da = up(absmax), out(n * 2);
      out.poison();
      lkc::nf4_dequantize(out.bf(), dq.as<uint8_t>(), da.f(), n, bs, nullptr);
      std::vector<double> ref(n);
      for (int64_t i = 0; i < n; i++) {
        const int code = (i & 1) ? (q[i / 2] & 15) : (q[i / 2] >> 4);
        ref[i] = round_bf16(kNF4[code] * absmax[i / bs]);
      }
      check("nf4 dequantize (bit-exact)", tag, compare(down_bf16(out.p, n), ref), 0);
      // double quantization: absmax = code2[q2] · absmax2[j / 256] + offset, rounded twice
      const int bs2 = 256;
      std::vector<uint8_t> q2(nb);
      for (auto& b : q2) b = uint8_t(r.next());
      std::vector<float> code2(256), absmax2((nb + bs2 - 1) / bs2);
      for (int i = 0; i < 256; i++) code2[i] = -1.f + 2.f * i / 255.f;
      for (auto& a : absmax2) a = r.uniform(0.01f, 1.f);
      const float offset = 0.4375f + r.uniform(0.f, 0.01f);
      Buf dq2 = up(q2), dc2 = up(code2), da2 = up(absmax2);
      out.poison();
      lkc::nf4_dequantize_dq(out.bf(), dq.as<uint8_t>(), dq2.as<uint8_t>(), da2.f(), dc2.f(), offset, n, bs, bs2, nullptr);
      for (int64_t i = 0; i < n; i++) {
        const int64_t j = i / bs;
        volatile float prod = code2[q2[j]] * absmax2[j / bs2];  // volatile: no host FMA either
        const float am = prod + offset;
        const int code = (i & 1) ? (q[i / 2] & 15) : (q[i / 2] >> 4);
        ref[i] = round_bf16(kNF4[code] * am);
      }
      check("nf4 dequantize double-quant (bit-exact)", tag, compare(down_bf16(out.p, n), ref), 0);
    }
  }
  expect_throw("nf4", "block size 40", [] { lkc::nf4_dequantize(nullptr, nullptr, nullptr, 64, 40, nullptr); });
}

void timings() {
  const int64_t out_f = 14336, in_f = 4096, n = out_f * in_f, T = 2048;
  std::vector<uint8_t> q(n / 2);
  Rng r(9);
  for (auto& b : q) b = uint8_t(r.next());
  std::vector<float> am(n / 64);
  for (auto& a : am) a = r.uniform(0.01f, 0.1f);
  Buf dq = up(q), da = up(am), w(n * 2), x = rand_bf16(T * in_f, 1), y(T * out_f * 2);
  double us = time_us([&] { lkc::nf4_dequantize(w.bf(), dq.as<uint8_t>(), da.f(), n, 64, nullptr); });
  timing("nf4 dequantize", "14336x4096", us, gbps(0.5 * n + 4.0 * n / 64 + 2.0 * n, us));
  lkc::GemmOpts o;
  o.trans_b = true;
  const double g = time_us([&] { lkc::gemm(y.p, lkc::DType::BF16, x.p, lkc::DType::BF16, w.p, lkc::DType::BF16, T, out_f, in_f, o, nullptr); });
  const double both = time_us([&] {
    lkc::nf4_dequantize(w.bf(), dq.as<uint8_t>(), da.f(), n, 64, nullptr);
    lkc::gemm(y.p, lkc::DType::BF16, x.p, lkc::DType::BF16, w.p, lkc::DType::BF16, T, out_f, in_f, o, nullptr);
  });
  timing("bf16 GEMM alone", "2048x14336x4096", g, tflops(2.0 * T * out_f * in_f, g));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, +%.0f%% over the GEMM", tflops(2.0 * T * out_f * in_f, both).c_str(), (both / g - 1) * 100);
  timing("QLoRA linear: dequantize + GEMM", "2048x14336x4096", both, buf);
}

}  // namespace

int main() {
  return run("nf4", [] {
    correctness();
    if (!quick()) timings();
  });
}
