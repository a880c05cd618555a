// lk::simd, portable: one lane of plain C++. This is the reference path the SIMD paths are checked
// against (besides the float64 references): kernels written against lk::simd become scalar loops.
// The contract every path's simd.h meets is in native/cpu/isa/README.md.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "bf16.h"
#include "f16.h"

#define LK_INLINE inline

namespace lk::simd {

constexpr int kLanes = 1;
struct F {
  float v;
};
struct M {
  bool m;
};

LK_INLINE F zero() { return {0.f}; }
LK_INLINE F set1(float x) { return {x}; }

// Loads: the "vector" is one value; the first n lanes of it are it when n >= 1, else 0.
LK_INLINE F load(const float* p) { return {*p}; }
LK_INLINE F load(const float* p, int64_t n) { return {n > 0 ? *p : 0.f}; }
LK_INLINE F load(const uint16_t* bf16) { return {bf16_to_f32(*bf16)}; }
LK_INLINE F load(const uint16_t* bf16, int64_t n) { return {n > 0 ? bf16_to_f32(*bf16) : 0.f}; }
LK_INLINE F load_f16(const uint16_t* p) { return {f16_to_f32(*p)}; }
LK_INLINE F load_f16(const uint16_t* p, int64_t n) { return {n > 0 ? f16_to_f32(*p) : 0.f}; }

// int8 -> f32 (exact); the first n lanes of one are it when n >= 1, else 0.
LK_INLINE F load_i8(const int8_t* p) { return {static_cast<float>(*p)}; }
LK_INLINE F load_i8(const int8_t* p, int64_t n) { return {n > 0 ? static_cast<float>(*p) : 0.f}; }

LK_INLINE void store(float* p, F x) { *p = x.v; }
LK_INLINE void store(float* p, F x, int64_t n) {
  if (n > 0) *p = x.v;
}
LK_INLINE void store_bf16(uint16_t* p, F x) { *p = f32_to_bf16(x.v); }
LK_INLINE void store_bf16(uint16_t* p, F x, int64_t n) {
  if (n > 0) *p = f32_to_bf16(x.v);
}

LK_INLINE F operator+(F a, F b) { return {a.v + b.v}; }
LK_INLINE F operator-(F a, F b) { return {a.v - b.v}; }
LK_INLINE F operator*(F a, F b) { return {a.v * b.v}; }
LK_INLINE F operator/(F a, F b) { return {a.v / b.v}; }
LK_INLINE F operator-(F a) { return {-a.v}; }
LK_INLINE F& operator+=(F& a, F b) { return a = a + b; }
LK_INLINE F& operator*=(F& a, F b) { return a = a * b; }
// a * b + c and c - a * b. Rounded twice here: baseline x86-64 has no FMA instruction, and std::fma is a
// library call per element there. The SIMD paths round once; all are held to the float64 references.
LK_INLINE F fma(F a, F b, F c) { return {a.v * b.v + c.v}; }
LK_INLINE F fnma(F a, F b, F c) { return {c.v - a.v * b.v}; }
// max/min return b when either is NaN, as on x86.
LK_INLINE F max(F a, F b) { return {a.v > b.v ? a.v : b.v}; }
LK_INLINE F min(F a, F b) { return {a.v < b.v ? a.v : b.v}; }
LK_INLINE F abs(F a) { return {std::fabs(a.v)}; }
LK_INLINE F sqrt(F a) { return {std::sqrt(a.v)}; }
LK_INLINE F round(F a) { return {std::nearbyint(a.v)}; }

LK_INLINE M operator<(F a, F b) { return {a.v < b.v}; }
LK_INLINE M operator<=(F a, F b) { return {a.v <= b.v}; }
LK_INLINE M operator>(F a, F b) { return {a.v > b.v}; }
LK_INLINE M operator>=(F a, F b) { return {a.v >= b.v}; }
LK_INLINE M isnan(F a) { return {std::isnan(a.v)}; }
LK_INLINE F select(M m, F a, F b) { return m.m ? a : b; }

LK_INLINE float sum(F a) { return a.v; }
LK_INLINE float hmax(F a) { return a.v; }

// libm's expf: correctly rounded or nearly so; the reference the polynomial paths are held to.
LK_INLINE F exp(F x) { return {std::exp(x.v)}; }

LK_INLINE void prefetch(const void* p) { __builtin_prefetch(p); }

}  // namespace lk::simd
