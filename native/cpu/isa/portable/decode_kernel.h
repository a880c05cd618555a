// Decode-step primitives, portable (see native/cpu/decode.cc): one int8 weight as one float lane.
#pragma once
#include "simd.h"

namespace lk::simd {

LK_INLINE F load_i8(const int8_t* p) { return {static_cast<float>(*p)}; }
LK_INLINE F load_i8(const int8_t* p, int64_t n) { return {n > 0 ? static_cast<float>(*p) : 0.f}; }

}  // namespace lk::simd
