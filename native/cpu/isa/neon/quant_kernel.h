// Quantized-weight primitives on NEON: the 16-entry NF4/FP4 code book is 64 table bytes for vqtbl4q_u8;
// a code c becomes the byte indices 4c..4c+3 of its float, so one table lookup yields 4 floats.
// Same declarations in every path folder (see native/cpu/isa/README.md).
#pragma once
#include <cstring>

#include "simd.h"

namespace lk::qk {

using simd::F;

// A 16-entry float table (a 4-bit code book, possibly scaled by a block's absmax).
struct Lut4 {
  uint8x16x4_t t;  // the 16 floats' bytes, 4 floats a register
};
LK_INLINE Lut4 lut4(const float* v16) {
  Lut4 r;
  for (int k = 0; k < 4; k++) r.t.val[k] = vreinterpretq_u8_f32(vld1q_f32(v16 + 4 * k));
  return r;
}
// Every entry times s, each product rounded to fp32 (what dequantizing code·s gives).
LK_INLINE Lut4 scaled(const Lut4& a, F s) {
  Lut4 r;
  for (int k = 0; k < 4; k++) r.t.val[k] = vreinterpretq_u8_f32(vmulq_f32(vreinterpretq_f32_u8(a.t.val[k]), s.v));
  return r;
}

// lo, hi <- the table values of the 2·kLanes codes packed in p[0, kLanes), in element order (element
// 2i in the high nibble of byte i, as bitsandbytes packs): lo elements [0, kLanes), hi the rest.
LK_INLINE void lookup4(const Lut4& t, const uint8_t* p, F& lo, F& hi) {
  static const uint8_t kSpread[2][16] = {{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3},
                                         {4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7}};
  static const uint8_t kByte[16] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
  uint32_t w;
  std::memcpy(&w, p, 4);
  const uint8x8_t b = vreinterpret_u8_u32(vdup_n_u32(w));
  // The 8 codes in element order, times 4: the first byte index of each float in the table.
  const uint8x8_t c = vshl_n_u8(vzip1_u8(vshr_n_u8(b, 4), vand_u8(b, vdup_n_u8(15))), 2);
  const uint8x16_t c16 = vcombine_u8(c, c), byte = vld1q_u8(kByte);
  lo.v = vreinterpretq_f32_u8(vqtbl4q_u8(t.t, vorrq_u8(vqtbl1q_u8(c16, vld1q_u8(kSpread[0])), byte)));
  hi.v = vreinterpretq_f32_u8(vqtbl4q_u8(t.t, vorrq_u8(vqtbl1q_u8(c16, vld1q_u8(kSpread[1])), byte)));
}

// The same codes split by parity instead: even <- elements 0, 2, .., 2·kLanes-2 (the high nibbles), odd
// <- elements 1, 3, .. (the low nibbles); for dot products whose other operand is stored in that order
// (split_pairs).
LK_INLINE void lookup4_split(const Lut4& t, const uint8_t* p, F& even, F& odd) {
  static const uint8_t kSpread[2][16] = {{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3},
                                         {4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7}};
  static const uint8_t kByte[16] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
  uint32_t w;
  std::memcpy(&w, p, 4);
  const uint8x8_t b = vreinterpret_u8_u32(vdup_n_u32(w));
  // The 4 high nibbles, then the 4 low ones, times 4: the first byte index of each float in the table.
  const uint32x2_t hl = vzip1_u32(vreinterpret_u32_u8(vshr_n_u8(b, 4)), vreinterpret_u32_u8(vand_u8(b, vdup_n_u8(15))));
  const uint8x8_t c = vshl_n_u8(vreinterpret_u8_u32(hl), 2);
  const uint8x16_t c16 = vcombine_u8(c, c), byte = vld1q_u8(kByte);
  even.v = vreinterpretq_f32_u8(vqtbl4q_u8(t.t, vorrq_u8(vqtbl1q_u8(c16, vld1q_u8(kSpread[0])), byte)));
  odd.v = vreinterpretq_f32_u8(vqtbl4q_u8(t.t, vorrq_u8(vqtbl1q_u8(c16, vld1q_u8(kSpread[1])), byte)));
}

}  // namespace lk::qk
