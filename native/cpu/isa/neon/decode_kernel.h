// Decode-step primitives on NEON (see native/cpu/decode.cc): int8 weights widened to float lanes.
#pragma once
#include "simd.h"

namespace lk::simd {

// 4 int8 values -> 4 floats (exact); the _n form reads only the first n (the rest are 0).
LK_INLINE F load_i8(const int8_t* p) {
  int8_t t[8] = {};
  std::memcpy(t, p, 4);
  return {vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(vld1_s8(t)))))};
}
LK_INLINE F load_i8(const int8_t* p, int64_t n) {
  int8_t t[8] = {};
  if (n > 0) std::memcpy(t, p, static_cast<size_t>(n < 4 ? n : 4));
  return {vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8(vld1_s8(t)))))};
}

}  // namespace lk::simd
