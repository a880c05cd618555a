// Attention's register tile on NEON (native/cpu/attention.cc): 6 rows x 4 vectors (16 columns) of
// accumulators, 24 of the 32 q registers, leaving room for the 4 B vectors and the broadcast A value.
#pragma once
#include "simd.h"

namespace lk::attn {
constexpr int kMR = 6, kNV = 4;
// c + a * b in the tile's inner loop: one FMA.
LK_INLINE simd::F madd(simd::F a, simd::F b, simd::F c) { return simd::fma(a, b, c); }
}  // namespace lk::attn
