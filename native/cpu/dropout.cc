// Inverted dropout: out[i] = x[i] · (keep(i) ? 1/(1 − p) : 0), keep(i) drawn from a counter-based hash
// of (seed, i), so the mask is never stored: backward applies the same function to dy with the same
// seed and gets the same mask. The mask depends only on (seed, i, p), never on the kernel path or the
// thread count: rng_kernel.h's lanes are bit-identical to the scalar mix64.
#include <cmath>

#include "napi_util.h"
#include "parallel.h"
#include "rng_kernel.h"
#include "simd.h"

namespace lk {
namespace {
namespace v = simd;

// f(i, k) over [b, e): whole vectors (k = kLanes, a constant once inlined, so the loads and stores
// are unmasked and the one-lane path is a plain loop the compiler vectorizes), then one tail k < kLanes.
template <class Fn>
LK_INLINE void for_lanes(int64_t b, int64_t e, Fn&& f) {
  int64_t i = b;
  for (; i + v::kLanes <= e; i += v::kLanes) f(i, int64_t{v::kLanes});
  if (i < e) f(i, e - i);
}

// out [n]  <-  x [n]. Element i is kept when the top 24 bits of mix64(key + i·φ) are ≥ round(p·2²⁴).
void dropout_apply(float* out, const float* x, float p, uint64_t seed, int64_t n) {
  const uint64_t key = rng::mix64(seed ^ 0x6a09e667f3bcc909ULL);
  const uint64_t threshold = static_cast<uint64_t>(std::llround(static_cast<double>(p) * 16777216.0));
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
    const v::F vscale = v::set1(scale);
    for_lanes(b, e, [&](int64_t i, int64_t k) {
      const v::F keep = rng::keep_scale(key + static_cast<uint64_t>(i) * rng::kGolden, threshold, vscale);
      v::store(out + i, v::load(x + i, k) * keep, k);  // x·0 as torch does (inf·0 = NaN)
    });
  });
}
}  // namespace

// (out, x, p, seed, n); seed is any integer a JS number holds exactly.
LK_ENTRY(js_dropout, 5, {
  int64_t n = a.int64(4);
  double p = a.num(2);
  if (!(p >= 0.0 && p <= 1.0)) throw ArgError("dropout probability must be in [0, 1]");
  dropout_apply(a.f32(0, n), a.f32(1, n), static_cast<float>(p), static_cast<uint64_t>(a.int64(3)), n);
})

LK_EXPORT("dropoutF32", js_dropout);

}  // namespace lk
