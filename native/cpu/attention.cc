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
// index contiguous, so the inner loops are vector FMAs without horizontal reductions. The kernels are
// written once against lk::simd; attention_kernel.h gives each path's register tile.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <unordered_map>
#include <vector>

#include "attention_kernel.h"
#include "napi_util.h"
#include "parallel.h"
#include "simd.h"

namespace lk {
namespace {
namespace v = simd;
constexpr int L = v::kLanes;
using attn::kMR;
using attn::kNV;

// Query rows per block: large enough that each K/V row loaded serves many FMAs, small enough that the
// masked-out triangle a causal block computes anyway (R²/2 scores) stays a small fraction.
constexpr int64_t kRows = 32;

// Lanes [0, n) set: lane indices compared with n.
alignas(64) constexpr float kIota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static_assert(L <= 16, "kIota covers 16 lanes");
LK_INLINE v::M first(int64_t n) { return v::load(kIota) < v::set1(static_cast<float>(n)); }

// ---- GEMM micro-kernel ---------------------------------------------------------------------------
// C[M, N] (= or +=) A[M, K] · B[K, N], row-major with leading dims; A read transposed when TRANS_A
// (A[k * lda + m]). Tiles of kMR rows x kNV vectors stay in registers; each B row loaded feeds kMR
// FMAs per vector.

// One tile C[MR, w] with w <= NV * L columns; FULL when w == NV * L (no partial vector).
template <int MR, int NV, bool ACC, bool TRANS_A, bool FULL>
inline void micro(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t K,
                  int64_t w) {
  auto ld = [&](const float* p, int j) { return FULL ? v::load(p + j * L) : v::load(p + j * L, w - j * L); };
  v::F c[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) c[r][j] = ACC ? ld(C + r * ldc, j) : v::zero();
  for (int64_t k = 0; k < K; k++) {
    const float* b = B + k * ldb;
    v::F bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) bv[j] = ld(b, j);
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
      v::F a = v::set1(TRANS_A ? A[k * lda + r] : A[r * lda + k]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; j++) c[r][j] = simd::fma(a, bv[j], c[r][j]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) {
      if (FULL) v::store(C + r * ldc + j * L, c[r][j]);
      else v::store(C + r * ldc + j * L, c[r][j], w - j * L);
    }
}

// The last w < kNV * L columns: as few vectors as cover them.
template <int MR, int NV, bool ACC, bool TRANS_A>
inline void micro_tail(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t K,
                       int64_t w) {
  if constexpr (NV > 1)
    if (w <= (NV - 1) * L) return micro_tail<MR, NV - 1, ACC, TRANS_A>(C, ldc, A, lda, B, ldb, K, w);
  micro<MR, NV, ACC, TRANS_A, false>(C, ldc, A, lda, B, ldb, K, w);
}

// MR rows of C, all N columns.
template <int MR, bool ACC, bool TRANS_A>
void micro_row(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t N,
               int64_t K) {
  constexpr int64_t W = kNV * L;
  int64_t n0 = 0;
  for (; n0 + W <= N; n0 += W) micro<MR, kNV, ACC, TRANS_A, true>(C + n0, ldc, A, lda, B + n0, ldb, K, W);
  if (n0 < N) micro_tail<MR, kNV, ACC, TRANS_A>(C + n0, ldc, A, lda, B + n0, ldb, K, N - n0);
}

// The last m < kMR rows.
template <int MR, bool ACC, bool TRANS_A>
void micro_rows_tail(int64_t m, float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb,
                     int64_t N, int64_t K) {
  if constexpr (MR > 0) {
    if (m == MR) return micro_row<MR, ACC, TRANS_A>(C, ldc, A, lda, B, ldb, N, K);
    micro_rows_tail<MR - 1, ACC, TRANS_A>(m, C, ldc, A, lda, B, ldb, N, K);
  }
}

template <bool ACC, bool TRANS_A>
void gemm(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
          int64_t K) {
  if (M <= 0 || N <= 0) return;
  // Advancing the tile's first row m0 moves A by m0 rows, or by m0 columns when A is transposed.
  auto a_at = [&](int64_t m0) { return TRANS_A ? A + m0 : A + m0 * lda; };
  int64_t m0 = 0;
  for (; m0 + kMR <= M; m0 += kMR) micro_row<kMR, ACC, TRANS_A>(C + m0 * ldc, ldc, a_at(m0), lda, B, ldb, N, K);
  if (m0 < M) micro_rows_tail<kMR - 1, ACC, TRANS_A>(M - m0, C + m0 * ldc, ldc, a_at(m0), lda, B, ldb, N, K);
}

// ---- row helpers ---------------------------------------------------------------------------------

float row_max(const float* x, int64_t n) {
  v::F acc = v::set1(-INFINITY);
  int64_t j = 0;
  for (; j + L <= n; j += L) acc = v::max(acc, v::load(x + j));
  if (j < n) acc = v::max(acc, v::select(first(n - j), v::load(x + j, n - j), v::set1(-INFINITY)));
  return v::hmax(acc);
}

// x[j] = exp(x[j] - shift) in place; returns the sum (in double: rows can be long).
double exp_shift_sum(float* x, int64_t n, float shift) {
  const v::F s = v::set1(shift);
  v::F acc = v::zero();
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    v::F e = v::exp(v::load(x + j) - s);
    v::store(x + j, e);
    acc += e;
  }
  if (j < n) {
    v::F e = v::select(first(n - j), v::exp(v::load(x + j, n - j) - s), v::zero());
    v::store(x + j, e, n - j);
    acc += e;
  }
  return v::sum(acc);
}

float dot(const float* a, const float* b, int64_t n) {
  v::F acc = v::zero();
  int64_t j = 0;
  for (; j + L <= n; j += L) acc = v::fma(v::load(a + j), v::load(b + j), acc);
  if (j < n) acc = v::fma(v::load(a + j, n - j), v::load(b + j, n - j), acc);
  return v::sum(acc);
}

// x[0..n) *= f
void scale_row(float* x, int64_t n, float f) {
  const v::F fv = v::set1(f);
  for (int64_t j = 0; j < n; j += L) v::store(x + j, v::load(x + j, n - j) * fv, n - j);
}

// ---- shared setup --------------------------------------------------------------------------------

struct Dims {
  int64_t B, Tq, Tk, Hq, Hkv, D;
  int64_t group() const { return Hq / Hkv; }
  int64_t offset() const { return Tk - Tq; }  // key position of query row 0
  int64_t blocks() const { return (Tq + kRows - 1) / kRows; }
};

// Per key position p of batch row b, from segments[b, Tk]:
//   first[b, p]: the first key index whose segment id equals segments[b, p]; no key before it can be
//     attended from position p, so a block's key range starts at its rows' smallest `first`.
//   span[b, p]: the start of p's run of equal ids when that run is the id's first, so that position p
//     sees exactly the keys [span, p] (the usual case, masked with vector fills); -1 when the id
//     occurred before with a gap (the row's mask is then built key by key).
struct SegmentIndex {
  std::vector<int64_t> first, span;
};

SegmentIndex index_segments(const int32_t* seg, const Dims& d) {
  SegmentIndex ix{std::vector<int64_t>(d.B * d.Tk), std::vector<int64_t>(d.B * d.Tk)};
  std::unordered_map<int32_t, int64_t> seen;
  for (int64_t b = 0; b < d.B; b++) {
    seen.clear();
    const int32_t* sg = seg + b * d.Tk;
    int64_t run = 0;
    for (int64_t p = 0; p < d.Tk; p++) {
      if (p > 0 && sg[p] != sg[p - 1]) run = p;
      int64_t f = seen.emplace(sg[p], p).first->second;
      ix.first[b * d.Tk + p] = f;
      ix.span[b * d.Tk + p] = f == run ? run : -1;
    }
  }
  return ix;
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
void mask_scale(float* S, const Block& k, const int32_t* seg_b, const int64_t* span_b, const Dims& d, float scale) {
  int64_t n = k.hi - k.lo;
  for (int64_t r = 0; r < k.rows; r++) {
    int64_t p = d.offset() + k.i0 + r;
    int32_t sp = seg_b[p];
    float* s = S + r * n;
    int64_t last = p - k.lo;  // keys after the row's own position are in the future
    if (sp == 0) {            // padding sees nothing
      std::fill(s, s + n, -INFINITY);
    } else if (span_b[p] >= 0) {  // keys [span, p] exactly: lo <= span and p < hi, as the block covers them
      int64_t a = span_b[p] - k.lo;
      std::fill(s, s + a, -INFINITY);
      scale_row(s + a, last + 1 - a, scale);
      std::fill(s + last + 1, s + n, -INFINITY);
    } else {
      const int32_t* sg = seg_b + k.lo;
      for (int64_t j = 0; j < n; j++) s[j] = (j <= last && sg[j] == sp) ? s[j] * scale : -INFINITY;
    }
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
  const SegmentIndex ix = index_segments(seg, d);
  const std::vector<float> kt = d.Tq >= kTransposeMinRows ? transpose_kv(k, d) : std::vector<float>();
  const int64_t nblk = d.blocks(), G = d.group(), ldq = d.Hq * d.D, ldkv = d.Hkv * d.D;
  parallel_for(d.B * d.Hq * nblk, 1, [&](int64_t s, int64_t e) {
    std::vector<float> S(kRows * d.Tk);
    float inv[kRows];
    for (int64_t u = s; u < e; u++) {
      int64_t bh = u / nblk, b = bh / d.Hq, h = bh % d.Hq, hk = h / G;
      const int32_t* seg_b = seg + b * d.Tk;
      Block blk = block_range(seg_b, ix.first.data() + b * d.Tk, d, balanced(u % nblk, nblk));
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
      mask_scale(S.data(), blk, seg_b, ix.span.data() + b * d.Tk, d, scale);
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
      for (int64_t r = 0; r < blk.rows; r++) scale_row(o + r * ldq, d.D, inv[r]);
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
  const SegmentIndex ix = index_segments(seg, d);
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
          Block blk = block_range(seg_b, ix.first.data() + b * d.Tk, d, bi);
          int64_t row0 = ((b * d.Tq + blk.i0) * d.Hq + h) * d.D;
          int64_t n = blk.hi - blk.lo;
          if (n == 0) {
            for (int64_t r = 0; r < blk.rows; r++) std::fill(dq + row0 + r * ldq, dq + row0 + r * ldq + d.D, 0.f);
            continue;
          }
          const float* lrow = lse + (b * d.Hq + h) * d.Tq + blk.i0;
          // P[rows, n] = exp(mask(Q·Kᵀ)·scale − lse): the forward probabilities, rebuilt.
          scores(P.data(), q + row0, ldq, ktb, nullptr, 0, blk, d);
          mask_scale(P.data(), blk, seg_b, ix.span.data() + b * d.Tk, d, scale);
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
            const v::F di = v::set1(Di[r]), sc = v::set1(scale);
            for (int64_t j = 0; j < n; j += L)
              v::store(sr + j, v::load(pr + j, n - j) * (v::load(sr + j, n - j) - di) * sc, n - j);
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
        const float* pk0 = partial.data() + (2 * (b * d.Hkv + hk) * parts * d.Tk + j) * d.D;
        const int64_t next = 2 * d.Tk * d.D;  // from one part's dK partial to the next's
        for (int64_t c = 0; c < d.D; c += L) {
          v::F sk = v::zero(), sv = v::zero();
          for (int64_t p = 0; p < parts; p++) {
            sk += v::load(pk0 + p * next + c, d.D - c);
            sv += v::load(pk0 + p * next + d.Tk * d.D + c, d.D - c);
          }
          v::store(ok + c, sk, d.D - c);
          v::store(ov + c, sv, d.D - c);
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
