// lk::simd on AVX-512 (F, BW, DQ, VL): 16 float lanes, mask registers for loop tails.
// The contract every path's simd.h meets is in native/cpu/isa/README.md.
#pragma once
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 reports false positives inside its own AVX-512 headers (GCC bug 105593), e.g. the deliberately
// undefined operand of _mm512_reduce_add_ps once the reduction is inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstdint>

#define LK_INLINE __attribute__((always_inline)) inline

namespace lk::simd {

constexpr int kLanes = 16;
struct F {
  __m512 v;
};
struct M {
  __mmask16 m;
};

// Lanes [0, n) set; n <= 0 none, n >= 16 all.
LK_INLINE __mmask16 first(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

LK_INLINE F zero() { return {_mm512_setzero_ps()}; }
LK_INLINE F set1(float x) { return {_mm512_set1_ps(x)}; }

// Loads: whole vectors, or the first n lanes (lanes past n read nothing and are 0).
LK_INLINE F load(const float* p) { return {_mm512_loadu_ps(p)}; }
LK_INLINE F load(const float* p, int64_t n) { return {_mm512_maskz_loadu_ps(first(n), p)}; }
LK_INLINE F widen_bf16(__m256i h) { return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))}; }
LK_INLINE F load(const uint16_t* bf16) { return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bf16))); }
LK_INLINE F load(const uint16_t* bf16, int64_t n) { return widen_bf16(_mm256_maskz_loadu_epi16(first(n), bf16)); }
LK_INLINE F load_f16(const uint16_t* p) { return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))}; }
LK_INLINE F load_f16(const uint16_t* p, int64_t n) { return {_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first(n), p))}; }

// int8 -> f32 (exact), whole vectors or the first n lanes (int8 weights read in place).
LK_INLINE F load_i8(const int8_t* p) { return {_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))))}; }
LK_INLINE F load_i8(const int8_t* p, int64_t n) { return {_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(first(n), p)))}; }

LK_INLINE void store(float* p, F x) { _mm512_storeu_ps(p, x.v); }
LK_INLINE void store(float* p, F x, int64_t n) { _mm512_mask_storeu_ps(p, first(n), x.v); }
// fp32 -> bf16, round to nearest even, NaN kept quiet (as bf16.h's f32_to_bf16 and torch).
LK_INLINE __m256i narrow_bf16(F x) {
  __m512i u = _mm512_castps_si512(x.v);
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
  __mmask16 nan = _mm512_cmp_ps_mask(x.v, x.v, _CMP_UNORD_Q);
  r = _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x400000));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}
LK_INLINE void store_bf16(uint16_t* p, F x) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), narrow_bf16(x)); }
LK_INLINE void store_bf16(uint16_t* p, F x, int64_t n) { _mm256_mask_storeu_epi16(p, first(n), narrow_bf16(x)); }

LK_INLINE F operator+(F a, F b) { return {_mm512_add_ps(a.v, b.v)}; }
LK_INLINE F operator-(F a, F b) { return {_mm512_sub_ps(a.v, b.v)}; }
LK_INLINE F operator*(F a, F b) { return {_mm512_mul_ps(a.v, b.v)}; }
LK_INLINE F operator/(F a, F b) { return {_mm512_div_ps(a.v, b.v)}; }
LK_INLINE F operator-(F a) { return {_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(int(0x80000000u))))}; }
LK_INLINE F& operator+=(F& a, F b) { return a = a + b; }
LK_INLINE F& operator*=(F& a, F b) { return a = a * b; }
LK_INLINE F fma(F a, F b, F c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }   // a * b + c, one rounding
LK_INLINE F fnma(F a, F b, F c) { return {_mm512_fnmadd_ps(a.v, b.v, c.v)}; }  // c - a * b, one rounding
// max/min return b when either is NaN (x86 semantics; every path keeps it).
LK_INLINE F max(F a, F b) { return {_mm512_max_ps(a.v, b.v)}; }
LK_INLINE F min(F a, F b) { return {_mm512_min_ps(a.v, b.v)}; }
LK_INLINE F abs(F a) { return {_mm512_abs_ps(a.v)}; }
LK_INLINE F sqrt(F a) { return {_mm512_sqrt_ps(a.v)}; }
LK_INLINE F round(F a) { return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }

LK_INLINE M operator<(F a, F b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
LK_INLINE M operator<=(F a, F b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ)}; }
LK_INLINE M operator>(F a, F b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ)}; }
LK_INLINE M operator>=(F a, F b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ)}; }
LK_INLINE M isnan(F a) { return {_mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q)}; }
LK_INLINE F select(M m, F a, F b) { return {_mm512_mask_blend_ps(m.m, b.v, a.v)}; }  // m ? a : b

LK_INLINE float sum(F a) { return _mm512_reduce_add_ps(a.v); }
LK_INLINE float hmax(F a) { return _mm512_reduce_max_ps(a.v); }

}  // namespace lk::simd

#include "simd_exp.h"

namespace lk::simd {

// exp(x): Cephes polynomial, ~1 ulp. NaN stays NaN; large x gives inf, very negative x gives 0.
LK_INLINE F exp(F x) {
  ExpParts e = exp_parts(x);
  return {_mm512_scalef_ps(e.y.v, e.n.v)};  // y * 2^n with one rounding, overflow to inf, underflow to 0
}

LK_INLINE void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }

}  // namespace lk::simd
