// Attention's register tile, portable (native/cpu/attention.cc): 4 rows x 8 one-lane "vectors" of
// accumulators. The compiler vectorizes the 8 contiguous columns of a row itself (two SSE or NEON
// registers), which made 4 x 8 the fastest shape on baseline x86-64 (ahead of 4 x 4, 2 x 8 and 1 x 64).
#pragma once
#include "simd.h"

namespace lk::attn {
constexpr int kMR = 4, kNV = 8;
}  // namespace lk::attn
