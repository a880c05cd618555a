// fp32 GEMM for the CPU backend: C = alpha * op(A) · op(B) + beta * C (+ bias), batched, with A and/or
// B stored as bf16 (frozen weights) and widened while packing. No external BLAS.
//
// Design (as BLIS/OpenBLAS): for each KC x NC block of op(B) (packed once, shared by the team) and each
// MC x KC block of op(A) (packed, double-buffered), a register-blocked micro-kernel computes MR x NR
// C tiles from MR-row panels of A and NR-column panels of B. Threads claim tiles from a shared
// counter. Shapes where packing does not pay take other routes: few rows of C against a row-stored W
// (decode, x·Wᵀ) are dot products; skinny operands (LoRA's rank-r sides) are read in place by the same
// micro-kernel; many small batch items run one per thread.
//
// This file is written once for every kernel path: the register block (MR, NR), cache blocks (KC, MC,
// NC), the micro-kernel and the panel packing come from the path's isa/<path>/gemm_kernel.h, the
// vectorized dot-product and axpy routes use lk::simd.
//
// Backward of C = A·B (what matmul/linear in src/ops/matmul.ts call): dA = dC·Bᵀ and dB = Aᵀ·dC, i.e.
// this same kernel with the transposes flipped; forward saves A (for dB) and B (for dA) only.
//
// Shapes: A [M, K] ([K, M] with transA), B [K, N] ([N, K] with transB), C [M, N], bias [N], per item.
#include "gemm.h"

#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "bf16.h"
#include "gemm_kernel.h"
#include "napi_util.h"
#include "parallel.h"
#include "simd.h"

namespace lk {
namespace {

using gemm_detail::KC;
using gemm_detail::kNarrowN;
using gemm_detail::MC;
using gemm_detail::MR;
using gemm_detail::NC;
using gemm_detail::NR;
using gemm_detail::pack_a_rows;
using gemm_detail::pack_a_step;
using gemm_detail::pack_b_cols;
using gemm_detail::pack_b_step;
using gemm_detail::Tile;
using gemm_detail::ukernel;

// Shapes with at most this many rows (columns) take the dot-product path instead of packing.
constexpr int64_t kSmallM = 8;
constexpr int64_t kSmallN = 4;

// A 2-D operand X(i, j) = p[i * rs + j * cs]; one of rs, cs is 1 (row-major or transposed).
template <typename T>
struct View {
  const T* p;
  int64_t rs, cs;
};

inline float load_f32(const float* p) { return *p; }
inline float load_f32(const uint16_t* p) { return bf16_to_f32(*p); }

// fn(begin, end) over [0, n): on all threads when `threads` > 1, else inline on the calling thread
// (one item of a batch that is already spread over the team).
template <typename Fn>
void split(int64_t n, int64_t grain, int threads, Fn&& fn) {
  if (threads > 1) parallel_for(n, grain, fn);
  else if (n > 0) fn(int64_t(0), n);
}

// Reusable scratch per thread: OpenMP threads persist, so packing buffers are allocated once instead
// of paying mmap and page faults on every call. Whole 2 MiB pages, advised huge: packed blocks are
// walked with large strides and would otherwise miss the TLB.
struct Scratch {
  float* p = nullptr;
  size_t n = 0;
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(p); }
  float* get(size_t want) {
    if (want > n) {
      std::free(p);
      p = nullptr;
      n = 0;
      constexpr size_t kPage = size_t(2) << 20;
      size_t bytes = (want * sizeof(float) + kPage - 1) / kPage * kPage;
      p = static_cast<float*>(std::aligned_alloc(kPage, bytes));
      if (!p) throw std::runtime_error("out of memory for GEMM packing buffers");
      madvise(p, bytes, MADV_HUGEPAGE);
      n = bytes / sizeof(float);
    }
    return p;
  }
};
thread_local Scratch tl_bpack, tl_apack, tl_temp, tl_ct;

// ---- packing (the per-path panel routines of gemm_kernel.h, split over a team) -------------------
// Packed A panel (MR rows): dst[k * MR + r] = A(i0 + r, k0 + k), rows past the block are 0.
// Packed B panel (NR cols): dst[k * NR + j] = B(k0 + k, j0 + j), cols past the block are 0.
// Thread tid of nt packs its share of panels [p0, p1) of the mc-row (nc-col) block at i0 (j0). When
// the panel's rows run along the operand's contiguous dimension (transposed A, row-major B), k is the
// outer loop so each k reads one contiguous run; going panel by panel would touch a new page per k.
// One of rs, cs is always 1, so the two cases cover every view.

template <typename T>
void pack_a(float* dst, View<T> A, int64_t i0, int64_t mc, int64_t k0, int64_t kc, int64_t p0, int64_t p1, int tid,
            int nt) {
  if (A.rs == 1) {  // threads split k here, so each reads whole runs of the block's rows
    for (int64_t k = kc * tid / nt; k < kc * (tid + 1) / nt; k++) {
      const T* src = A.p + (k0 + k) * A.cs + i0;
      for (int64_t p = p0; p < p1; p++) pack_a_step(dst + p * kc * MR + k * MR, src + p * MR, mc - p * MR);
    }
    return;
  }
  int64_t np = p1 - p0;
  for (int64_t p = p0 + np * tid / nt; p < p0 + np * (tid + 1) / nt; p++)
    pack_a_rows(dst + p * kc * MR, A.p + (i0 + p * MR) * A.rs + k0, A.rs, std::min<int64_t>(MR, mc - p * MR), kc);
}

template <typename T>
void pack_b(float* dst, View<T> B, int64_t k0, int64_t kc, int64_t j0, int64_t nc, int64_t p0, int64_t p1, int tid,
            int nt) {
  int64_t np = p1 - p0;
  int64_t q0 = p0 + np * tid / nt, q1 = p0 + np * (tid + 1) / nt;
  if (B.cs == 1) {
    for (int64_t k = 0; k < kc; k++) {
      const T* src = B.p + (k0 + k) * B.rs + j0;
      for (int64_t p = q0; p < q1; p++) pack_b_step(dst + p * kc * NR + k * NR, src + p * NR, nc - p * NR);
    }
    return;
  }
  // transposed B (x·Wᵀ): column j of B is row j of W, contiguous in k
  for (int64_t p = q0; p < q1; p++)
    pack_b_cols(dst + p * kc * NR, B.p + (j0 + p * NR) * B.cs + k0, B.cs, std::min<int64_t>(NR, nc - p * NR), kc);
}

// ---- blocked driver -----------------------------------------------------------------------------
// K is cut into equal blocks of at most KC, so K = KC + 1 does not leave a 1-deep block.
inline int64_t k_block(int64_t K) {
  int64_t blocks = (K + KC - 1) / KC;
  return (K + blocks - 1) / blocks;
}

// M likewise, in multiples of MR: M = 130 is two blocks of 70, not 112 + 18.
inline int64_t m_block(int64_t M) {
  int64_t blocks = (M + MC - 1) / MC;
  int64_t rows = (M + blocks - 1) / blocks;
  return std::min(MC, (rows + MR - 1) / MR * MR);
}

// Shared by a team: work counters for the tiles of the current A block (two, alternating per block).
struct Team {
  std::atomic<int64_t> next[2];
};

struct Plan {
  bool direct_a;  // full A panels are read in place (A is f32 and N small: packing A would not pay)
  bool direct_b;  // full B panels are read in place (B is row-major f32 and M fits one A block)
};

// One GEMM C[M, N] (row stride ldc) = alpha op(A) op(B) + beta C + bias, run by `nt` threads (this is
// `tid`) sharing the packed blocks; team == nullptr when the calling thread runs it alone.
// bpack: k_block(K) x min(NC, N rounded up to NR) floats; apack: 2 x MC x k_block(K) floats (double
// buffered, so one barrier per A block suffices).
template <typename TA, typename TB>
void gemm_blocked(float* C, int64_t ldc, View<TA> A, View<TB> B, int64_t M, int64_t N, int64_t K, float alpha,
                  float beta, const float* bias, Plan plan, float* bpack, float* apack, int tid, int nt, Team* team) {
  auto barrier = [&] {
    if (team) {
#pragma omp barrier
    }
  };
  const int64_t kcb = k_block(K), mcb = m_block(M);
  int64_t iter = 0;
  for (int64_t jc = 0; jc < N; jc += NC) {
    int64_t nc = std::min(NC, N - jc);
    int64_t npanels = (nc + NR - 1) / NR;
    // With direct B only a partial last panel is packed (reading it in place would overrun B).
    int64_t bfirst = plan.direct_b ? nc / NR : 0;
    for (int64_t pc = 0; pc < K; pc += kcb) {
      int64_t kc = std::min(kcb, K - pc);
      Tile tile{nullptr, ldc, 0, 0, alpha, pc == 0 ? beta : 1.f, nullptr};
      barrier();  // everyone is done with the previous B block
      pack_b(bpack, B, pc, kc, jc, nc, bfirst, npanels, tid, nt);
      for (int64_t ic = 0; ic < M; ic += mcb, iter++) {
        int64_t mc = std::min(mcb, M - ic);
        int64_t mpanels = (mc + MR - 1) / MR;
        int64_t afirst = plan.direct_a ? mc / MR : 0;
        float* ab = apack + (iter & 1) * MC * kcb;
        pack_a(ab, A, ic, mc, pc, kc, afirst, mpanels, tid, nt);
        barrier();  // packed A and B complete; everyone is past the previous A block
        // Tiles in jr-major order (a B micro-panel is reused across a run of ir), claimed in chunks
        // from a shared counter so a thread slowed by other load on its core does not hold the team.
        int64_t tiles = npanels * mpanels;
        int64_t chunk = std::max<int64_t>(1, std::min(mpanels, tiles / (4 * nt)));
        int64_t nchunks = (tiles + chunk - 1) / chunk;
        if (team && tid == 0) team->next[(iter + 1) & 1].store(0, std::memory_order_relaxed);
        for (int64_t c = team ? team->next[iter & 1].fetch_add(1) : 0; c < nchunks;
             c = team ? team->next[iter & 1].fetch_add(1) : c + 1) {
          for (int64_t t = c * chunk; t < std::min(tiles, (c + 1) * chunk); t++) {
            int64_t jr = t / mpanels, ir = t % mpanels;
            tile.n = static_cast<int>(std::min<int64_t>(NR, nc - jr * NR));
            tile.m = static_cast<int>(std::min<int64_t>(MR, mc - ir * MR));
            tile.c = C + (ic + ir * MR) * ldc + jc + jr * NR;
            tile.bias = bias && pc == 0 ? bias + jc + jr * NR : nullptr;
            const float* bp;
            int64_t bstep;
            if (jr >= bfirst) {
              bp = bpack + jr * kc * NR;
              bstep = NR;
            } else {  // direct_b implies TB == float
              bp = reinterpret_cast<const float*>(B.p) + pc * B.rs + jc + jr * NR;
              bstep = B.rs;
            }
            const float* ap = ab + ir * kc * MR;
            int64_t astep = MR;
            bool rows = false;
            if (ir < afirst) {  // direct_a implies TA == float
              rows = A.cs == 1;
              ap = reinterpret_cast<const float*>(A.p) + (rows ? (ic + ir * MR) * A.rs + pc : pc * A.cs + ic + ir * MR);
              astep = rows ? A.rs : A.cs;
            }
            if (tile.n > kNarrowN) {
              if (rows) ukernel<true, false>(kc, ap, astep, bp, bstep, tile);
              else ukernel<false, false>(kc, ap, astep, bp, bstep, tile);
            } else {
              if (rows) ukernel<true, true>(kc, ap, astep, bp, bstep, tile);
              else ukernel<false, true>(kc, ap, astep, bp, bstep, tile);
            }
          }
        }
      }
    }
  }
}

// ---- dot-product and axpy paths: few rows (decode) or few columns -------------------------------
// out(r, w) = alpha * <x_r, W_w> + beta * out(r, w) + bias(r, w) for r < R, w in [w0, w1), where
// out(r, w) = out[r * ors + w * ocs], bias(r, w) = bias[r * brs + w * bws] (or none), x_r f32 rows of
// length K and W_w rows of W (contiguous in k). Four W rows at a time, so R x 4 accumulators.
struct DotOut {
  float* out;
  int64_t ors, ocs;
  const float* bias;
  int64_t brs, bws;
  float alpha, beta;
  void put(int r, int64_t w, float acc) const {
    float* o = out + r * ors + w * ocs;
    float v = alpha * acc + (bias ? bias[r * brs + w * bws] : 0.f);
    *o = beta == 0.f ? v : v + beta * *o;
  }
};

template <int R, typename TW>
void dot_block(const DotOut& o, const float* const* x, View<TW> W, int64_t w0, int64_t w1, int64_t K) {
  using simd::F;
  constexpr int64_t L = simd::kLanes;
  int64_t w = w0;
  for (; w + 4 <= w1; w += 4) {
    F acc[R][4];
    for (int r = 0; r < R; r++)
      for (int q = 0; q < 4; q++) acc[r][q] = simd::zero();
    const TW* wr[4] = {W.p + w * W.rs, W.p + (w + 1) * W.rs, W.p + (w + 2) * W.rs, W.p + (w + 3) * W.rs};
    auto step = [&](int64_t k, F (&wv)[4], auto xload) {
      for (int r = 0; r < R; r++) {
        F xv = xload(x[r] + k);
        for (int q = 0; q < 4; q++) acc[r][q] = simd::fma(xv, wv[q], acc[r][q]);
      }
    };
    int64_t k = 0;
    for (; k + L <= K; k += L) {
      F wv[4] = {simd::load(wr[0] + k), simd::load(wr[1] + k), simd::load(wr[2] + k), simd::load(wr[3] + k)};
      step(k, wv, [](const float* p) { return simd::load(p); });
    }
    if (k < K) {  // the first K - k lanes; the rest are 0 on both sides
      int64_t n = K - k;
      F wv[4] = {simd::load(wr[0] + k, n), simd::load(wr[1] + k, n), simd::load(wr[2] + k, n),
                 simd::load(wr[3] + k, n)};
      step(k, wv, [n](const float* p) { return simd::load(p, n); });
    }
    for (int r = 0; r < R; r++)
      for (int q = 0; q < 4; q++) o.put(r, w + q, simd::sum(acc[r][q]));
  }
  for (; w < w1; w++) {
    F acc[R];
    for (int r = 0; r < R; r++) acc[r] = simd::zero();
    const TW* wr = W.p + w * W.rs;
    int64_t k = 0;
    for (; k + L <= K; k += L) {
      F wv = simd::load(wr + k);
      for (int r = 0; r < R; r++) acc[r] = simd::fma(simd::load(x[r] + k), wv, acc[r]);
    }
    if (k < K) {
      F wv = simd::load(wr + k, K - k);
      for (int r = 0; r < R; r++) acc[r] = simd::fma(simd::load(x[r] + k, K - k), wv, acc[r]);
    }
    for (int r = 0; r < R; r++) o.put(r, w, simd::sum(acc[r]));
  }
}

// All rows of W against `rows` x rows, in groups of up to 4 x rows; threads split W's rows.
template <typename TW>
void dot_rows(DotOut o, const float* const* x, int64_t rows, View<TW> W, int64_t nw, int64_t K, int threads) {
  split((nw + 3) / 4, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(K * rows, 1)), threads,
        [&](int64_t s, int64_t e) {
          for (int64_t r0 = 0; r0 < rows; r0 += 4) {
            DotOut og = o;
            og.out += r0 * o.ors;
            if (og.bias) og.bias += r0 * o.brs;
            const float* const* xg = x + r0;
            int64_t w0 = 4 * s, w1 = std::min(nw, 4 * e);
            switch (std::min<int64_t>(4, rows - r0)) {
              case 1: dot_block<1>(og, xg, W, w0, w1, K); break;
              case 2: dot_block<2>(og, xg, W, w0, w1, K); break;
              case 3: dot_block<3>(og, xg, W, w0, w1, K); break;
              default: dot_block<4>(og, xg, W, w0, w1, K); break;
            }
          }
        });
}

// y[j] = alpha * sum_k v[k] X(k, j) + beta * y[j] + bias[j] (j < N), X rows contiguous in j: each
// thread owns a slice of y kept in L1 while the slice's columns of X stream past once.
template <typename T>
void gemv_axpy(float* y, View<T> X, const float* v, int64_t N, int64_t K, float alpha, float beta, const float* bias,
               int threads) {
  constexpr int64_t kSlice = 1024;
  int64_t slices = (N + kSlice - 1) / kSlice;
  split(slices, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(K * kSlice, 1)), threads, [&](int64_t s, int64_t e) {
    alignas(64) float acc[kSlice];
    for (int64_t sl = s; sl < e; sl++) {
      int64_t j0 = sl * kSlice, n = std::min(kSlice, N - j0);
      for (int64_t j = 0; j < n; j++) acc[j] = 0.f;
      int64_t k = 0;
      // Four rows of X per pass over the slice: a quarter of the accumulator loads and stores.
      constexpr int64_t L = simd::kLanes;
      for (; k + 4 <= K; k += 4) {
        simd::F v0 = simd::set1(v[k]), v1 = simd::set1(v[k + 1]);
        simd::F v2 = simd::set1(v[k + 2]), v3 = simd::set1(v[k + 3]);
        const T* x = X.p + k * X.rs + j0;
        auto step = [&](int64_t j, auto ld, auto st) {
          simd::F s0 = simd::fma(v0, ld(x + j), ld(acc + j));
          simd::F s1 = v1 * ld(x + X.rs + j);
          s0 = simd::fma(v2, ld(x + 2 * X.rs + j), s0);
          s1 = simd::fma(v3, ld(x + 3 * X.rs + j), s1);
          st(acc + j, s0 + s1);
        };
        int64_t j = 0;
        for (; j + L <= n; j += L)
          step(j, [](auto* p) { return simd::load(p); }, [](float* p, simd::F s) { simd::store(p, s); });
        if (j < n) {
          int64_t t = n - j;
          step(j, [t](auto* p) { return simd::load(p, t); }, [t](float* p, simd::F s) { simd::store(p, s, t); });
        }
      }
      for (; k < K; k++) {
        float vk = v[k];
        const T* x = X.p + k * X.rs + j0;
        for (int64_t j = 0; j < n; j++) acc[j] += vk * load_f32(x + j);
      }
      float* yj = y + j0;
      for (int64_t j = 0; j < n; j++) {
        float r = alpha * acc[j] + (bias ? bias[j0 + j] : 0.f);
        yj[j] = beta == 0.f ? r : r + beta * yj[j];
      }
    }
  });
}

// C = beta * C + bias (K == 0 or alpha == 0); beta == 0 writes without reading C.
void scale_c(float* C, int64_t ldc, int64_t M, int64_t N, float beta, const float* bias) {
  constexpr int64_t L = simd::kLanes;
  simd::F vb = simd::set1(beta);
  for (int64_t i = 0; i < M; i++) {
    float* c = C + i * ldc;
    for (int64_t j = 0; j < N; j += L) {
      int64_t n = N - j;
      simd::F v = beta == 0.f ? simd::zero() : vb * simd::load(c + j, n);
      if (bias) v += simd::load(bias + j, n);
      simd::store(c + j, v, n);
    }
  }
}

// Rows [0, n) of op-operand X(r, k) (k < K) as f32 row pointers: in place when X is f32 with rows
// contiguous in k, else widened/gathered into `temp` (n x K floats).
template <typename T>
void rows_f32(const float** out, View<T> X, int64_t n, int64_t K, float* temp) {
  if (std::is_same<T, float>::value && X.cs == 1) {
    for (int64_t r = 0; r < n; r++) out[r] = reinterpret_cast<const float*>(X.p + r * X.rs);
    return;
  }
  for (int64_t r = 0; r < n; r++) {
    for (int64_t k = 0; k < K; k++) temp[r * K + k] = load_f32(X.p + r * X.rs + k * X.cs);
    out[r] = temp + r * K;
  }
}

// ---- one batch item, any shape -------------------------------------------------------------------
// `threads` > 1 lets this call use the whole team; 1 runs it on the calling thread only.
template <typename TA, typename TB>
void gemm_one(float* C, View<TA> A, View<TB> B, int64_t M, int64_t N, int64_t K, float alpha, float beta,
              const float* bias, int threads) {
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.f) {
    scale_c(C, N, M, N, beta, bias);
    return;
  }
  // Few rows of C and W stored row by row (x·Wᵀ, decode): dot products stream W once per 4 rows.
  if (M <= kSmallM && B.rs == 1) {
    const float* x[kSmallM];
    rows_f32(x, A, M, K, tl_temp.get(M * K));
    dot_rows(DotOut{C, N, 1, bias, 0, 1, alpha, beta}, x, M, View<TB>{B.p, B.cs, 1}, N, K, threads);
    return;
  }
  // One row of C against row-major B: axpy of B's rows.
  if (M == 1 && B.cs == 1) {
    const float* x[1];
    rows_f32(x, A, 1, K, tl_temp.get(K));
    gemv_axpy(C, B, x[0], N, K, alpha, beta, bias, threads);
    return;
  }
  // Few columns of C and A stored row by row: each C row is a dot product per column of op(B).
  if (N <= kSmallN && A.cs == 1) {
    const float* x[kSmallN];
    rows_f32(x, View<TB>{B.p, B.cs, B.rs}, N, K, tl_temp.get(N * K));
    dot_rows(DotOut{C, 1, N, bias, 1, 0, alpha, beta}, x, N, A, M, K, threads);
    return;
  }
  // One column of C from transposed A: axpy of A's stored rows.
  if (N == 1 && A.rs == 1) {
    const float* x[1];
    rows_f32(x, View<TB>{B.p, B.cs, B.rs}, 1, K, tl_temp.get(K));
    float b = bias ? bias[0] : 0.f;
    std::vector<float> bias_col(bias ? M : 0, b);
    gemv_axpy(C, View<TA>{A.p, A.cs, 1}, x[0], M, K, alpha, beta, bias ? bias_col.data() : nullptr, threads);
    return;
  }
  // Few rows of C against many columns of a transposed f32 B (LoRA's rank-r sides: A·xᵀ, Bᵀ·gᵀ): packing
  // op(B) would copy all of it for a few rows of work, and a panel of MR rows would be mostly padding.
  // Cᵀ = op(B)ᵀ·op(A)ᵀ is the skinny-N case instead, which reads op(B) in place; it goes to scratch and
  // is transposed into C. (A row-major B is read in place already: direct_b below.)
  if (std::is_same<TB, float>::value && B.rs == 1 && M <= 2 * NR && N > 4 * NR) {
    float* ct = tl_ct.get(N * M);
    gemm_one(ct, View<TB>{B.p, B.cs, B.rs}, View<TA>{A.p, A.cs, A.rs}, N, M, K, alpha, 0.f, nullptr, threads);
    constexpr int64_t kCols = 16;  // columns of C per pass: ct's kCols rows stay in L1 across C's rows
    split((N + kCols - 1) / kCols, std::max<int64_t>(1, 4096 / std::max<int64_t>(M * kCols, 1)), threads,
          [&](int64_t s, int64_t e) {
            for (int64_t j0 = s * kCols; j0 < std::min(N, e * kCols); j0 += kCols) {
              const int64_t j1 = std::min(N, j0 + kCols);
              for (int64_t i = 0; i < M; i++) {
                float* c = C + i * N;
                for (int64_t j = j0; j < j1; j++) {
                  float v = ct[j * M + i] + (bias ? bias[j] : 0.f);
                  c[j] = beta == 0.f ? v : v + beta * c[j];
                }
              }
            }
          });
    return;
  }
  Plan plan{std::is_same<TA, float>::value && N <= 2 * NR,
            std::is_same<TB, float>::value && B.cs == 1 && M <= MC};
  float* bpack = tl_bpack.get(k_block(K) * std::min(NC, (N + NR - 1) / NR * NR));
  float* apack = tl_apack.get(2 * MC * k_block(K));
  // Too little work to pay for waking the team.
  if (static_cast<double>(M) * N * K < 64.0 * 64 * 64) threads = 1;
  if (threads <= 1) {
    gemm_blocked(C, N, A, B, M, N, K, alpha, beta, bias, plan, bpack, apack, 0, 1, nullptr);
    return;
  }
  Team team;
  team.next[0] = 0;
  team.next[1] = 0;
#pragma omp parallel num_threads(threads)
  gemm_blocked(C, N, A, B, M, N, K, alpha, beta, bias, plan, bpack, apack, omp_get_thread_num(),
               omp_get_num_threads(), &team);
}

}  // namespace

template <typename TA, typename TB>
void gemm(float* C, const TA* A, const TB* B, const float* bias, int64_t batch, int64_t M, int64_t N, int64_t K,
          bool transA, bool transB, float alpha, float beta, int64_t strideA, int64_t strideB, int64_t strideC) {
  if (batch <= 0) return;
  // A shared B with row-major A and C: the batch is just more rows of one GEMM.
  if (batch > 1 && strideB == 0 && !transA && strideA == M * K && strideC == M * N) {
    M *= batch;
    batch = 1;
  }
  View<TA> a = transA ? View<TA>{A, 1, M} : View<TA>{A, K, 1};
  View<TB> b = transB ? View<TB>{B, 1, K} : View<TB>{B, N, 1};
  int threads = num_threads();
  double flops = static_cast<double>(M) * N * K;
  // Many small items: one item per thread beats splitting each small GEMM across the team.
  if (batch >= threads && threads > 1 && (flops < 256.0 * 256 * 256 || batch >= 4 * threads)) {
    std::exception_ptr error;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t i = 0; i < batch; i++) {
      try {
        gemm_one(C + i * strideC, View<TA>{a.p + i * strideA, a.rs, a.cs}, View<TB>{b.p + i * strideB, b.rs, b.cs}, M,
                 N, K, alpha, beta, bias, 1);
      } catch (...) {
#pragma omp critical(lk_gemm_error)
        error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    return;
  }
  for (int64_t i = 0; i < batch; i++)
    gemm_one(C + i * strideC, View<TA>{a.p + i * strideA, a.rs, a.cs}, View<TB>{b.p + i * strideB, b.rs, b.cs}, M, N,
             K, alpha, beta, bias, threads);
}

template void gemm<float, float>(float*, const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t,
                                 bool, bool, float, float, int64_t, int64_t, int64_t);
template void gemm<float, uint16_t>(float*, const float*, const uint16_t*, const float*, int64_t, int64_t, int64_t,
                                    int64_t, bool, bool, float, float, int64_t, int64_t, int64_t);
template void gemm<uint16_t, float>(float*, const uint16_t*, const float*, const float*, int64_t, int64_t, int64_t,
                                    int64_t, bool, bool, float, float, int64_t, int64_t, int64_t);
template void gemm<uint16_t, uint16_t>(float*, const uint16_t*, const uint16_t*, const float*, int64_t, int64_t,
                                       int64_t, int64_t, bool, bool, float, float, int64_t, int64_t, int64_t);

}  // namespace lk

// ---- N-API ----------------------------------------------------------------------------------------
namespace lk {
namespace {

// Whether argument i is a Uint16Array (bf16 bits); anything else is checked as a Float32Array.
bool is_bf16(Args& a, size_t i) {
  bool typed = false;
  napi_is_typedarray(a.env, a.raw(i), &typed);
  if (!typed) return false;
  napi_typedarray_type type;
  napi_get_typedarray_info(a.env, a.raw(i), &type, nullptr, nullptr, nullptr, nullptr);
  return type == napi_uint16_array;
}

// Elements a batch of `batch` items `stride` apart, each `size` long, spans.
int64_t span(int64_t batch, int64_t stride, int64_t size) { return size == 0 ? 0 : (batch - 1) * stride + size; }

}  // namespace

// gemm(C, A, B, bias | null, batch, M, N, K, transA, transB, alpha, beta, strideA, strideB, strideC)
// C: Float32Array; A, B: Float32Array (f32) or Uint16Array (bf16 bits); bias: Float32Array [N] or null.
LK_ENTRY(js_gemm, 15, {
  int64_t batch = a.int64(4), M = a.int64(5), N = a.int64(6), K = a.int64(7);
  bool transA = a.boolean(8), transB = a.boolean(9);
  float alpha = static_cast<float>(a.num(10)), beta = static_cast<float>(a.num(11));
  int64_t sA = a.int64(12), sB = a.int64(13), sC = a.int64(14);
  if (batch < 0 || M < 0 || N < 0 || K < 0) throw ArgError("negative size");
  if (sA < 0 || sB < 0 || sC < 0) throw ArgError("negative batch stride");
  if (batch > 1 && M * N > 0 && sC < M * N) throw ArgError("strideC is smaller than one output item (M * N)");
  if (batch == 0) return undefined(env);
  float* C = a.f32(0, span(batch, sC, M * N));
  const float* bias = a.absent(3) ? nullptr : a.f32(3, N);
  size_t nA = span(batch, sA, M * K), nB = span(batch, sB, K * N);
  bool bf16A = is_bf16(a, 1), bf16B = is_bf16(a, 2);
  if (!bf16A && !bf16B) gemm(C, a.f32(1, nA), a.f32(2, nB), bias, batch, M, N, K, transA, transB, alpha, beta, sA, sB, sC);
  else if (!bf16A) gemm(C, a.f32(1, nA), a.u16(2, nB), bias, batch, M, N, K, transA, transB, alpha, beta, sA, sB, sC);
  else if (!bf16B) gemm(C, a.u16(1, nA), a.f32(2, nB), bias, batch, M, N, K, transA, transB, alpha, beta, sA, sB, sC);
  else gemm(C, a.u16(1, nA), a.u16(2, nB), bias, batch, M, N, K, transA, transB, alpha, beta, sA, sB, sC);
})

LK_EXPORT("gemm", js_gemm);

}  // namespace lk
