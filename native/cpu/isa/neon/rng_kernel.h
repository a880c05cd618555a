// Counter-based random lanes for dropout on NEON: 4 lanes as two vectors of 2 64-bit counters.
// NEON has no 64-bit multiply; it is built from 32-bit ones (vmull for the low product, vmul/vmla
// for the cross terms, of which only the low 32 bits count). Bit-identical to the portable path's
// scalar mix64. Same declarations in every path folder: see native/cpu/isa/README.md.
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

// a·b mod 2^64 per lane, b a constant: lo(a)·lo(b) + ((hi(a)·lo(b) + lo(a)·hi(b)) << 32).
LK_INLINE uint64x2_t mullo64(uint64x2_t a, uint64_t b) {
  const uint32x2_t blo = vdup_n_u32(uint32_t(b)), bhi = vdup_n_u32(uint32_t(b >> 32));
  const uint32x2_t alo = vmovn_u64(a), ahi = vshrn_n_u64(a, 32);
  const uint32x2_t cross = vmla_u32(vmul_u32(ahi, blo), alo, bhi);
  return vaddq_u64(vmull_u32(alo, blo), vshll_n_u32(cross, 32));
}

LK_INLINE uint64x2_t mix64x2(uint64x2_t z) {
  z = mullo64(veorq_u64(z, vshrq_n_u64(z, 30)), 0xbf58476d1ce4e5b9ULL);
  z = mullo64(veorq_u64(z, vshrq_n_u64(z, 27)), 0x94d049bb133111ebULL);
  return veorq_u64(z, vshrq_n_u64(z, 31));
}

// Lane l of the result: `scale` when the top 24 bits of mix64(z + l·φ) are >= threshold, else 0.
// z is the counter of lane 0 (key + i·φ for element i); threshold <= 2^24.
LK_INLINE simd::F keep_scale(uint64_t z, uint64_t threshold, simd::F scale) {
  const uint64_t steps[2] = {0, kGolden};  // l·φ for l = 0, 1: the counters are additions from z
  const uint64x2_t z0 = vaddq_u64(vdupq_n_u64(z), vld1q_u64(steps));
  const uint64x2_t z1 = vaddq_u64(z0, vdupq_n_u64(2 * kGolden));
  const uint64x2_t thr = vdupq_n_u64(threshold);
  const uint64x2_t k0 = vcgeq_u64(vshrq_n_u64(mix64x2(z0), 40), thr), k1 = vcgeq_u64(vshrq_n_u64(mix64x2(z1), 40), thr);
  const uint32x4_t keep = vcombine_u32(vmovn_u64(k0), vmovn_u64(k1));
  return {vreinterpretq_f32_u32(vandq_u32(keep, vreinterpretq_u32_f32(scale.v)))};
}

}  // namespace lk::rng
