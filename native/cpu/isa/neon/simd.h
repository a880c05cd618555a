// lk::simd on AArch64 Advanced SIMD (NEON): 4 float lanes; loop tails through a small stack copy.
// The contract every path's simd.h meets is in native/cpu/isa/README.md.
#pragma once
#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#define LK_INLINE __attribute__((always_inline)) inline

namespace lk::simd {

constexpr int kLanes = 4;
struct F {
  float32x4_t v;
};
struct M {
  uint32x4_t m;  // all-ones lanes where true
};

LK_INLINE F zero() { return {vdupq_n_f32(0.f)}; }
LK_INLINE F set1(float x) { return {vdupq_n_f32(x)}; }

// Loads: whole vectors, or the first n lanes (lanes past n read nothing and are 0).
LK_INLINE F load(const float* p) { return {vld1q_f32(p)}; }
LK_INLINE F load(const float* p, int64_t n) {
  if (n >= 4) return load(p);
  float t[4] = {};
  if (n > 0) std::memcpy(t, p, static_cast<size_t>(n) * 4);
  return load(t);
}
LK_INLINE uint16x4_t load4x16(const uint16_t* p, int64_t n) {
  if (n >= 4) return vld1_u16(p);
  uint16_t t[4] = {};
  if (n > 0) std::memcpy(t, p, static_cast<size_t>(n) * 2);
  return vld1_u16(t);
}
LK_INLINE F widen_bf16(uint16x4_t h) { return {vreinterpretq_f32_u32(vshll_n_u16(h, 16))}; }
LK_INLINE F load(const uint16_t* bf16) { return widen_bf16(vld1_u16(bf16)); }
LK_INLINE F load(const uint16_t* bf16, int64_t n) { return widen_bf16(load4x16(bf16, n)); }
LK_INLINE F load_f16(const uint16_t* p) { return {vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)))}; }
LK_INLINE F load_f16(const uint16_t* p, int64_t n) { return {vcvt_f32_f16(vreinterpret_f16_u16(load4x16(p, n)))}; }

// int8 -> f32 (exact), whole vectors or the first n lanes (int8 weights read in place).
LK_INLINE F load_i8(const int8_t* p) {
  int32_t w;
  std::memcpy(&w, p, 4);
  return {vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(w))))))};
}
LK_INLINE F load_i8(const int8_t* p, int64_t n) {
  if (n >= 4) return load_i8(p);
  int8_t t[4] = {};
  if (n > 0) std::memcpy(t, p, static_cast<size_t>(n));
  return load_i8(t);
}

LK_INLINE void store(float* p, F x) { vst1q_f32(p, x.v); }
LK_INLINE void store(float* p, F x, int64_t n) {
  if (n >= 4) return store(p, x);
  float t[4];
  vst1q_f32(t, x.v);
  if (n > 0) std::memcpy(p, t, static_cast<size_t>(n) * 4);
}
// fp32 -> bf16, round to nearest even, NaN kept quiet (as bf16.h's f32_to_bf16 and torch).
LK_INLINE uint16x4_t narrow_bf16(F x) {
  uint32x4_t u = vreinterpretq_u32_f32(x.v);
  uint32x4_t r = vaddq_u32(u, vaddq_u32(vdupq_n_u32(0x7fff), vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1))));
  uint32x4_t nan = vmvnq_u32(vceqq_f32(x.v, x.v));
  r = vbslq_u32(nan, vorrq_u32(u, vdupq_n_u32(0x400000)), r);
  return vshrn_n_u32(r, 16);
}
LK_INLINE void store_bf16(uint16_t* p, F x) { vst1_u16(p, narrow_bf16(x)); }
LK_INLINE void store_bf16(uint16_t* p, F x, int64_t n) {
  if (n >= 4) return store_bf16(p, x);
  uint16_t t[4];
  vst1_u16(t, narrow_bf16(x));
  if (n > 0) std::memcpy(p, t, static_cast<size_t>(n) * 2);
}

LK_INLINE F operator+(F a, F b) { return {vaddq_f32(a.v, b.v)}; }
LK_INLINE F operator-(F a, F b) { return {vsubq_f32(a.v, b.v)}; }
LK_INLINE F operator*(F a, F b) { return {vmulq_f32(a.v, b.v)}; }
LK_INLINE F operator/(F a, F b) { return {vdivq_f32(a.v, b.v)}; }
LK_INLINE F operator-(F a) { return {vnegq_f32(a.v)}; }
LK_INLINE F& operator+=(F& a, F b) { return a = a + b; }
LK_INLINE F& operator*=(F& a, F b) { return a = a * b; }
LK_INLINE F fma(F a, F b, F c) { return {vfmaq_f32(c.v, a.v, b.v)}; }   // a * b + c, one rounding
LK_INLINE F fnma(F a, F b, F c) { return {vfmsq_f32(c.v, a.v, b.v)}; }  // c - a * b, one rounding
// max/min return b when either is NaN, as on x86 (vmaxq would return the NaN).
LK_INLINE F max(F a, F b) { return {vbslq_f32(vcgtq_f32(a.v, b.v), a.v, b.v)}; }
LK_INLINE F min(F a, F b) { return {vbslq_f32(vcltq_f32(a.v, b.v), a.v, b.v)}; }
LK_INLINE F abs(F a) { return {vabsq_f32(a.v)}; }
LK_INLINE F sqrt(F a) { return {vsqrtq_f32(a.v)}; }
LK_INLINE F round(F a) { return {vrndnq_f32(a.v)}; }

LK_INLINE M operator<(F a, F b) { return {vcltq_f32(a.v, b.v)}; }
LK_INLINE M operator<=(F a, F b) { return {vcleq_f32(a.v, b.v)}; }
LK_INLINE M operator>(F a, F b) { return {vcgtq_f32(a.v, b.v)}; }
LK_INLINE M operator>=(F a, F b) { return {vcgeq_f32(a.v, b.v)}; }
LK_INLINE M isnan(F a) { return {vmvnq_u32(vceqq_f32(a.v, a.v))}; }
LK_INLINE F select(M m, F a, F b) { return {vbslq_f32(m.m, a.v, b.v)}; }  // m ? a : b

LK_INLINE float sum(F a) { return vaddvq_f32(a.v); }
LK_INLINE float hmax(F a) { return vmaxvq_f32(a.v); }

// 2^n for integral n in [-126, 127], built in the exponent field.
LK_INLINE F pow2i(int32x4_t n) { return {vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n, vdupq_n_s32(127)), 23))}; }

}  // namespace lk::simd

#include "simd_exp.h"

namespace lk::simd {

// exp(x): the same Cephes polynomial as the x86 paths, ~1 ulp. NaN stays NaN; large x gives inf,
// very negative x gives 0 (through subnormals: 2^n is applied as two factors, each a normal float).
LK_INLINE F exp(F x) {
  ExpParts e = exp_parts(x);
  int32x4_t ni = vcvtq_s32_f32(e.n.v);  // NaN lanes give 0; y is NaN there and stays so
  ni = vmaxq_s32(vdupq_n_s32(-150), vminq_s32(vdupq_n_s32(128), ni));
  int32x4_t n1 = vshrq_n_s32(ni, 1);
  return e.y * pow2i(n1) * pow2i(vsubq_s32(ni, n1));
}

LK_INLINE void prefetch(const void* p) { __builtin_prefetch(p); }

}  // namespace lk::simd
