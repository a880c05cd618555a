// Quantized-weight primitives on AVX2: the 16-entry NF4/FP4 code book is two registers of 8; a code
// looks up both halves with permutevar8x32 and its bit 3 picks one (blendv on the sign bit).
// Same declarations in every path folder (see native/cpu/isa/README.md).
#pragma once
#include "simd.h"

namespace lk::qk {

using simd::F;

// A 16-entry float table (a 4-bit code book, possibly scaled by a block's absmax).
struct Lut4 {
  __m256 lo, hi;  // entries 0..7, 8..15
};
LK_INLINE Lut4 lut4(const float* v16) { return {_mm256_loadu_ps(v16), _mm256_loadu_ps(v16 + 8)}; }
// Every entry times s, each product rounded to fp32 (what dequantizing code·s gives).
LK_INLINE Lut4 scaled(const Lut4& a, F s) { return {_mm256_mul_ps(a.lo, s.v), _mm256_mul_ps(a.hi, s.v)}; }

// 8 codes in the low 4 bits of each 32-bit lane of i (higher bits ignored) -> their table values.
LK_INLINE __m256 pick(const Lut4& t, __m256i i) {
  const __m256 a = _mm256_permutevar8x32_ps(t.lo, i), b = _mm256_permutevar8x32_ps(t.hi, i);
  return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(i, 28)));
}

// lo, hi <- the table values of the 2·kLanes codes packed in p[0, kLanes), in element order (element
// 2i in the high nibble of byte i, as bitsandbytes packs): lo elements [0, kLanes), hi the rest.
LK_INLINE void lookup4(const Lut4& t, const uint8_t* p, F& lo, F& hi) {
  const __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  // Bytes in element order; each code in a byte's low 4 bits (pick ignores the rest).
  const __m128i il = _mm_unpacklo_epi8(_mm_srli_epi16(raw, 4), raw);
  lo.v = pick(t, _mm256_cvtepu8_epi32(il));
  hi.v = pick(t, _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(il, il)));
}

// The same codes split by parity instead: even <- elements 0, 2, .., 2·kLanes-2 (the high nibbles), odd
// <- elements 1, 3, .. (the low nibbles). Fewer shuffles; for dot products whose other operand is
// stored in that order (split_pairs).
LK_INLINE void lookup4_split(const Lut4& t, const uint8_t* p, F& even, F& odd) {
  const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  even.v = pick(t, _mm256_srli_epi32(b, 4));
  odd.v = pick(t, b);
}

}  // namespace lk::qk
