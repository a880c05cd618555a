// Dropout harness: the mask and the output must equal the CPU backend's bit for bit. The reference is a
// copy of native/cpu/dropout.cc's scalar loop (same splitmix64 mix, key, threshold and scale
// expressions); f32 and bf16 data, odd sizes, p from 0 to 1, seeds up to 2⁵³ − 1 and a negative one
// (the CPU casts the JS integer through int64), separate output and in place; then bandwidth.
#include <cmath>

#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

// ---- copy of native/cpu/dropout.cc (scalar path) ----
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;
inline uint64_t cpu_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
void cpu_dropout_apply(float* out, const float* x, float p, uint64_t seed, int64_t n) {
  const uint64_t key = cpu_mix64(seed ^ 0x6a09e667f3bcc909ULL);
  const uint64_t threshold = static_cast<uint64_t>(std::llround(static_cast<double>(p) * 16777216.0));
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  for (int64_t i = 0; i < n; i++) {
    const uint64_t h = cpu_mix64(key + static_cast<uint64_t>(i) * kGolden);
    out[i] = x[i] * ((h >> 40) >= threshold ? scale : 0.0f);
  }
}
// ----

void correctness() {
  Rng r(99);
  const int64_t seeds[] = {0, 42, (int64_t(1) << 53) - 1, -7};
  for (int64_t n : {1, 7, 33, 127, 1000003}) {
    for (double pd : {0.0, 0.05, 0.1, 1.0 / 3.0, 0.5, 1.0}) {
      for (int64_t seed_js : seeds) {
        for (DType t : {DType::F32, DType::BF16}) {
          const bool bf = t == DType::BF16;
          char tagc[160];
          std::snprintf(tagc, sizeof tagc, "%s n=%lld p=%g seed=%lld", lkc::dtype_name(t), static_cast<long long>(n), pd,
                        static_cast<long long>(seed_js));
          const std::string tag = tagc;
          const float p = static_cast<float>(pd);  // as the addons convert the JS number
          const uint64_t seed = static_cast<uint64_t>(seed_js);
          auto x = randn(r, n, 1.f, bf);
          for (auto& v : x)
            if (v == 0.f) v = 1.f;  // every zero in the output is then a dropped element
          std::vector<float> ref(n);
          cpu_dropout_apply(ref.data(), x.data(), p, seed, n);
          Buf dx = bf ? up_bf16(x) : up(x), dout(size_t(n) * lkc::dtype_size(t));
          dout.poison();
          lkc::dropout(dout.p, dx.p, t, p, seed, n, nullptr);
          const auto got = bf ? down_bf16(dout.p, n) : down<float>(dout.p, n);
          int64_t mask_diff = 0, kept = 0;
          std::vector<double> refd(n);
          for (int64_t i = 0; i < n; i++) {
            mask_diff += (got[i] == 0.f) != (ref[i] == 0.f);
            kept += ref[i] != 0.f;
            refd[i] = bf ? double(round_bf16(ref[i])) : double(ref[i]);
          }
          expect("dropout mask == CPU mask", tag + " (" + std::to_string(mask_diff) + " differ, " + std::to_string(kept) + " kept)",
                 mask_diff == 0);
          check("dropout output (bit-exact)", tag, compare(got, refd), 0);
          if (n == 1000003 && seed_js == 42) {  // the keep rate is 1 − p
            const double rate = double(kept) / double(n);
            expect("dropout keep rate", tag + " rate " + std::to_string(rate), std::fabs(rate - (1.0 - pd)) < 0.005);
          }
          if (n == 127) {  // in place
            lkc::dropout(dx.p, dx.p, t, p, seed, n, nullptr);
            check("dropout in place (bit-exact)", tag, compare(bf ? down_bf16(dx.p, n) : down<float>(dx.p, n), refd), 0);
          }
        }
      }
    }
  }
  expect_throw("dropout", "p = 1.5", [] { lkc::dropout(nullptr, nullptr, DType::F32, 1.5f, 0, 4, nullptr); });
  expect_throw("dropout", "i32 tensors", [] { lkc::dropout(nullptr, nullptr, DType::I32, 0.1f, 0, 4, nullptr); });
}

void timings() {
  const int64_t n = int64_t(64) << 20;
  Buf x = rand_bf16(n, 1), o(size_t(n) * 2), f(size_t(n) * 4), fo(size_t(n) * 4);
  f.zero();
  double us = time_us([&] { lkc::dropout(o.p, x.p, DType::BF16, 0.1f, 1234, n, nullptr); });
  timing("dropout bf16", "64Mi", us, gbps(4.0 * n, us));
  us = time_us([&] { lkc::dropout(fo.p, f.p, DType::F32, 0.1f, 1234, n, nullptr); });
  timing("dropout f32", "64Mi", us, gbps(8.0 * n, us));
}

}  // namespace

int main() {
  return run("dropout", [] {
    correctness();
    if (!quick()) timings();
  });
}
