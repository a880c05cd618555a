// lk::simd on AVX2 + FMA + F16C: 8 float lanes; loop tails through maskload/maskstore (f32) or a
// small stack copy (16-bit data, which AVX2 cannot mask).
// The contract every path's simd.h meets is in native/cpu/isa/README.md.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#define LK_INLINE __attribute__((always_inline)) inline

namespace lk::simd {

constexpr int kLanes = 8;
struct F {
  __m256 v;
};
struct M {
  __m256 m;  // all-ones lanes where true
};

// Lanes [0, n) all-ones.
LK_INLINE __m256i first(int64_t n) {
  int32_t k = n <= 0 ? 0 : n >= 8 ? 8 : static_cast<int32_t>(n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

LK_INLINE F zero() { return {_mm256_setzero_ps()}; }
LK_INLINE F set1(float x) { return {_mm256_set1_ps(x)}; }

// Loads: whole vectors, or the first n lanes (lanes past n read nothing and are 0).
LK_INLINE F load(const float* p) { return {_mm256_loadu_ps(p)}; }
LK_INLINE F load(const float* p, int64_t n) { return n >= 8 ? load(p) : F{_mm256_maskload_ps(p, first(n))}; }
LK_INLINE __m128i load8x16(const uint16_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
LK_INLINE __m128i load8x16(const uint16_t* p, int64_t n) {
  if (n >= 8) return load8x16(p);
  alignas(16) uint16_t t[8] = {};
  if (n > 0) std::memcpy(t, p, static_cast<size_t>(n) * 2);
  return _mm_load_si128(reinterpret_cast<const __m128i*>(t));
}
LK_INLINE F widen_bf16(__m128i h) { return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))}; }
LK_INLINE F load(const uint16_t* bf16) { return widen_bf16(load8x16(bf16)); }
LK_INLINE F load(const uint16_t* bf16, int64_t n) { return widen_bf16(load8x16(bf16, n)); }
LK_INLINE F load_f16(const uint16_t* p) { return {_mm256_cvtph_ps(load8x16(p))}; }
LK_INLINE F load_f16(const uint16_t* p, int64_t n) { return {_mm256_cvtph_ps(load8x16(p, n))}; }

// int8 -> f32 (exact), whole vectors or the first n lanes (int8 weights read in place).
LK_INLINE F load_i8(const int8_t* p) { return {_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))))}; }
LK_INLINE F load_i8(const int8_t* p, int64_t n) {
  if (n >= 8) return load_i8(p);
  alignas(8) int8_t t[8] = {};
  if (n > 0) std::memcpy(t, p, static_cast<size_t>(n));
  return load_i8(t);
}

LK_INLINE void store(float* p, F x) { _mm256_storeu_ps(p, x.v); }
LK_INLINE void store(float* p, F x, int64_t n) {
  if (n >= 8) store(p, x);
  else _mm256_maskstore_ps(p, first(n), x.v);
}
// fp32 -> bf16, round to nearest even, NaN kept quiet (as bf16.h's f32_to_bf16 and torch).
LK_INLINE __m128i narrow_bf16(F x) {
  __m256i u = _mm256_castps_si256(x.v);
  __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1))));
  __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x.v, x.v, _CMP_UNORD_Q));
  r = _mm256_blendv_epi8(r, _mm256_or_si256(u, _mm256_set1_epi32(0x400000)), nan);
  r = _mm256_srli_epi32(r, 16);
  // packus works within 128-bit halves: pack, then gather the two low quadwords.
  __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xD8);
  return _mm256_castsi256_si128(packed);
}
LK_INLINE void store_bf16(uint16_t* p, F x) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), narrow_bf16(x)); }
LK_INLINE void store_bf16(uint16_t* p, F x, int64_t n) {
  if (n >= 8) return store_bf16(p, x);
  alignas(16) uint16_t t[8];
  _mm_store_si128(reinterpret_cast<__m128i*>(t), narrow_bf16(x));
  if (n > 0) std::memcpy(p, t, static_cast<size_t>(n) * 2);
}

LK_INLINE F operator+(F a, F b) { return {_mm256_add_ps(a.v, b.v)}; }
LK_INLINE F operator-(F a, F b) { return {_mm256_sub_ps(a.v, b.v)}; }
LK_INLINE F operator*(F a, F b) { return {_mm256_mul_ps(a.v, b.v)}; }
LK_INLINE F operator/(F a, F b) { return {_mm256_div_ps(a.v, b.v)}; }
LK_INLINE F operator-(F a) { return {_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f))}; }
LK_INLINE F& operator+=(F& a, F b) { return a = a + b; }
LK_INLINE F& operator*=(F& a, F b) { return a = a * b; }
LK_INLINE F fma(F a, F b, F c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }   // a * b + c, one rounding
LK_INLINE F fnma(F a, F b, F c) { return {_mm256_fnmadd_ps(a.v, b.v, c.v)}; }  // c - a * b, one rounding
// max/min return b when either is NaN (x86 semantics; every path keeps it).
LK_INLINE F max(F a, F b) { return {_mm256_max_ps(a.v, b.v)}; }
LK_INLINE F min(F a, F b) { return {_mm256_min_ps(a.v, b.v)}; }
LK_INLINE F abs(F a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
LK_INLINE F sqrt(F a) { return {_mm256_sqrt_ps(a.v)}; }
LK_INLINE F round(F a) { return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }

LK_INLINE M operator<(F a, F b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
LK_INLINE M operator<=(F a, F b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
LK_INLINE M operator>(F a, F b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
LK_INLINE M operator>=(F a, F b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ)}; }
LK_INLINE M isnan(F a) { return {_mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q)}; }
LK_INLINE F select(M m, F a, F b) { return {_mm256_blendv_ps(b.v, a.v, m.m)}; }  // m ? a : b

LK_INLINE float sum(F a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
LK_INLINE float hmax(F a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 2^n for integral n in [-126, 127], built in the exponent field.
LK_INLINE F pow2i(__m256i n) { return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23))}; }

}  // namespace lk::simd

#include "simd_exp.h"

namespace lk::simd {

// exp(x): the same Cephes polynomial as the AVX-512 path, ~1 ulp. NaN stays NaN; large x gives inf,
// very negative x gives 0 (through subnormals: 2^n is applied as two factors, each a normal float).
LK_INLINE F exp(F x) {
  ExpParts e = exp_parts(x);
  __m256i ni = _mm256_cvtps_epi32(e.n.v);  // NaN lanes give INT_MIN; y is NaN there and stays so
  ni = _mm256_max_epi32(_mm256_set1_epi32(-150), _mm256_min_epi32(_mm256_set1_epi32(128), ni));
  __m256i n1 = _mm256_srai_epi32(ni, 1);
  return e.y * pow2i(n1) * pow2i(_mm256_sub_epi32(ni, n1));
}

LK_INLINE void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }

}  // namespace lk::simd
