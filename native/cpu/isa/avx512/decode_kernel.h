// Decode-step primitives on AVX-512 (see native/cpu/decode.cc): int8 weights widened to float lanes.
#pragma once
#include "simd.h"

namespace lk::simd {

// 16 int8 values -> 16 floats (exact); the _n form reads only the first n (the rest are 0).
LK_INLINE F load_i8(const int8_t* p) { return {_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))))}; }
LK_INLINE F load_i8(const int8_t* p, int64_t n) { return {_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(first(n), p)))}; }

}  // namespace lk::simd
