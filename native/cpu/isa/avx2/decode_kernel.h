// Decode-step primitives on AVX2 (see native/cpu/decode.cc): int8 weights widened to float lanes.
#pragma once
#include "simd.h"

namespace lk::simd {

// 8 int8 values -> 8 floats (exact); the _n form reads only the first n (the rest are 0).
LK_INLINE F load_i8(const int8_t* p) { return {_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))))}; }
LK_INLINE F load_i8(const int8_t* p, int64_t n) {
  if (n >= 8) return load_i8(p);
  alignas(8) int8_t t[8] = {};
  if (n > 0) std::memcpy(t, p, static_cast<size_t>(n));
  return load_i8(t);
}

}  // namespace lk::simd
