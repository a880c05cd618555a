// Attention's register tile on AVX2 (native/cpu/attention.cc): 6 rows x 2 vectors (16 columns) of
// accumulators; with the 2 B vectors and the broadcast A value that is 15 of the 16 ymm registers.
#pragma once
#include "simd.h"

namespace lk::attn {
constexpr int kMR = 6, kNV = 2;
}  // namespace lk::attn
