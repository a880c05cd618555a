// Counter-based random lanes for dropout, portable: one lane of plain C++, the reference the vector
// paths must match bit for bit (a seed gives the same mask on every machine).
// Same declarations in every path folder: see native/cpu/isa/README.md.
#pragma once
#include <cstdint>

#include "simd.h"

namespace lk::rng {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// splitmix64's output function: a bijective 64-bit mix with full avalanche.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Lane l of the result: `scale` when the top 24 bits of mix64(z + l·φ) are >= threshold, else 0.
// z is the counter of lane 0 (key + i·φ for element i); threshold <= 2^24.
inline simd::F keep_scale(uint64_t z, uint64_t threshold, simd::F scale) {
  return (mix64(z) >> 40) >= threshold ? scale : simd::zero();
}

}  // namespace lk::rng
