// Counter-based random lanes for dropout on AVX2: 8 lanes as two vectors of 4 64-bit counters.
// AVX2 has no 64-bit multiply; it is built from three 32x32->64 ones. Bit-identical to the portable
// path's scalar mix64. Same declarations in every path folder: see native/cpu/isa/README.md.
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

// a·b mod 2^64 per lane, b a constant: lo(a)·lo(b) + ((hi(a)·lo(b) + lo(a)·hi(b)) << 32).
LK_INLINE __m256i mullo64(__m256i a, uint64_t b) {
  const __m256i blo = _mm256_set1_epi64x(int64_t(b & 0xffffffffu)), bhi = _mm256_set1_epi64x(int64_t(b >> 32));
  const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), blo), _mm256_mul_epu32(a, bhi));
  return _mm256_add_epi64(_mm256_mul_epu32(a, blo), _mm256_slli_epi64(cross, 32));
}

LK_INLINE __m256i mix64x4(__m256i z) {
  z = mullo64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), 0xbf58476d1ce4e5b9ULL);
  z = mullo64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), 0x94d049bb133111ebULL);
  return _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
}

// Lane l of the result: `scale` when the top 24 bits of mix64(z + l·φ) are >= threshold, else 0.
// z is the counter of lane 0 (key + i·φ for element i); threshold <= 2^24.
LK_INLINE simd::F keep_scale(uint64_t z, uint64_t threshold, simd::F scale) {
  // l·φ mod 2^64 for l = 0..7: the counters are additions from z, no per-lane multiply.
  const __m256i step0 = _mm256_setr_epi64x(0, int64_t(kGolden), int64_t(2 * kGolden), int64_t(3 * kGolden));
  const __m256i z0 = _mm256_add_epi64(_mm256_set1_epi64x(int64_t(z)), step0);
  const __m256i z1 = _mm256_add_epi64(z0, _mm256_set1_epi64x(int64_t(4 * kGolden)));
  // The top 24 bits and the threshold are non-negative as signed 64-bit, so the signed compare is
  // exact: a lane is dropped where threshold > bits.
  const __m256i thr = _mm256_set1_epi64x(int64_t(threshold));
  const __m256i d0 = _mm256_cmpgt_epi64(thr, _mm256_srli_epi64(mix64x4(z0), 40));
  const __m256i d1 = _mm256_cmpgt_epi64(thr, _mm256_srli_epi64(mix64x4(z1), 40));
  // 64-bit masks to 32-bit lanes in order: the low dwords of each pair, then the 128-bit halves in place.
  const __m256 d = _mm256_castpd_ps(_mm256_permute4x64_pd(
      _mm256_castps_pd(_mm256_shuffle_ps(_mm256_castsi256_ps(d0), _mm256_castsi256_ps(d1), 0x88)), 0xD8));
  return {_mm256_andnot_ps(d, scale.v)};
}

}  // namespace lk::rng
