// Counter-based random lanes for dropout on AVX-512 (DQ's 64-bit multiply): 16 lanes as two
// vectors of 8 64-bit counters, bit-identical to the portable path's scalar mix64.
// Same declarations in every path folder: see native/cpu/isa/README.md.
#pragma once
#include <cstdint>

#include "simd.h"

namespace lk::rng {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// splitmix64's output function: a bijective 64-bit mix with full avalanche.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

LK_INLINE __m512i mix64x8(__m512i z) {
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), _mm512_set1_epi64(0xbf58476d1ce4e5b9LL));
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), _mm512_set1_epi64(0x94d049bb133111ebLL));
  return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

// Lane l of the result: `scale` when the top 24 bits of mix64(z + l·φ) are >= threshold, else 0.
// z is the counter of lane 0 (key + i·φ for element i); threshold <= 2^24.
LK_INLINE simd::F keep_scale(uint64_t z, uint64_t threshold, simd::F scale) {
  // l·φ mod 2^64 for l = 0..15: the counters are additions from z, no per-lane multiply.
  const __m512i step0 = _mm512_set_epi64(int64_t(7 * kGolden), int64_t(6 * kGolden), int64_t(5 * kGolden), int64_t(4 * kGolden),
                                         int64_t(3 * kGolden), int64_t(2 * kGolden), int64_t(kGolden), 0);
  const __m512i z0 = _mm512_add_epi64(_mm512_set1_epi64(int64_t(z)), step0);
  const __m512i z1 = _mm512_add_epi64(z0, _mm512_set1_epi64(int64_t(8 * kGolden)));
  const __m512i thr = _mm512_set1_epi64(int64_t(threshold));
  const __mmask8 k0 = _mm512_cmpge_epu64_mask(_mm512_srli_epi64(mix64x8(z0), 40), thr);
  const __mmask8 k1 = _mm512_cmpge_epu64_mask(_mm512_srli_epi64(mix64x8(z1), 40), thr);
  return {_mm512_maskz_mov_ps(__mmask16(k0 | (unsigned(k1) << 8)), scale.v)};
}

}  // namespace lk::rng
