// Quantized-weight primitives, portable: one lane; the 16-entry code book is a table indexed by the
// code. The reference the SIMD paths are checked against.
// Same declarations in every path folder (see native/cpu/isa/README.md).
#pragma once
#include "simd.h"

namespace lk::qk {

using simd::F;

// A 16-entry float table (a 4-bit code book, possibly scaled by a block's absmax).
struct Lut4 {
  float t[16];
};
LK_INLINE Lut4 lut4(const float* v16) {
  Lut4 r;
  for (int k = 0; k < 16; k++) r.t[k] = v16[k];
  return r;
}
// Every entry times s, each product rounded to fp32 (what dequantizing code·s gives).
LK_INLINE Lut4 scaled(const Lut4& a, F s) {
  Lut4 r;
  for (int k = 0; k < 16; k++) r.t[k] = a.t[k] * s.v;
  return r;
}

// lo, hi <- the table values of the 2·kLanes codes packed in p[0, kLanes), in element order (element
// 2i in the high nibble of byte i, as bitsandbytes packs): lo elements [0, kLanes), hi the rest.
LK_INLINE void lookup4(const Lut4& t, const uint8_t* p, F& lo, F& hi) {
  lo.v = t.t[*p >> 4];
  hi.v = t.t[*p & 15];
}

// The same codes split by parity instead: even <- elements 0, 2, .., 2·kLanes-2 (the high nibbles), odd
// <- elements 1, 3, .. (the low nibbles); for dot products whose other operand is stored in that order
// (split_pairs). With one lane both orders are the same.
LK_INLINE void lookup4_split(const Lut4& t, const uint8_t* p, F& even, F& odd) { lookup4(t, p, even, odd); }

}  // namespace lk::qk
