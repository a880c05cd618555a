// Quantized-weight primitives on AVX-512: the 16-entry NF4/FP4 code book lives in one register and a
// vector of 4-bit codes becomes its values with one permutexvar; int8 widens with vpmovsxbd.
// Same declarations in every path folder (see native/cpu/isa/README.md).
#pragma once
#include "simd.h"

namespace lk::qk {

using simd::F;

// A 16-entry float table (a 4-bit code book, possibly scaled by a block's absmax).
struct Lut4 {
  __m512 t;
};
LK_INLINE Lut4 lut4(const float* v16) { return {_mm512_loadu_ps(v16)}; }
// Every entry times s, each product rounded to fp32 (what dequantizing code·s gives).
LK_INLINE Lut4 scaled(const Lut4& a, F s) { return {_mm512_mul_ps(a.t, s.v)}; }

// lo, hi <- the table values of the 2·kLanes codes packed in p[0, kLanes), in element order (element
// 2i in the high nibble of byte i, as bitsandbytes packs): lo elements [0, kLanes), hi the rest.
LK_INLINE void lookup4(const Lut4& t, const uint8_t* p, F& lo, F& hi) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  // permutexvar reads only an index's low 4 bits, so the high nibbles need a shift but no mask.
  const __m128i sh = _mm_srli_epi16(raw, 4);
  lo.v = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(sh, raw)), t.t);
  hi.v = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(sh, raw)), t.t);
}

// The same codes split by parity instead: even <- elements 0, 2, .., 2·kLanes-2 (the high nibbles), odd
// <- elements 1, 3, .. (the low nibbles). Fewer shuffles; for dot products whose other operand is
// stored in that order (split_pairs).
LK_INLINE void lookup4_split(const Lut4& t, const uint8_t* p, F& even, F& odd) {
  const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  even.v = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), t.t);
  odd.v = _mm512_permutexvar_ps(b, t.t);
}

}  // namespace lk::qk
