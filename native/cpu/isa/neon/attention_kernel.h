// Attention's register tile on NEON (native/cpu/attention.cc): 6 rows x 4 vectors (16 columns) of
// accumulators, 24 of the 32 q registers, leaving room for the 4 B vectors and the broadcast A value.
#pragma once
#include "simd.h"

namespace lk::attn {
constexpr int kMR = 6, kNV = 4;
}  // namespace lk::attn
