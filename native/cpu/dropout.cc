// Inverted dropout: out[i] = x[i] · (keep(i) ? 1/(1 − p) : 0), keep(i) drawn from a counter-based hash
// of (seed, i), so the mask is never stored: backward applies the same function to dy with the same
// seed and gets the same mask.
#include <cmath>

#include "napi_util.h"
#include "parallel.h"
#include "vmath.h"

namespace lk {
namespace {
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// splitmix64's output function: a bijective 64-bit mix with full avalanche.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
inline __m512i mix64x8(__m512i z) {
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), _mm512_set1_epi64(0xbf58476d1ce4e5b9LL));
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), _mm512_set1_epi64(0x94d049bb133111ebLL));
  return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}
#endif

// out [n]  <-  x [n]. Element i is kept when the top 24 bits of mix64(key + i·φ) are ≥ round(p·2²⁴).
void dropout_apply(float* out, const float* x, float p, uint64_t seed, int64_t n) {
  const uint64_t key = mix64(seed ^ 0x6a09e667f3bcc909ULL);
  const uint64_t threshold = static_cast<uint64_t>(std::llround(static_cast<double>(p) * 16777216.0));
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
    int64_t i = b;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0), vkey = _mm512_set1_epi64(static_cast<int64_t>(key));
    const __m512i golden = _mm512_set1_epi64(static_cast<int64_t>(kGolden)), thr = _mm512_set1_epi64(static_cast<int64_t>(threshold));
    const __m512 vscale = _mm512_set1_ps(scale);
    for (; i < e; i += 16) {
      const __m512i i0 = _mm512_add_epi64(_mm512_set1_epi64(i), lane), i1 = _mm512_add_epi64(i0, _mm512_set1_epi64(8));
      const __m512i h0 = mix64x8(_mm512_add_epi64(vkey, _mm512_mullo_epi64(i0, golden)));
      const __m512i h1 = mix64x8(_mm512_add_epi64(vkey, _mm512_mullo_epi64(i1, golden)));
      const __mmask16 keep = static_cast<__mmask16>(_mm512_cmpge_epu64_mask(_mm512_srli_epi64(h0, 40), thr) |
                                                    (_mm512_cmpge_epu64_mask(_mm512_srli_epi64(h1, 40), thr) << 8));
      const __mmask16 k = tail_mask(e - i);
      _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_mov_ps(keep, vscale)));
    }
#endif
    for (; i < e; i++) {
      const uint64_t h = mix64(key + static_cast<uint64_t>(i) * kGolden);
      out[i] = x[i] * ((h >> 40) >= threshold ? scale : 0.0f);  // x·0 as torch does (inf·0 = NaN)
    }
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
