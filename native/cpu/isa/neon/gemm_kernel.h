// GEMM register block, micro-kernel and panel packing for native/cpu/gemm.cc, AArch64 NEON: an 8x12
// block keeps 24 q-register accumulators, two A vectors (8 rows) and three B vectors in the 32 q
// registers; each k step is 5 loads and 24 FMAs by lane (vfmaq_laneq_f32), no broadcasts.
// Every path's gemm_kernel.h declares the same names.
#pragma once
#include <arm_neon.h>

#include <algorithm>
#include <cstdint>

#include "gemm.h"
#include "simd.h"

namespace lk::gemm_detail {

// Register block: MR rows x NR columns of C; the narrow kernel covers tiles of n <= kNarrowN.
constexpr int MR = 8;
constexpr int NR = 12;
constexpr int kNarrowN = 8;
// Cache blocks for a typical Arm server core (64 KiB L1, 1 MiB L2): one KC x NR micro-panel of B
// (24 KiB) in L1, the MC x KC block of packed A (384 KiB) in L2, the KC x NC block of B in L3.
constexpr int64_t KC = 512;
constexpr int64_t MC = (MR * 24);
constexpr int64_t NC = (NR * 256);

namespace neon {

// c[v] += b[v] * a[L] for the NV vectors of one C row.
template <int L, int NV>
__attribute__((always_inline)) inline void fma_row(float32x4_t (&c)[NV], const float32x4_t (&b)[NV], float32x4_t a) {
  for (int v = 0; v < NV; v++) c[v] = vfmaq_laneq_f32(c[v], b[v], a, L);
}

// Transpose of a 4x4 block: lane j of r[i] goes to lane i of r[j].
__attribute__((always_inline)) inline void transpose4(float32x4_t r[4]) {
  float32x4x2_t t01 = vtrnq_f32(r[0], r[1]), t23 = vtrnq_f32(r[2], r[3]);
  r[0] = vcombine_f32(vget_low_f32(t01.val[0]), vget_low_f32(t23.val[0]));
  r[1] = vcombine_f32(vget_low_f32(t01.val[1]), vget_low_f32(t23.val[1]));
  r[2] = vcombine_f32(vget_high_f32(t01.val[0]), vget_high_f32(t23.val[0]));
  r[3] = vcombine_f32(vget_high_f32(t01.val[1]), vget_high_f32(t23.val[1]));
}

// NV vectors of 4 columns: NV = 3 is the full 12-column tile, NV = 2 the narrow one (n <= 8).
template <bool kRowsA, int NV>
void ukernel(int64_t kc, const float* __restrict a, int64_t astep, const float* __restrict b, int64_t bstep,
             const Tile& t) {
  float32x4_t c[MR][NV];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) c[r][v] = vdupq_n_f32(0.f);
  if (t.beta != 0.f)
    for (int r = 0; r < t.m; r++) __builtin_prefetch(t.c + r * t.ldc);
  if (kRowsA) {
    const float* ar[MR];
    for (int r = 0; r < MR; r++) ar[r] = a + r * astep;
    for (int64_t k = 0; k < kc; k++) {
      float32x4_t bv[NV];
      for (int v = 0; v < NV; v++) bv[v] = vld1q_f32(b + 4 * v);
      for (int r = 0; r < MR; r++) {
        float av = ar[r][k];
        for (int v = 0; v < NV; v++) c[r][v] = vfmaq_n_f32(c[r][v], bv[v], av);
      }
      b += bstep;
    }
  } else {
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; k++) {
      float32x4_t bv[NV];
      for (int v = 0; v < NV; v++) bv[v] = vld1q_f32(b + 4 * v);
      float32x4_t a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
      __builtin_prefetch(a + 8 * astep);
      fma_row<0>(c[0], bv, a0);
      fma_row<1>(c[1], bv, a0);
      fma_row<2>(c[2], bv, a0);
      fma_row<3>(c[3], bv, a0);
      fma_row<0>(c[4], bv, a1);
      fma_row<1>(c[5], bv, a1);
      fma_row<2>(c[6], bv, a1);
      fma_row<3>(c[7], bv, a1);
      a += astep;
      b += bstep;
    }
  }
  // C = alpha * acc + bias (+ beta * C); the last vector of a row may be partial.
  simd::F va = simd::set1(t.alpha), vb = simd::set1(t.beta);
  for (int r = 0; r < t.m; r++) {
    float* cr = t.c + r * t.ldc;
    for (int v = 0; v < NV; v++) {
      int64_t n = t.n - 4 * v;
      if (n <= 0) break;
      simd::F x = simd::fma(va, simd::F{c[r][v]}, t.bias ? simd::load(t.bias + 4 * v, n) : simd::zero());
      if (t.beta != 0.f) x = simd::fma(vb, simd::load(cr + 4 * v, n), x);
      simd::store(cr + 4 * v, x, n);
    }
  }
}

}  // namespace neon

// C tile t = alpha * a·b (+ beta C + bias), k < kc; kNarrow: t.n <= kNarrowN, only those columns.
// a: A(r, k) = a[k * astep + r] (packed panel: astep = MR; transposed A read in place: astep = lda), or
//    with kRowsA, a[r * astep + k] (row-major A read in place).
// b: B(k, j) = b[k * bstep + j] (packed panel: bstep = NR; row-major f32 B read in place: bstep = ldb).
template <bool kRowsA, bool kNarrow>
inline void ukernel(int64_t kc, const float* a, int64_t astep, const float* b, int64_t bstep, const Tile& t) {
  neon::ukernel<kRowsA, kNarrow ? 2 : 3>(kc, a, astep, b, bstep, t);
}

// ---- packing: bf16 (uint16_t bits) is widened here, so a bf16 weight is never copied whole to fp32.
// One k step of a packed A panel from transposed A: d[r] = src[r] for r < min(m, MR), the rest 0.
template <typename T>
inline void pack_a_step(float* d, const T* src, int64_t m) {
  simd::store(d, simd::load(src, m));
  simd::store(d + 4, simd::load(src + 4, m - 4));
}

// A packed A panel from m <= MR rows of row-major A: d[k * MR + r] = src[r * lda + k] (k < kc), rows
// past m are 0. 4x4 blocks are transposed in registers.
template <typename T>
inline void pack_a_rows(float* d, const T* src, int64_t lda, int64_t m, int64_t kc) {
  float32x4_t r[4];
  for (int64_t kk = 0; kk < kc; kk += 4) {
    int64_t kb = std::min<int64_t>(4, kc - kk);
    for (int h = 0; h < 2; h++) {
      for (int i = 0; i < 4; i++)
        r[i] = 4 * h + i < m ? simd::load(src + (4 * h + i) * lda + kk, kb).v : vdupq_n_f32(0.f);
      neon::transpose4(r);
      for (int64_t q = 0; q < kb; q++) vst1q_f32(d + (kk + q) * MR + 4 * h, r[q]);
    }
  }
}

// One k step of a packed B panel from row-major B: d[j] = src[j] for j < min(n, NR), the rest 0.
template <typename T>
inline void pack_b_step(float* d, const T* src, int64_t n) {
  for (int v = 0; v < NR / 4; v++) simd::store(d + 4 * v, simd::load(src + 4 * v, n - 4 * v));
}

// A packed B panel from n <= NR columns of transposed B (rows of W, contiguous in k):
// d[k * NR + j] = src[j * ldb + k] (k < kc), columns past n are 0. 4x4 blocks are transposed in
// registers.
template <typename T>
inline void pack_b_cols(float* d, const T* src, int64_t ldb, int64_t n, int64_t kc) {
  float32x4_t r[4];
  for (int64_t kk = 0; kk < kc; kk += 4) {
    int64_t kb = std::min<int64_t>(4, kc - kk);
    for (int g = 0; g < NR / 4; g++) {
      for (int i = 0; i < 4; i++)
        r[i] = 4 * g + i < n ? simd::load(src + (4 * g + i) * ldb + kk, kb).v : vdupq_n_f32(0.f);
      neon::transpose4(r);
      for (int64_t q = 0; q < kb; q++) vst1q_f32(d + (kk + q) * NR + 4 * g, r[q]);
    }
  }
}

}  // namespace lk::gemm_detail
