// 4-bit dequantize harness (NF4 and FP4): bf16 and f32 outputs bit-exact against the bitsandbytes
// formula on the CPU with the CPU backend's tables (native/cpu/quant.cc), plain and double-quantized
// absmax, odd lengths, block sizes that are powers of two and one that is not (scalar path), a
// misaligned output and packed input; then dequantize bandwidth (NF4 and FP4) and the QLoRA linear path
// (dequantize + GEMM).
#include "harness.h"
#include "quant4_codes.h"

using namespace hx;
using lkc::DType;

namespace {

void correctness() {
  Rng r(83);
  for (DType t : {DType::BF16, DType::F32}) {
    const size_t es = lkc::dtype_size(t);
    // The output dtype's value of the fp32 product: one rounding to bf16, or the product itself.
    auto as_out = [&](float x) { return t == DType::F32 ? double(x) : double(round_bf16(x)); };
    auto download = [&](const void* p, size_t n) { return t == DType::F32 ? down<float>(p, n) : down_bf16(p, n); };
    for (int code : {0, 1}) {
      const std::string cname = std::string(lkc::dtype_name(t)) + (code == 0 ? " nf4" : " fp4");
      for (int64_t n : {int64_t(1), int64_t(7), int64_t(33), int64_t(127), int64_t(64 * 33), int64_t(1000001)}) {
        for (int bs : {64, 128, 16, 4096, 24}) {
          for (int shift : {0, 1}) {
            if (shift && n != 127 && n != 1000001) continue;
            const std::string tag = cname + " n=" + std::to_string(n) + " block=" + std::to_string(bs) + (shift ? " misaligned" : "");
            const int64_t nb = (n + bs - 1) / bs, bytes = (n + 1) / 2;
            std::vector<uint8_t> q(bytes + shift);
            for (auto& b : q) b = uint8_t(r.next());
            std::vector<float> absmax(nb);
            for (auto& a : absmax) a = r.uniform(0.01f, 3.f);
            Buf dq = up(q), da = up(absmax), out((n + shift) * es);
            const uint8_t* packed = dq.as<uint8_t>() + shift;  // shift: not 4-byte aligned
            void* o = static_cast<char*>(out.p) + shift * es;  // shift: not 16-byte aligned
            auto nibble = [&](int64_t i) { return (i & 1) ? (q[shift + i / 2] & 15) : (q[shift + i / 2] >> 4); };
            out.poison();
            lkc::dequantize_4bit(o, t, packed, da.f(), code, n, bs, nullptr);
            std::vector<double> ref(n);
            for (int64_t i = 0; i < n; i++) ref[i] = as_out(code_value(code, nibble(i)) * absmax[i / bs]);
            check("dequantize_4bit (bit-exact)", tag, compare(download(o, n), ref), 0);
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
            lkc::dequantize_4bit_dq(o, t, packed, dq2.as<uint8_t>(), da2.f(), dc2.f(), offset, code, n, bs, bs2, nullptr);
            for (int64_t i = 0; i < n; i++) {
              const int64_t j = i / bs;
              volatile float prod = code2[q2[j]] * absmax2[j / bs2];  // volatile: no host FMA either
              const float am = prod + offset;
              ref[i] = as_out(code_value(code, nibble(i)) * am);
            }
            check("dequantize_4bit double-quant (bit-exact)", tag, compare(download(o, n), ref), 0);
          }
        }
      }
    }
  }
  expect_throw("dequantize_4bit", "code 2", [] { lkc::dequantize_4bit(nullptr, DType::BF16, nullptr, nullptr, 2, 64, 64, nullptr); });
  expect_throw("dequantize_4bit", "block size 0", [] { lkc::dequantize_4bit(nullptr, DType::BF16, nullptr, nullptr, 0, 64, 0, nullptr); });
  expect_throw("dequantize_4bit", "i32 output", [] { lkc::dequantize_4bit(nullptr, DType::I32, nullptr, nullptr, 0, 64, 64, nullptr); });
}

void timings() {
  const int64_t out_f = 14336, in_f = 4096, n = out_f * in_f, T = 2048;
  std::vector<uint8_t> q(n / 2);
  Rng r(9);
  for (auto& b : q) b = uint8_t(r.next());
  std::vector<float> am(n / 64);
  for (auto& a : am) a = r.uniform(0.01f, 0.1f);
  Buf dq = up(q), da = up(am), w(n * 2), x = rand_bf16(T * in_f, 1), y(T * out_f * 2);
  const double bytes = 0.5 * n + 4.0 * n / 64 + 2.0 * n;
  for (int code : {0, 1}) {
    const double us = time_us([&] { lkc::dequantize_4bit(w.p, DType::BF16, dq.as<uint8_t>(), da.f(), code, n, 64, nullptr); });
    timing(code == 0 ? "dequantize_4bit nf4" : "dequantize_4bit fp4", "14336x4096", us, gbps(bytes, us));
  }
  lkc::GemmOpts o;
  o.trans_b = true;
  const double g = time_us([&] { lkc::gemm(y.p, DType::BF16, x.p, DType::BF16, w.p, DType::BF16, T, out_f, in_f, o, nullptr); });
  const double both = time_us([&] {
    lkc::dequantize_4bit(w.p, DType::BF16, dq.as<uint8_t>(), da.f(), 1, n, 64, nullptr);
    lkc::gemm(y.p, DType::BF16, x.p, DType::BF16, w.p, DType::BF16, T, out_f, in_f, o, nullptr);
  });
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, +%.0f%% over the GEMM", tflops(2.0 * T * out_f * in_f, both).c_str(), (both / g - 1) * 100);
  timing("QLoRA linear fp4: dequantize + GEMM", "2048x14336x4096", both, buf);
}

}  // namespace

int main() {
  return run("dequant4", [] {
    correctness();
    if (!quick()) timings();
  });
}
