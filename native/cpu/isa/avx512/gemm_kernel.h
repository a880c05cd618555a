// GEMM register block, micro-kernel and panel packing for native/cpu/gemm.cc, AVX-512: a 14x32
// block keeps 28 zmm accumulators plus two B vectors in the 32 zmm registers; each k step is 2 loads
// of B, 14 broadcasts of A and 28 FMAs. Every path's gemm_kernel.h declares the same names.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "gemm.h"
#include "simd.h"

namespace lk::gemm_detail {

// Register block: MR rows x NR columns of C; the narrow kernel covers tiles of n <= kNarrowN.
constexpr int MR = 14;
constexpr int NR = 32;
constexpr int kNarrowN = 16;
// Cache blocks (tuned on Zen 5: 48 KiB L1, 1 MiB L2 per core, shared L3): an MC x KC block of packed
// A (448 KiB) and one KC x NR micro-panel of B (128 KiB) live in L2, the KC x NC block of B (8 MiB) in
// L3. A deep KC means fewer passes over C, which matters more here than keeping B in L1.
constexpr int64_t KC = 1024;
constexpr int64_t MC = (MR * 8);
constexpr int64_t NC = 2048;

namespace avx512 {

inline __mmask16 lanes(int64_t n) { return simd::first(n); }

// 16 values (masked lanes read nothing and are 0), widened to fp32.
inline __m512 load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load16(const uint16_t* p, __mmask16 m) {
  __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// In-register transpose of a 16x16 block: lane j of r[i] goes to lane i of r[j].
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  // r[4i + c] now holds, in 128-bit lane L, rows 4i..4i+3 of column 4L + c: transpose the 4x4 lanes.
  for (int c = 0; c < 4; c++) {
    __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44), u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
    __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44), u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
    t[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    t[4 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
    t[8 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
  }
  for (int i = 0; i < 16; i++) r[i] = t[i];
}

template <int NV>
__attribute__((always_inline)) inline void store_tile(const __m512 (&c0)[MR], const __m512 (&c1)[MR], const Tile& t) {
  __m512 va = _mm512_set1_ps(t.alpha), vb = _mm512_set1_ps(t.beta);
  __mmask16 m0 = lanes(t.n), m1 = lanes(t.n - 16);
  __m512 bias0 = t.bias ? _mm512_maskz_loadu_ps(m0, t.bias) : _mm512_setzero_ps();
  __m512 bias1 = t.bias ? _mm512_maskz_loadu_ps(m1, t.bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 14
  for (int r = 0; r < MR; r++) {
    if (r >= t.m) break;
    float* cr = t.c + r * t.ldc;
    __m512 v0 = _mm512_fmadd_ps(va, c0[r], bias0), v1 = _mm512_fmadd_ps(va, c1[r], bias1);
    if (t.beta != 0.f) {
      v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);
      v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), v1);
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    if (NV == 2) _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}

// NV = 1 computes only the first 16 columns (tiles of n <= 16: half the work of a full-width tile).
template <bool kRowsA, int NV>
void ukernel(int64_t kc, const float* __restrict a, int64_t astep, const float* __restrict b, int64_t bstep,
             const Tile& t) {
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 14
  for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm512_setzero_ps();
  // Start pulling the C tile in now; it is needed only after the k loop.
  if (t.beta != 0.f)
    for (int r = 0; r < t.m; r++) {
      _mm_prefetch(reinterpret_cast<const char*>(t.c + r * t.ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(t.c + r * t.ldc + 16), _MM_HINT_T0);
    }
  if (kRowsA) {
    const float* ar[MR];
    for (int r = 0; r < MR; r++) ar[r] = a + r * astep;
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; k++) {
      __m512 b0 = _mm512_loadu_ps(b), b1 = NV == 2 ? _mm512_loadu_ps(b + 16) : b0;
#pragma GCC unroll 14
      for (int r = 0; r < MR; r++) {
        __m512 av = _mm512_set1_ps(ar[r][k]);
        c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
        if (NV == 2) c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
      }
      b += bstep;
    }
  } else {
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
      __m512 b0 = _mm512_loadu_ps(b), b1 = NV == 2 ? _mm512_loadu_ps(b + 16) : b0;
      _mm_prefetch(reinterpret_cast<const char*>(a + 8 * astep), _MM_HINT_T0);
#pragma GCC unroll 14
      for (int r = 0; r < MR; r++) {
        __m512 av = _mm512_set1_ps(a[r]);
        c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
        if (NV == 2) c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
      }
      a += astep;
      b += bstep;
    }
  }
  store_tile<NV>(c0, c1, t);
}

}  // namespace avx512

// C tile t = alpha * a·b (+ beta C + bias), k < kc; kNarrow: t.n <= kNarrowN, only those columns.
// a: A(r, k) = a[k * astep + r] (packed panel: astep = MR; transposed A read in place: astep = lda), or
//    with kRowsA, a[r * astep + k] (row-major A read in place).
// b: B(k, j) = b[k * bstep + j] (packed panel: bstep = NR; row-major f32 B read in place: bstep = ldb).
template <bool kRowsA, bool kNarrow>
inline void ukernel(int64_t kc, const float* a, int64_t astep, const float* b, int64_t bstep, const Tile& t) {
  avx512::ukernel<kRowsA, kNarrow ? 1 : 2>(kc, a, astep, b, bstep, t);
}

// ---- packing: bf16 (uint16_t bits) is widened here, so a bf16 weight is never copied whole to fp32.
// One k step of a packed A panel from transposed A: d[r] = src[r] for r < min(m, MR), the rest 0.
template <typename T>
inline void pack_a_step(float* d, const T* src, int64_t m) {
  _mm512_mask_storeu_ps(d, (1u << MR) - 1, avx512::load16(src, avx512::lanes(m)));
}

// A packed A panel from m <= MR rows of row-major A: d[k * MR + r] = src[r * lda + k] (k < kc), rows
// past m are 0. 16-column slabs of the rows are transposed in registers.
template <typename T>
inline void pack_a_rows(float* d, const T* src, int64_t lda, int64_t m, int64_t kc) {
  __m512 r[16];
  for (int64_t kk = 0; kk < kc; kk += 16) {
    int64_t kb = std::min<int64_t>(16, kc - kk);
    __mmask16 km = avx512::lanes(kb);
    for (int i = 0; i < 16; i++) r[i] = i < m ? avx512::load16(src + i * lda + kk, km) : _mm512_setzero_ps();
    avx512::transpose16(r);
    for (int64_t q = 0; q < kb; q++) _mm512_mask_storeu_ps(d + (kk + q) * MR, (1u << MR) - 1, r[q]);
  }
}

// One k step of a packed B panel from row-major B: d[j] = src[j] for j < min(n, NR), the rest 0.
// d is 64-byte aligned.
template <typename T>
inline void pack_b_step(float* d, const T* src, int64_t n) {
  _mm512_store_ps(d, avx512::load16(src, avx512::lanes(n)));
  _mm512_store_ps(d + 16, avx512::load16(src + 16, avx512::lanes(n - 16)));
}

// A packed B panel from n <= NR columns of transposed B (rows of W, contiguous in k):
// d[k * NR + j] = src[j * ldb + k] (k < kc), columns past n are 0. d is 64-byte aligned.
template <typename T>
inline void pack_b_cols(float* d, const T* src, int64_t ldb, int64_t n, int64_t kc) {
  __m512 r[16];
  for (int64_t kk = 0; kk < kc; kk += 16) {
    int64_t kb = std::min<int64_t>(16, kc - kk);
    __mmask16 km = avx512::lanes(kb);
    for (int h = 0; h < 2; h++) {
      const T* s = src + 16 * h * ldb + kk;
      for (int i = 0; i < 16; i++) r[i] = 16 * h + i < n ? avx512::load16(s + i * ldb, km) : _mm512_setzero_ps();
      avx512::transpose16(r);
      for (int64_t q = 0; q < kb; q++) _mm512_store_ps(d + (kk + q) * NR + 16 * h, r[q]);
    }
  }
}

}  // namespace lk::gemm_detail
