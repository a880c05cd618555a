// GEMM register block, micro-kernel and panel packing for native/cpu/gemm.cc, AVX2 + FMA: a 6x16
// block (as OpenBLAS/BLIS on Haswell) keeps 12 ymm accumulators, two B vectors and one broadcast A
// value in the 16 ymm registers; each k step is 2 loads of B, 6 broadcasts of A and 12 FMAs.
// Every path's gemm_kernel.h declares the same names.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "bf16.h"
#include "gemm.h"
#include "simd.h"

namespace lk::gemm_detail {

// Register block: MR rows x NR columns of C; the narrow kernel covers tiles of n <= kNarrowN.
constexpr int MR = 6;
constexpr int NR = 16;
constexpr int kNarrowN = 8;
// Cache blocks for a Zen 3 / Zen 4 / Intel client core (32 KiB L1, 512 KiB - 1 MiB L2, shared L3):
// one KC x NR micro-panel of B (32 KiB) is reused from L1/L2 across the A panels while the MC x KC
// block of packed A (336 KiB) streams from L2; the KC x NC block of B (8 MiB) lives in L3. Measured on
// a Zen 4 core (32 KiB L1, 1 MiB L2), KC 512 beat 384 by ~10% and 256 by more at n = 512..2048 on two
// threads (fewer passes over C); a larger MC (264) did not help.
constexpr int64_t KC = 512;
constexpr int64_t MC = (MR * 28);
constexpr int64_t NC = 4096;

namespace avx2 {

// 8 values (f32 or bf16 widened); only the first n are read, the rest are 0.
template <typename T>
__attribute__((always_inline)) inline __m256 load8(const T* p, int64_t n) {
  return simd::load(p, n).v;
}

inline float widen(float x) { return x; }
inline float widen(uint16_t x) { return bf16_to_f32(x); }

// In-register transpose of an 8x8 block: lane j of r[i] goes to lane i of r[j].
__attribute__((always_inline)) inline void transpose8(__m256 r[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; i++) {
    s[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    s[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    s[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    s[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  // s[c] (s[4 + c]) holds column c in its low and column 4 + c in its high half, rows 0-3 (4-7).
  for (int c = 0; c < 4; c++) {
    r[c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x31);
  }
}

template <int NV>
__attribute__((always_inline)) inline void store_tile(const __m256 (&c0)[MR], const __m256 (&c1)[MR], const Tile& t) {
  __m256 va = _mm256_set1_ps(t.alpha), vb = _mm256_set1_ps(t.beta);
  __m256i m0 = simd::first(t.n), m1 = simd::first(t.n - 8);
  __m256 bias0 = t.bias ? _mm256_maskload_ps(t.bias, m0) : _mm256_setzero_ps();
  __m256 bias1 = t.bias && NV == 2 ? _mm256_maskload_ps(t.bias + 8, m1) : _mm256_setzero_ps();
  const bool full = t.n == 8 * NV;  // whole rows: plain loads and stores
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++) {
    if (r >= t.m) break;
    float* cr = t.c + r * t.ldc;
    __m256 v0 = _mm256_fmadd_ps(va, c0[r], bias0), v1 = _mm256_fmadd_ps(va, c1[r], bias1);
    if (full) {
      if (t.beta != 0.f) {
        v0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), v0);
        if (NV == 2) v1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), v1);
      }
      _mm256_storeu_ps(cr, v0);
      if (NV == 2) _mm256_storeu_ps(cr + 8, v1);
    } else {
      if (t.beta != 0.f) {
        v0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr, m0), v0);
        if (NV == 2) v1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cr + 8, m1), v1);
      }
      _mm256_maskstore_ps(cr, m0, v0);
      if (NV == 2) _mm256_maskstore_ps(cr + 8, m1, v1);
    }
  }
}

// NV = 1 computes only the first 8 columns (tiles of n <= 8: half the work of a full-width tile).
template <bool kRowsA, int NV>
void ukernel(int64_t kc, const float* __restrict a, int64_t astep, const float* __restrict b, int64_t bstep,
             const Tile& t) {
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm256_setzero_ps();
  // Start pulling the C tile in now; it is needed only after the k loop.
  if (t.beta != 0.f)
    for (int r = 0; r < t.m; r++) {
      _mm_prefetch(reinterpret_cast<const char*>(t.c + r * t.ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(t.c + r * t.ldc + 8 * NV - 1), _MM_HINT_T0);
    }
  if (kRowsA) {
    const float* ar[MR];
    for (int r = 0; r < MR; r++) ar[r] = a + r * astep;
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; k++) {
      __m256 b0 = _mm256_loadu_ps(b), b1 = NV == 2 ? _mm256_loadu_ps(b + 8) : b0;
#pragma GCC unroll 6
      for (int r = 0; r < MR; r++) {
        __m256 av = _mm256_broadcast_ss(ar[r] + k);
        c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
        if (NV == 2) c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
      }
      b += bstep;
    }
  } else {
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
      __m256 b0 = _mm256_loadu_ps(b), b1 = NV == 2 ? _mm256_loadu_ps(b + 8) : b0;
      _mm_prefetch(reinterpret_cast<const char*>(a + 16 * astep), _MM_HINT_T0);
#pragma GCC unroll 6
      for (int r = 0; r < MR; r++) {
        __m256 av = _mm256_broadcast_ss(a + r);
        c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
        if (NV == 2) c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
      }
      a += astep;
      b += bstep;
    }
  }
  store_tile<NV>(c0, c1, t);
}

}  // namespace avx2

// C tile t = alpha * a·b (+ beta C + bias), k < kc; kNarrow: t.n <= kNarrowN, only those columns.
// a: A(r, k) = a[k * astep + r] (packed panel: astep = MR; transposed A read in place: astep = lda), or
//    with kRowsA, a[r * astep + k] (row-major A read in place).
// b: B(k, j) = b[k * bstep + j] (packed panel: bstep = NR; row-major f32 B read in place: bstep = ldb).
template <bool kRowsA, bool kNarrow>
inline void ukernel(int64_t kc, const float* a, int64_t astep, const float* b, int64_t bstep, const Tile& t) {
  avx2::ukernel<kRowsA, kNarrow ? 1 : 2>(kc, a, astep, b, bstep, t);
}

// ---- packing: bf16 (uint16_t bits) is widened here (cvtepu16 + shift), so a bf16 weight is never
// copied whole to fp32.
// One k step of a packed A panel from transposed A: d[r] = src[r] for r < min(m, MR), the rest 0.
template <typename T>
inline void pack_a_step(float* d, const T* src, int64_t m) {
  if (m >= 8) {  // one 8-wide load; the two extra values land in the next step's slots or are not stored
    __m256 v = avx2::load8(src, 8);
    _mm_storeu_ps(d, _mm256_castps256_ps128(v));
    _mm_storel_pi(reinterpret_cast<__m64*>(d + 4), _mm256_extractf128_ps(v, 1));
    return;
  }
  for (int r = 0; r < MR; r++) d[r] = r < m ? avx2::widen(src[r]) : 0.f;
}

// A packed A panel from m <= MR rows of row-major A: d[k * MR + r] = src[r * lda + k] (k < kc), rows
// past m are 0. 8-column slabs of the rows are transposed in registers (rows 6 and 7 are zero).
template <typename T>
inline void pack_a_rows(float* d, const T* src, int64_t lda, int64_t m, int64_t kc) {
  __m256 r[8];
  for (int64_t kk = 0; kk < kc; kk += 8) {
    int64_t kb = std::min<int64_t>(8, kc - kk);
    for (int i = 0; i < 8; i++) r[i] = i < m ? avx2::load8(src + i * lda + kk, kb) : _mm256_setzero_ps();
    avx2::transpose8(r);
    for (int64_t q = 0; q < kb; q++) {  // 6 of the 8 lanes: rows 0-3, then 4-5
      float* dq = d + (kk + q) * MR;
      _mm_storeu_ps(dq, _mm256_castps256_ps128(r[q]));
      _mm_storel_pi(reinterpret_cast<__m64*>(dq + 4), _mm256_extractf128_ps(r[q], 1));
    }
  }
}

// One k step of a packed B panel from row-major B: d[j] = src[j] for j < min(n, NR), the rest 0.
// d is 64-byte aligned.
template <typename T>
inline void pack_b_step(float* d, const T* src, int64_t n) {
  _mm256_store_ps(d, avx2::load8(src, n));
  _mm256_store_ps(d + 8, avx2::load8(src + 8, n - 8));
}

// A packed B panel from n <= NR columns of transposed B (rows of W, contiguous in k):
// d[k * NR + j] = src[j * ldb + k] (k < kc), columns past n are 0. d is 64-byte aligned.
template <typename T>
inline void pack_b_cols(float* d, const T* src, int64_t ldb, int64_t n, int64_t kc) {
  __m256 r[8];
  for (int64_t kk = 0; kk < kc; kk += 8) {
    int64_t kb = std::min<int64_t>(8, kc - kk);
    for (int h = 0; h < 2; h++) {
      const T* s = src + 8 * h * ldb + kk;
      for (int i = 0; i < 8; i++) {
        r[i] = 8 * h + i < n ? avx2::load8(s + i * ldb, kb) : _mm256_setzero_ps();
        _mm_prefetch(reinterpret_cast<const char*>(s + i * ldb + 64), _MM_HINT_T0);
      }
      avx2::transpose8(r);
      for (int64_t q = 0; q < kb; q++) _mm256_store_ps(d + (kk + q) * NR + 8 * h, r[q]);
    }
  }
}

}  // namespace lk::gemm_detail
