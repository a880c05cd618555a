// Attention's register tile on AVX-512 (native/cpu/attention.cc): 8 rows x 2 vectors (32 columns) of
// accumulators, 16 of the 32 zmm registers, leaving room for the 2 B vectors and the broadcast A value.
#pragma once
#include "simd.h"

namespace lk::attn {
constexpr int kMR = 8, kNV = 2;
}  // namespace lk::attn
