// Causal self-attention with grouped-query heads (GQA), padding and packed sequences, flash-attention
// style: scores are computed one block of query rows at a time against the key range those rows can
// see, so no [B, H, T, T] tensor ever exists. Forward saves only the per-row logsumexp; backward
// recomputes the probabilities from it.
//
// Layouts: q, out, dout [B, Tq, Hq, D]; k, v [B, Tk, Hkv, D]; segments [B, Tk] i32; lse [B, Hq, Tq].
// Query row i sits at key position p = Tk - Tq + i. It attends to key j iff j <= p and
// segments[b, j] == segments[b, p] != 0 (padding is 0). Query head h reads kv head h / (Hq / Hkv).
// A padded query row (segments[b, p] == 0) outputs zeros, has lse = -inf and gets zero gradient.
//
// Every block is three small GEMMs (S = Q Kᵀ, O = P V in forward; S, dP = dO Vᵀ, dQ = dS K,
// dK += dSᵀ Q, dV += Pᵀ dO in backward) through one register-blocked micro-kernel with D or the key
// index contiguous, so the inner loops are AVX-512 FMAs without horizontal reductions.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <unordered_map>
#include <vector>

#ifdef __AVX512F__
#include <immintrin.h>
// GCC 12 warns about the deliberately undefined pass-through operand inside its own AVX-512 headers.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "napi_util.h"
#include "parallel.h"
#include "vmath.h"

namespace lk {
namespace {

// Query rows per block: large enough that each K/V row loaded serves many FMAs, small enough that the
// masked-out triangle a causal block computes anyway (R²/2 scores) stays a small fraction.
constexpr int64_t kRows = 32;

// ---- GEMM micro-kernel ---------------------------------------------------------------------------
// C[M, N] (= or +=) A[M, K] · B[K, N], row-major with leading dims; A read transposed when TRANS_A
// (A[k * lda + m]). Tiles of 8 rows x 32 columns stay in 16 zmm accumulators; each B row loaded feeds
// 8 FMAs per vector.

#ifdef __AVX512F__
inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1u); }

template <int MR, int NV, bool ACC, bool TRANS_A>
inline void micro(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t K,
                  __mmask16 m0, __mmask16 m1) {
  __m512 c[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++) {
    c[r][0] = ACC ? _mm512_maskz_loadu_ps(m0, C + r * ldc) : _mm512_setzero_ps();
    if (NV == 2) c[r][NV - 1] = ACC ? _mm512_maskz_loadu_ps(m1, C + r * ldc + 16) : _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < K; k++) {
    const float* b = B + k * ldb;
    __m512 b0 = _mm512_maskz_loadu_ps(m0, b);
    __m512 b1 = NV == 2 ? _mm512_maskz_loadu_ps(m1, b + 16) : b0;
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
      __m512 a = _mm512_set1_ps(TRANS_A ? A[k * lda + r] : A[r * lda + k]);
      c[r][0] = _mm512_fmadd_ps(a, b0, c[r][0]);
      if (NV == 2) c[r][NV - 1] = _mm512_fmadd_ps(a, b1, c[r][NV - 1]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++) {
    _mm512_mask_storeu_ps(C + r * ldc, m0, c[r][0]);
    if (NV == 2) _mm512_mask_storeu_ps(C + r * ldc + 16, m1, c[r][NV - 1]);
  }
}

template <int MR, bool ACC, bool TRANS_A>
inline void micro_row(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t N,
                      int64_t K) {
  for (int64_t n0 = 0; n0 < N; n0 += 32) {
    int64_t w = std::min<int64_t>(32, N - n0);
    if (w > 16)
      micro<MR, 2, ACC, TRANS_A>(C + n0, ldc, A, lda, B + n0, ldb, K, tail_mask(16), tail_mask(w - 16));
    else
      micro<MR, 1, ACC, TRANS_A>(C + n0, ldc, A, lda, B + n0, ldb, K, tail_mask(w), 0);
  }
}
#endif

template <bool ACC, bool TRANS_A>
void gemm(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
          int64_t K) {
  if (M <= 0 || N <= 0) return;
#ifdef __AVX512F__
  // Advancing the tile's first row m0 moves A by m0 rows, or by m0 columns when A is transposed.
  auto a_at = [&](int64_t m0) { return TRANS_A ? A + m0 : A + m0 * lda; };
  int64_t m0 = 0;
  for (; m0 + 8 <= M; m0 += 8) micro_row<8, ACC, TRANS_A>(C + m0 * ldc, ldc, a_at(m0), lda, B, ldb, N, K);
  switch (M - m0) {
    case 7: micro_row<7, ACC, TRANS_A>(C + m0 * ldc, ldc, a_at(m0), lda, B, ldb, N, K); break;
    case 6: micro_row<6, ACC, TRANS_A>(C + m0 * ldc, ldc, a_at(m0), lda, B, ldb, N, K); break;
    case 5: micro_row<5, ACC, TRANS_A>(C + m0 * ldc, ldc, a_at(m0), lda, B, ldb, N, K); break;
    case 4: micro_row<4, ACC, TRANS_A>(C + m0 * ldc, ldc, a_at(m0), lda, B, ldb, N, K); break;
    case 3: micro_row<3, ACC, TRANS_A>(C + m0 * ldc, ldc, a_at(m0), lda, B, ldb, N, K); break;
    case 2: micro_row<2, ACC, TRANS_A>(C + m0 * ldc, ldc, a_at(m0), lda, B, ldb, N, K); break;
    case 1: micro_row<1, ACC, TRANS_A>(C + m0 * ldc, ldc, a_at(m0), lda, B, ldb, N, K); break;
    default: break;
  }
#else
  for (int64_t m = 0; m < M; m++) {
    float* c = C + m * ldc;
    if (!ACC) std::fill(c, c + N, 0.f);
    for (int64_t k = 0; k < K; k++) {
      float a = TRANS_A ? A[k * lda + m] : A[m * lda + k];
      const float* b = B + k * ldb;
      for (int64_t n = 0; n < N; n++) c[n] += a * b[n];  // contiguous: auto-vectorized
    }
  }
#endif
}

// ---- row helpers ---------------------------------------------------------------------------------


float row_max(const float* x, int64_t n) {
  float m = -INFINITY;
  int64_t j = 0;
#ifdef __AVX512F__
  __m512 acc = _mm512_set1_ps(-INFINITY);
  for (; j + 16 <= n; j += 16) acc = _mm512_max_ps(acc, _mm512_loadu_ps(x + j));
  m = _mm512_reduce_max_ps(acc);
#endif
  for (; j < n; j++) m = std::max(m, x[j]);
  return m;
}

// x[j] = exp(x[j] - shift) in place; returns the sum (in double: rows can be long).
double exp_shift_sum(float* x, int64_t n, float shift) {
  double sum = 0;
  int64_t j = 0;
#ifdef __AVX512F__
  __m512 s = _mm512_set1_ps(shift), acc = _mm512_setzero_ps();
  for (; j + 16 <= n; j += 16) {
    __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + j), s));
    _mm512_storeu_ps(x + j, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (j < n) {
    __mmask16 m = tail_mask(n - j);
    __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), s));
    e = _mm512_maskz_mov_ps(m, e);
    _mm512_mask_storeu_ps(x + j, m, e);
    acc = _mm512_add_ps(acc, e);
    j = n;
  }
  sum = _mm512_reduce_add_ps(acc);
#endif
  for (; j < n; j++) {
    x[j] = std::exp(x[j] - shift);
    sum += x[j];
  }
  return sum;
}

float dot(const float* a, const float* b, int64_t n) {
  int64_t j = 0;
  float s = 0;
#ifdef __AVX512F__
  __m512 acc = _mm512_setzero_ps();
  for (; j + 16 <= n; j += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), acc);
  if (j < n) {
    __mmask16 m = tail_mask(n - j);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + j), _mm512_maskz_loadu_ps(m, b + j), acc);
    j = n;
  }
  s = _mm512_reduce_add_ps(acc);
#endif
  for (; j < n; j++) s += a[j] * b[j];
  return s;
}

// ---- shared setup --------------------------------------------------------------------------------

struct Dims {
  int64_t B, Tq, Tk, Hq, Hkv, D;
  int64_t group() const { return Hq / Hkv; }
  int64_t offset() const { return Tk - Tq; }  // key position of query row 0
  int64_t blocks() const { return (Tq + kRows - 1) / kRows; }
};

// first[b, p] = the first key index whose segment id equals segments[b, p]: no key before it can be
// attended from position p, so a block's key range starts at its rows' smallest `first`.
std::vector<int64_t> first_of_segment(const int32_t* seg, const Dims& d) {
  std::vector<int64_t> first(d.B * d.Tk);
  std::unordered_map<int32_t, int64_t> seen;
  for (int64_t b = 0; b < d.B; b++) {
    seen.clear();
    for (int64_t p = 0; p < d.Tk; p++) first[b * d.Tk + p] = seen.emplace(seg[b * d.Tk + p], p).first->second;
  }
  return first;
}

// xt[b, hk, D, Tk] = x[b, Tk, hk, D]: puts the key index contiguous, so Q Kᵀ and dO Vᵀ run as plain
// GEMMs over rows of D (no per-score horizontal sums).
std::vector<float> transpose_kv(const float* x, const Dims& d) {
  std::vector<float> xt(d.B * d.Hkv * d.D * d.Tk);
  parallel_for(d.B * d.Hkv, 1, [&](int64_t s, int64_t e) {
    for (int64_t u = s; u < e; u++) {
      int64_t b = u / d.Hkv, hk = u % d.Hkv;
      float* dst = xt.data() + u * d.D * d.Tk;
      const float* src = x + (b * d.Tk * d.Hkv + hk) * d.D;
      const int64_t lds = d.Hkv * d.D;
      // 16 x 16 tiles: a column-at-a-time copy would write one float per line at a power-of-two
      // stride, thrashing the same cache sets.
      for (int64_t j0 = 0; j0 < d.Tk; j0 += 16)
        for (int64_t c0 = 0; c0 < d.D; c0 += 16) {
          int64_t j1 = std::min(j0 + 16, d.Tk), c1 = std::min(c0 + 16, d.D);
          for (int64_t c = c0; c < c1; c++)
            for (int64_t j = j0; j < j1; j++) dst[c * d.Tk + j] = src[j * lds + c];
        }
    }
  });
  return xt;
}

// The rows [i0, i0 + rows) of one (b, h) and the key range [lo, hi) they can see; empty when all are
// padding.
struct Block {
  int64_t i0, rows, lo, hi;
};

Block block_range(const int32_t* seg_b, const int64_t* first_b, const Dims& d, int64_t blk) {
  Block k{blk * kRows, std::min(kRows, d.Tq - blk * kRows), d.Tk, 0};
  for (int64_t r = 0; r < k.rows; r++) {
    int64_t p = d.offset() + k.i0 + r;
    if (seg_b[p] == 0) continue;
    k.lo = std::min(k.lo, first_b[p]);
    k.hi = std::max(k.hi, p + 1);
  }
  if (k.hi <= k.lo) k.lo = k.hi = 0;
  return k;
}

// Below this many query rows per call (decoding), scores come from direct dot products: transposing
// the whole K cache would cost more than the attention itself.
constexpr int64_t kTransposeMinRows = 8;

// S[rows, n] = Q[rows, D] · K[lo..hi, D]ᵀ, either as a GEMM over the transposed kt[D, Tk] of this
// (b, kv head) or, without it, as dot products over rows of k (ld = Hkv * D).
void scores(float* S, const float* Q, int64_t ldq, const float* kt, const float* k, int64_t ldk, const Block& blk,
            const Dims& d) {
  int64_t n = blk.hi - blk.lo;
  if (kt) {
    gemm<false, false>(S, n, Q, ldq, kt + blk.lo, d.Tk, blk.rows, n, d.D);
    return;
  }
  for (int64_t r = 0; r < blk.rows; r++)
    for (int64_t j = 0; j < n; j++) S[r * n + j] = dot(Q + r * ldq, k + (blk.lo + j) * ldk, d.D);
}

// Scores S[rows, n] (keys lo..hi) -> masked, scaled logits; masked entries become -inf.
void mask_scale(float* S, const Block& k, const int32_t* seg_b, const Dims& d, float scale) {
  int64_t n = k.hi - k.lo;
  for (int64_t r = 0; r < k.rows; r++) {
    int64_t p = d.offset() + k.i0 + r;
    int32_t sp = seg_b[p];
    float* s = S + r * n;
    const int32_t* sg = seg_b + k.lo;
    int64_t last = p - k.lo;  // keys after the row's own position are in the future
    for (int64_t j = 0; j < n; j++) s[j] = (j <= last && sg[j] == sp && sp != 0) ? s[j] * scale : -INFINITY;
  }
}

// Visits the blocks of one head in an order that alternates cheap (early) and costly (late) causal
// blocks, so contiguous chunks of work given to threads cost about the same.
inline int64_t balanced(int64_t i, int64_t n) { return (i & 1) ? n - 1 - i / 2 : i / 2; }

// ---- forward -------------------------------------------------------------------------------------
// out[B, Tq, Hq, D], lse[B, Hq, Tq] = attention(q[B, Tq, Hq, D], k, v[B, Tk, Hkv, D], segments[B, Tk]).
// Backward needs lse (plus q, k, v, out) to rebuild each row's probabilities without storing them.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* seg,
                       const Dims& d, float scale) {
  const std::vector<int64_t> first = first_of_segment(seg, d);
  const std::vector<float> kt = d.Tq >= kTransposeMinRows ? transpose_kv(k, d) : std::vector<float>();
  const int64_t nblk = d.blocks(), G = d.group(), ldq = d.Hq * d.D, ldkv = d.Hkv * d.D;
  parallel_for(d.B * d.Hq * nblk, 1, [&](int64_t s, int64_t e) {
    std::vector<float> S(kRows * d.Tk);
    float inv[kRows];
    for (int64_t u = s; u < e; u++) {
      int64_t bh = u / nblk, b = bh / d.Hq, h = bh % d.Hq, hk = h / G;
      const int32_t* seg_b = seg + b * d.Tk;
      Block blk = block_range(seg_b, first.data() + b * d.Tk, d, balanced(u % nblk, nblk));
      float* o = out + ((b * d.Tq + blk.i0) * d.Hq + h) * d.D;
      float* l = lse + bh * d.Tq + blk.i0;
      int64_t n = blk.hi - blk.lo;
      if (n == 0) {
        for (int64_t r = 0; r < blk.rows; r++) {
          std::fill(o + r * ldq, o + r * ldq + d.D, 0.f);
          l[r] = -INFINITY;
        }
        continue;
      }
      // S[rows, n] = Q[rows, D] · Kᵀ[D, lo..hi]
      scores(S.data(), q + ((b * d.Tq + blk.i0) * d.Hq + h) * d.D, ldq,
             kt.empty() ? nullptr : kt.data() + (b * d.Hkv + hk) * d.D * d.Tk,
             k + (b * d.Tk * d.Hkv + hk) * d.D, ldkv, blk, d);
      mask_scale(S.data(), blk, seg_b, d, scale);
      for (int64_t r = 0; r < blk.rows; r++) {
        float* sr = S.data() + r * n;
        float m = row_max(sr, n);
        if (m == -INFINITY) {  // padded row: no key at all
          std::fill(sr, sr + n, 0.f);
          inv[r] = 0;
          l[r] = -INFINITY;
          continue;
        }
        double sum = exp_shift_sum(sr, n, m);
        inv[r] = static_cast<float>(1.0 / sum);
        l[r] = m + static_cast<float>(std::log(sum));
      }
      // O[rows, D] = P[rows, n] · V[lo..hi, D], then each row divided by its softmax denominator.
      gemm<false, false>(o, ldq, S.data(), n, v + ((b * d.Tk + blk.lo) * d.Hkv + hk) * d.D, ldkv, blk.rows, d.D, n);
      for (int64_t r = 0; r < blk.rows; r++)
        for (int64_t c = 0; c < d.D; c++) o[r * ldq + c] *= inv[r];
    }
  });
}

// ---- backward ------------------------------------------------------------------------------------
// dq[B, Tq, Hq, D], dk, dv[B, Tk, Hkv, D] from dout[B, Tq, Hq, D] and what forward saved (q, k, v, out,
// lse). Per block: P = exp(S·scale − lse), dP = dO·Vᵀ, D_i = rowsum(dO ∘ O), dS = P ∘ (dP − D_i)·scale,
// dQ = dS·K, dK += dSᵀ·Q, dV += Pᵀ·dO.
// dK/dV of one kv head collect every query head of its group and every query row. Work units are
// (b, kv head, part): a part takes every parts-th block of all the group's heads, and when there is
// more than one part per kv head each writes its own dK/dV partial buffer, summed at the end: no two
// threads ever write the same memory.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const int32_t* seg, const float* out, const float* lse, const Dims& d,
                        float scale) {
  const std::vector<int64_t> first = first_of_segment(seg, d);
  const std::vector<float> kt = transpose_kv(k, d), vt = transpose_kv(v, d);
  const int64_t nblk = d.blocks(), G = d.group(), ldq = d.Hq * d.D, ldkv = d.Hkv * d.D, BH = d.B * d.Hkv;
  // Enough parts that the units divide evenly among threads, without multiplying dK/dV memory much.
  const int64_t threads = num_threads();
  int64_t parts = threads / std::gcd(BH, threads);
  if (BH * parts > 4 * threads) parts = (threads + BH - 1) / BH;
  parts = std::max<int64_t>(1, std::min(parts, nblk));
  // Per unit with parts > 1: a dK partial then a dV partial, [Tk, D] each.
  std::vector<float> partial(parts > 1 ? BH * parts * 2 * d.Tk * d.D : 0);

  parallel_for(BH * parts, 1, [&](int64_t s, int64_t e) {
    std::vector<float> P(kRows * d.Tk), dP(kRows * d.Tk);
    float Di[kRows];
    for (int64_t u = s; u < e; u++) {
      int64_t bk = u / parts, part = u % parts, b = bk / d.Hkv, hk = bk % d.Hkv;
      const int32_t* seg_b = seg + b * d.Tk;
      // This unit's dK/dV rows: straight into the outputs when it is the only part, else its partials.
      float *dkb, *dvb;
      int64_t ldd;
      if (parts == 1) {
        dkb = dk + (b * d.Tk * d.Hkv + hk) * d.D;
        dvb = dv + (b * d.Tk * d.Hkv + hk) * d.D;
        ldd = ldkv;
        for (int64_t j = 0; j < d.Tk; j++) {
          std::fill(dkb + j * ldd, dkb + j * ldd + d.D, 0.f);
          std::fill(dvb + j * ldd, dvb + j * ldd + d.D, 0.f);
        }
      } else {
        dkb = partial.data() + (2 * u) * d.Tk * d.D;
        dvb = dkb + d.Tk * d.D;
        ldd = d.D;
      }
      const float* ktb = kt.data() + bk * d.D * d.Tk;
      const float* vtb = vt.data() + bk * d.D * d.Tk;
      for (int64_t g = 0; g < G; g++) {
        int64_t h = hk * G + g;
        for (int64_t bi = part; bi < nblk; bi += parts) {
          Block blk = block_range(seg_b, first.data() + b * d.Tk, d, bi);
          int64_t row0 = ((b * d.Tq + blk.i0) * d.Hq + h) * d.D;
          int64_t n = blk.hi - blk.lo;
          if (n == 0) {
            for (int64_t r = 0; r < blk.rows; r++) std::fill(dq + row0 + r * ldq, dq + row0 + r * ldq + d.D, 0.f);
            continue;
          }
          const float* lrow = lse + (b * d.Hq + h) * d.Tq + blk.i0;
          // P[rows, n] = exp(mask(Q·Kᵀ)·scale − lse): the forward probabilities, rebuilt.
          scores(P.data(), q + row0, ldq, ktb, nullptr, 0, blk, d);
          mask_scale(P.data(), blk, seg_b, d, scale);
          for (int64_t r = 0; r < blk.rows; r++) {
            float* pr = P.data() + r * n;
            if (lrow[r] == -INFINITY) std::fill(pr, pr + n, 0.f);  // padded row
            else exp_shift_sum(pr, n, lrow[r]);
            Di[r] = dot(dout + row0 + r * ldq, out + row0 + r * ldq, d.D);
          }
          // dP[rows, n] = dO[rows, D] · Vᵀ[D, lo..hi]; then dS = P ∘ (dP − D_i) · scale, in place.
          gemm<false, false>(dP.data(), n, dout + row0, ldq, vtb + blk.lo, d.Tk, blk.rows, n, d.D);
          for (int64_t r = 0; r < blk.rows; r++) {
            const float* pr = P.data() + r * n;
            float* sr = dP.data() + r * n;
            float di = Di[r];
            for (int64_t j = 0; j < n; j++) sr[j] = pr[j] * (sr[j] - di) * scale;
          }
          const float* dS = dP.data();
          // dQ[rows, D] = dS[rows, n] · K[lo..hi, D]
          gemm<false, false>(dq + row0, ldq, dS, n, k + ((b * d.Tk + blk.lo) * d.Hkv + hk) * d.D, ldkv, blk.rows,
                             d.D, n);
          // dK[lo..hi, D] += dSᵀ[n, rows] · Q[rows, D];  dV[lo..hi, D] += Pᵀ[n, rows] · dO[rows, D]
          gemm<true, true>(dkb + blk.lo * ldd, ldd, dS, n, q + row0, ldq, n, d.D, blk.rows);
          gemm<true, true>(dvb + blk.lo * ldd, ldd, P.data(), n, dout + row0, ldq, n, d.D, blk.rows);
        }
      }
    }
  });
  if (parts == 1) return;
  // dK[b, j, hk] = sum over parts of the partials (and likewise dV).
  parallel_for(d.B * d.Tk, 16, [&](int64_t s, int64_t e) {
    for (int64_t bj = s; bj < e; bj++) {
      int64_t b = bj / d.Tk, j = bj % d.Tk;
      for (int64_t hk = 0; hk < d.Hkv; hk++) {
        float* ok = dk + (bj * d.Hkv + hk) * d.D;
        float* ov = dv + (bj * d.Hkv + hk) * d.D;
        std::fill(ok, ok + d.D, 0.f);
        std::fill(ov, ov + d.D, 0.f);
        for (int64_t p = 0; p < parts; p++) {
          const float* pk = partial.data() + (2 * ((b * d.Hkv + hk) * parts + p) * d.Tk + j) * d.D;
          const float* pv = pk + d.Tk * d.D;
          for (int64_t c = 0; c < d.D; c++) ok[c] += pk[c];
          for (int64_t c = 0; c < d.D; c++) ov[c] += pv[c];
        }
      }
    }
  });
}

// Sizes arrive as numbers; the TypeScript op has checked shapes and dtypes, this re-checks lengths.
Dims dims_from(Args& a, size_t first) {
  Dims d{a.int64(first), a.int64(first + 1), a.int64(first + 2), a.int64(first + 3), a.int64(first + 4),
         a.int64(first + 5)};
  if (d.B < 0 || d.Tq < 0 || d.Tk < d.Tq || d.Hkv <= 0 || d.Hq <= 0 || d.Hq % d.Hkv != 0 || d.D <= 0)
    throw ArgError("invalid attention sizes");
  return d;
}

}  // namespace

// (out, lse, q, k, v, segments, B, Tq, Tk, Hq, Hkv, D, scale)
LK_ENTRY(js_attention_forward_f32, 13, {
  Dims d = dims_from(a, 6);
  size_t nq = d.B * d.Tq * d.Hq * d.D, nkv = d.B * d.Tk * d.Hkv * d.D;
  float* out = a.f32(0, nq);
  float* lse = a.f32(1, d.B * d.Hq * d.Tq);
  attention_forward(out, lse, a.f32(2, nq), a.f32(3, nkv), a.f32(4, nkv), a.i32(5, d.B * d.Tk), d,
                    static_cast<float>(a.num(12)));
})

// (dq, dk, dv, dout, q, k, v, segments, out, lse, B, Tq, Tk, Hq, Hkv, D, scale)
LK_ENTRY(js_attention_backward_f32, 17, {
  Dims d = dims_from(a, 10);
  size_t nq = d.B * d.Tq * d.Hq * d.D, nkv = d.B * d.Tk * d.Hkv * d.D;
  attention_backward(a.f32(0, nq), a.f32(1, nkv), a.f32(2, nkv), a.f32(3, nq), a.f32(4, nq), a.f32(5, nkv),
                     a.f32(6, nkv), a.i32(7, d.B * d.Tk), a.f32(8, nq), a.f32(9, d.B * d.Hq * d.Tq), d,
                     static_cast<float>(a.num(16)));
})

LK_EXPORT("attentionForwardF32", js_attention_forward_f32);
LK_EXPORT("attentionBackwardF32", js_attention_backward_f32);

}  // namespace lk
