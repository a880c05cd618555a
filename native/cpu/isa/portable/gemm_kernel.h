// GEMM register block, micro-kernel and panel packing for native/cpu/gemm.cc, portable: plain C++
// loops over the same operand layouts as the SIMD paths (the compiler may vectorize the NR-wide
// inner loop). This is the reference; every path's gemm_kernel.h declares the same names.
#pragma once
#include <algorithm>
#include <cstdint>

#include "bf16.h"
#include "gemm.h"

namespace lk::gemm_detail {

// Register block: MR rows x NR columns of C; the narrow kernel covers tiles of n <= kNarrowN.
constexpr int MR = 14;
constexpr int NR = 32;
constexpr int kNarrowN = 16;
// Cache blocks: as the AVX-512 path (the blocking is only about memory traffic here).
constexpr int64_t KC = 1024;
constexpr int64_t MC = (MR * 8);
constexpr int64_t NC = 2048;

namespace portable {
inline float widen(float x) { return x; }
inline float widen(uint16_t x) { return bf16_to_f32(x); }
}  // namespace portable

// C tile t = alpha * a·b (+ beta C + bias), k < kc; kNarrow: t.n <= kNarrowN, only those columns.
// a: A(r, k) = a[k * astep + r] (packed panel: astep = MR; transposed A read in place: astep = lda), or
//    with kRowsA, a[r * astep + k] (row-major A read in place).
// b: B(k, j) = b[k * bstep + j] (packed panel: bstep = NR; row-major f32 B read in place: bstep = ldb).
template <bool kRowsA, bool kNarrow>
inline void ukernel(int64_t kc, const float* __restrict a, int64_t astep, const float* __restrict b, int64_t bstep,
                    const Tile& t) {
  constexpr int W = kNarrow ? kNarrowN : NR;
  float acc[MR][W] = {};
  for (int64_t k = 0; k < kc; k++)
    for (int r = 0; r < MR; r++) {
      float ar = kRowsA ? a[r * astep + k] : a[k * astep + r];
      for (int j = 0; j < W; j++) acc[r][j] += ar * b[k * bstep + j];
    }
  for (int r = 0; r < t.m; r++)
    for (int j = 0; j < t.n; j++) {
      float* p = t.c + r * t.ldc + j;
      float v = t.alpha * acc[r][j] + (t.bias ? t.bias[j] : 0.f);
      *p = t.beta == 0.f ? v : v + t.beta * *p;
    }
}

// ---- packing: bf16 (uint16_t bits) is widened here, so a bf16 weight is never copied whole to fp32.
// One k step of a packed A panel from transposed A: d[r] = src[r] for r < min(m, MR), the rest 0.
template <typename T>
inline void pack_a_step(float* d, const T* src, int64_t m) {
  for (int r = 0; r < MR; r++) d[r] = r < m ? portable::widen(src[r]) : 0.f;
}

// A packed A panel from m <= MR rows of row-major A: d[k * MR + r] = src[r * lda + k] (k < kc), rows
// past m are 0.
template <typename T>
inline void pack_a_rows(float* d, const T* src, int64_t lda, int64_t m, int64_t kc) {
  for (int64_t k = 0; k < kc; k++)
    for (int r = 0; r < MR; r++) d[k * MR + r] = r < m ? portable::widen(src[r * lda + k]) : 0.f;
}

// One k step of a packed B panel from row-major B: d[j] = src[j] for j < min(n, NR), the rest 0.
template <typename T>
inline void pack_b_step(float* d, const T* src, int64_t n) {
  for (int j = 0; j < NR; j++) d[j] = j < n ? portable::widen(src[j]) : 0.f;
}

// A packed B panel from n <= NR columns of transposed B (rows of W, contiguous in k):
// d[k * NR + j] = src[j * ldb + k] (k < kc), columns past n are 0.
template <typename T>
inline void pack_b_cols(float* d, const T* src, int64_t ldb, int64_t n, int64_t kc) {
  for (int64_t k = 0; k < kc; k++)
    for (int j = 0; j < NR; j++) d[k * NR + j] = j < n ? portable::widen(src[j * ldb + k]) : 0.f;
}

}  // namespace lk::gemm_detail
