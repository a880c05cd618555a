// Causal self-attention with grouped-query heads (GQA), padding and packed sequences, forward and
// backward, flash-attention style: no [T, T] score matrix ever exists. Forward saves only the per-row
// logsumexp; backward recomputes the probabilities from it (FlashAttention-2's algorithm).
//
// Layouts (token-major, as the q/k/v projections produce them, so no transposes):
//   q, out, dout [B, Tq, Hq, D]; k, v [B, Tk, Hkv, D] bf16; segments [B, Tk] i32; lse [B, Hq, Tq] f32.
// Query row i sits at key position p = Tk − Tq + i. It attends to key j iff j ≤ p and
// segments[b, j] == segments[b, p] != 0 (0 marks padding). Query head h reads kv head h / (Hq / Hkv).
// A padded query row outputs zeros, has lse = −inf and gets zero gradient.
//   forward:  S = scale · Q Kᵀ (masked), P = softmax(S), O = P V, lse = log Σ exp S
//   backward: Δ = rowsum(dO ∘ O), P = exp(S − lse), dV = Pᵀ dO, dP = dO Vᵀ, dS = P ∘ (dP − Δ),
//             dQ = scale · dS K, dK = scale · dSᵀ Q
//
// Tensor-core path (bf16, D = 64 or 128, 16-byte aligned tensors): mma.sync m16n8k16 with fp32
// accumulators, 8 warps of 16 rows per block, every fragment loaded with ldmatrix. K/V (forward) and
// Q/dO (backward) tiles of 64 rows are copied with cp.async into two shared-memory stages, so the next
// tile lands while the current one is computed. Forward: one block per (128 query rows, query head);
// the probabilities go from accumulator registers straight into the A operand of P·V. Backward: one
// block per (128 keys, query head), dK and dV accumulating in registers (with GQA as fp32 partials per
// query head, summed over each group by a small reduction afterwards); dQ is accumulated in fp32 with
// float4 atomics and converted at the end. Tiles that no row can see (causality, other packed
// sequences) are skipped per block and per warp, which makes packed sequences cost what their own
// lengths cost.
// CUDA-core path (attention_generic.cu): f32 inputs, any other D ≤ 256, unaligned tensors, and
// attention_set_force_generic; one warp per query row or key row, the same masking; used for tiny
// models and as a cross-check of the tensor-core path.
#include <climits>

#include "attention_generic.cuh"
#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

bool g_force_generic = false;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ---- tensor-core kernels ----------------------------------------------------------------------------
// - Tile loads are cp.async (16-byte .cg, zero-filled past the end) into two shared-memory stages: the
//   copies of tile t+1 are issued right after the barrier that opens tile t and land while tile t is
//   computed. One barrier per tile does both jobs: tile t is complete for every thread, and every warp
//   is done reading the stage that the next copies overwrite.
// - 8 warps of 16 rows. Forward: 128 query rows per block, so each K/V tile read from L2 serves 128
//   queries (at ≈ 300 TFLOP/s, 64-row blocks would need ≈ 4.5 TB/s of K/V traffic from L2).
//   Backward: 128 keys per block, so each Q/dO tile serves 128 keys and each dQ element gets one atomic
//   add per 128 keys.
// - Every fragment comes from ldmatrix.x4 (two mma's worth per instruction): Q and K as A operands,
//   K, Q, dO as B operands of the score products, V, dO, Q, K (.trans) for the P·V-like products.
// - Masking and skipping per warp: a warp whose 16 rows see no key of a tile (the part of a diagonal
//   tile above the diagonal, another packed sequence) skips it; a tile fully visible to all 16 rows
//   skips the mask. The block processes one contiguous range of tiles, from the first key (forward)
//   or up to the last query (backward) whose segment lies in the block's segment range, so that the
//   next tile is known before the current one is computed (prefetch). With packed sequences stored as
//   contiguous runs of increasing ids (as src/train/batching.ts packs them) every tile of that range
//   holds keys (queries) of the block's segments; with other layouts a tile inside the range that no
//   row sees costs its copies and at most a fully masked pass (a warp whose rows' segment range misses
//   the tile's ids skips it); the results never depend on the layout.
// - Blocks are ordered heaviest first across all heads (grid x = head, y = tile).
// - Backward: dS goes to shared memory as dSᵀ [key][query] with one 32-bit store per value pair and is
//   read back for dQ = dS·K with ldmatrix.trans; dQ is added with 16-byte fp32 atomics (sm_90: one red
//   of 4 floats, pairs of lanes exchange halves first).
// - exp2 is one ex2.approx.ftz (exp2f adds a denormal fix-up of three instructions per call).
// - P and dS are rounded to bf16 before their products; lse is kept in natural-log units.
// - Registers: D = 128 runs 1 block (8 warps) per SM (forward 235, backward 255 registers, no spills);
//   D = 64 runs 2 blocks per SM (128 registers) unless the grid fits in one such wave (launch_tc).

// D[16×8] += A[16×16] · B[16×8], bf16 inputs, fp32 accumulators. Fragments (g = lane / 4, t = lane % 4):
// A regs {a0: (g, 2t..2t+1), a1: (g+8, 2t..), a2: (g, 2t+8..), a3: (g+8, 2t+8..)};
// B regs {b0: (k = 2t..2t+1, n = g), b1: (k = 2t+8.., n = g)}; C {c0,c1: (g, 2t..2t+1), c2,c3: (g+8, ..)}.
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// Four 8×8 bf16 matrices; lane l gives the address of row l % 8 of matrix l / 8 (16-byte aligned).
// Register i receives matrix i in the mma fragment layout (lane: row l / 4, columns 2(l % 4), +1).
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
// The same with each 8×8 matrix transposed on the way in.
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
// Fragment addresses inside a row-major bf16 tile with rows `ld` elements apart, for a 16×16 block at
// (row r0, column c0):
//   A operand [m][k] (and the x4 of a B operand stored [n][k], two n-tiles of 8 at k, k+8 each):
//     ldsm_x4 at a_addr: r[0..3] = A fragment {a0, a1, a2, a3}.
//     ldsm_x4 at bnk_addr: r[0], r[1] = b0, b1 of n-tile rows r0…r0+7; r[2], r[3] of rows r0+8…r0+15.
//   B operand stored [k][n] (row-major k × n): ldsm_x4_t at a_addr: r[0], r[1] = b0, b1 of n-tile
//     columns c0…c0+7; r[2], r[3] of columns c0+8…c0+15.
//   A operand stored transposed [k][m] (rows = k): ldsm_x4_t at bnk_addr = A fragment {a0..a3} of
//     Aᵀ's block with m = c0…c0+15, k = r0…r0+15.
__device__ __forceinline__ const bf16* a_addr(const bf16* t, int ld, int r0, int c0, int lane) {
  return t + (r0 + (lane & 15)) * ld + c0 + (lane >> 4) * 8;
}
__device__ __forceinline__ const bf16* bnk_addr(const bf16* t, int ld, int r0, int c0, int lane) {
  return t + (r0 + (lane & 7) + ((lane >> 4) << 3)) * ld + c0 + ((lane >> 3) & 1) * 8;
}

// cp.async: 16 bytes (L2 only, .cg) or 4 bytes; with pred false nothing is read and zeros are written
// (the source address must still be a valid one: callers clamp it).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool pred) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(pred ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool pred) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(pred ? 4 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// 2^x with one MUFU.EX2 (flush-to-zero; exp2f adds a range fix-up of three instructions per call for
// denormal results, which probabilities that small do not need).
__device__ __forceinline__ float ex2f(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

constexpr int FWD_BQ = 128, FWD_BK = 64;  // forward: query rows per block (8 warps × 16), keys per tile
constexpr int BWD_BK = 128, BWD_BQ = 64;  // backward: keys per block (8 warps × 16), queries per tile

template <int D>
constexpr size_t fwd_smem_bytes() {
  return size_t(FWD_BQ + 4 * FWD_BK) * (D + 8) * sizeof(bf16) + size_t(2 * FWD_BK + 4) * 4;
}
template <int D>
constexpr size_t bwd_smem_bytes() {
  return size_t(2 * BWD_BK + 4 * BWD_BQ) * (D + 8) * sizeof(bf16) + size_t(BWD_BK) * (BWD_BQ + 8) * sizeof(bf16) +
         size_t(6 * BWD_BQ + BWD_BK + 4 + 8) * 4;
}

// Forward, one block per (128 query rows, query head), 8 warps of 16 rows.
// out [B, Tq, Hq, D], lse [B, Hq, Tq] <- q, k, v, segments
// MINB: blocks per SM that the registers must allow (the launcher picks it, see launch_tc).
// Shared memory: Qs [128][KP] (each warp's own 16 rows: Q, later its output), Ks, Vs [2][64][KP],
// segk [2][64], misc [4].
template <int D, int MINB>
__global__ void __launch_bounds__(256, MINB)
    attn_fwd_tc(bf16* __restrict__ out, float* __restrict__ lse, const bf16* __restrict__ q, const bf16* __restrict__ k,
                const bf16* __restrict__ v, const int32_t* __restrict__ seg, int Tq, int Tk, int Hq, int Hkv, float scale_log2) {
  constexpr int BQ = FWD_BQ, BK = FWD_BK, KP = D + 8, CH = D / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Ks = Qs + BQ * KP;
  bf16* Vs = Ks + 2 * BK * KP;
  int* segk = reinterpret_cast<int*>(Vs + 2 * BK * KP);
  int* misc = segk + 2 * BK;  // qmin, qmax, first visible key

  const int h = blockIdx.x, b = blockIdx.z;
  const int i0 = (gridDim.y - 1 - blockIdx.y) * BQ;  // latest (longest) query blocks first
  const int kvh = h / (Hq / Hkv);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
  const int off = Tk - Tq;
  const int64_t qs = int64_t(Hq) * D, ks = int64_t(Hkv) * D;
  const bf16* qb = q + int64_t(b) * Tq * qs + int64_t(h) * D;
  const bf16* kb = k + int64_t(b) * Tk * ks + int64_t(kvh) * D;
  const bf16* vb = v + int64_t(b) * Tk * ks + int64_t(kvh) * D;
  const int32_t* sb = seg + int64_t(b) * Tk;
  const int wr0 = i0 + warp * 16;  // this warp's first query row
  bf16* Qw = Qs + warp * 16 * KP;  // this warp's rows of Qs

  // Q: each warp copies its own 16 rows (rows ≥ Tq read as zeros), so only a __syncwarp orders them.
#pragma unroll
  for (int n = 0; n < 16 * CH / 32; n++) {
    const int c = lane + 32 * n, r = c / CH, c8 = (c % CH) * 8, i = wr0 + r;
    cp_async16(Qw + r * KP + c8, qb + int64_t(i < Tq ? i : 0) * qs + c8, i < Tq);
  }
  cp_async_commit();

  int row[2], pos[2], sg[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    row[r] = wr0 + g + 8 * r;
    pos[r] = off + row[r];
    sg[r] = row[r] < Tq ? sb[pos[r]] : 0;
  }
  if (tid == 0) misc[0] = INT_MAX, misc[1] = INT_MIN, misc[2] = INT_MAX;
  __syncthreads();
#pragma unroll
  for (int r = 0; r < 2; r++)
    if (sg[r] != 0) atomicMin(&misc[0], sg[r]), atomicMax(&misc[1], sg[r]);
  // This warp's segment range over its rows (padding excluded) and whether all its rows < Tq share
  // one nonzero segment (then a tile holding only that segment, below the diagonal, needs no mask).
  int lo = INT_MAX, hi = INT_MIN;
  bool uni = true;
#pragma unroll
  for (int r = 0; r < 2; r++)
    if (row[r] < Tq) {
      if (sg[r] != 0)
        lo = min(lo, sg[r]), hi = max(hi, sg[r]);
      else
        uni = false;
    }
  const int wsmin = __reduce_min_sync(0xffffffffu, lo), wsmax = __reduce_max_sync(0xffffffffu, hi);
  const bool wuni = __all_sync(0xffffffffu, uni) && wsmin == wsmax;
  const int wpos_first = off + wr0, wpos_last = off + min(wr0 + 15, Tq - 1);
  __syncthreads();
  const int qmin = misc[0], qmax = misc[1];
  const int kend = off + min(i0 + BQ, Tq);  // keys [0, kend) can be visible to this block

  // First key that some row of the block can see: every later tile up to kend is processed.
  if (qmin <= qmax) {
    for (int c0 = 0; c0 < kend; c0 += 256) {
      const int j = c0 + tid;
      bool hit = false;
      if (j < kend) {
        const int s = sb[j];
        hit = s != 0 && s >= qmin && s <= qmax;
        if (hit) atomicMin(&misc[2], j);
      }
      if (__syncthreads_or(hit)) break;
    }
  }
  const int kfirst = misc[2];
  const int t0 = kfirst == INT_MAX ? 0 : kfirst / BK;
  const int ntiles = kfirst == INT_MAX ? 0 : (kend - 1) / BK - t0 + 1;

  // K, V rows of tile t (rows ≥ Tk zeros: V must be finite where P = 0) and their segments (0 past Tk).
  auto load_kv = [&](int t, int st) {
    const int k0 = t * BK;
#pragma unroll
    for (int n = 0; n < BK * CH / 256; n++) {
      const int c = tid + 256 * n, r = c / CH, c8 = (c % CH) * 8, j = k0 + r;
      const int64_t src = int64_t(j < Tk ? j : 0) * ks + c8;
      cp_async16(Ks + (st * BK + r) * KP + c8, kb + src, j < Tk);
      cp_async16(Vs + (st * BK + r) * KP + c8, vb + src, j < Tk);
    }
    if (tid < BK) {
      const int j = k0 + tid;
      cp_async4(segk + st * BK + tid, sb + (j < Tk ? j : 0), j < Tk);
    }
  };
  if (ntiles > 0) load_kv(t0, 0);
  cp_async_commit();

  cp_async_wait<1>();  // this thread's Q copies (the older group) have landed
  __syncwarp();
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int kt = 0; kt < D / 16; kt++) ldsm_x4(qf[kt], a_addr(Qw, KP, 0, kt * 16, lane));

  float o[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // m in log2 units (scaled scores)

  for (int it = 0; it < ntiles; it++) {
    const int st = it & 1, k0 = (t0 + it) * BK;
    cp_async_wait<0>();  // tile it (this thread's copies)
    __syncthreads();     // tile it complete for all; all warps done with tile it-1, whose stage is refilled now
    if (it + 1 < ntiles) load_kv(t0 + it + 1, st ^ 1);
    cp_async_commit();

    const bf16* Kt = Ks + st * BK * KP;
    const bf16* Vt = Vs + st * BK * KP;
    const int* sk = segk + st * BK;
    const int s_a = sk[lane], s_b = sk[lane + 32];
    const bool seen = __any_sync(0xffffffffu, (s_a != 0 && s_a >= wsmin && s_a <= wsmax) || (s_b != 0 && s_b >= wsmin && s_b <= wsmax));
    if (!seen || k0 > wpos_last) continue;  // no row of this warp sees a key of this tile
    const bool full = wuni && k0 + BK - 1 <= wpos_first && __all_sync(0xffffffffu, s_a == wsmin && s_b == wsmin);

    // S = Q Kᵀ (raw scores), 16 rows × 64 keys per warp.
    float s[BK / 8][4];
#pragma unroll
    for (int nt = 0; nt < BK / 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
    for (int kt = 0; kt < D / 16; kt++) {
#pragma unroll
      for (int np = 0; np < BK / 16; np++) {
        uint32_t kf[4];
        ldsm_x4(kf, bnk_addr(Kt, KP, np * 16, kt * 16, lane));
        mma16816(s[2 * np], qf[kt], kf[0], kf[1]);
        mma16816(s[2 * np + 1], qf[kt], kf[2], kf[3]);
      }
    }
    if (!full) {
#pragma unroll
      for (int nt = 0; nt < BK / 8; nt++) {
        const int jl = nt * 8 + tq * 2;
        const int2 sj = *reinterpret_cast<const int2*>(sk + jl);
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int r = e >> 1, sgj = (e & 1) ? sj.y : sj.x;
          if (!(k0 + jl + (e & 1) <= pos[r] && sgj == sg[r] && sg[r] != 0)) s[nt][e] = -INFINITY;
        }
      }
    }
    // Online softmax, rows g (r = 0) and g + 8 (r = 1); a row lives in the 4 lanes of a quad.
#pragma unroll
    for (int r = 0; r < 2; r++) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < BK / 8; nt++) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mn = fmaxf(m[r], mx * scale_log2);
      const float base = mn == -INFINITY ? 0.f : mn;  // a row with nothing visible yet stays at zero
      const float alpha = ex2f(m[r] - base);
      m[r] = mn;
      l[r] *= alpha;
#pragma unroll
      for (int dt = 0; dt < D / 8; dt++) o[dt][2 * r] *= alpha, o[dt][2 * r + 1] *= alpha;
#pragma unroll
      for (int nt = 0; nt < BK / 8; nt++) {
        const float p0 = ex2f(fmaf(s[nt][2 * r], scale_log2, -base)), p1 = ex2f(fmaf(s[nt][2 * r + 1], scale_log2, -base));
        s[nt][2 * r] = p0, s[nt][2 * r + 1] = p1;
        l[r] += p0 + p1;
      }
    }
    // O += P V: accumulator tiles 2kk and 2kk+1 of P form the A fragment of keys kk·16 … kk·16+15.
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++) {
      const uint32_t a[4] = {pack_bf16x2(s[2 * kk][0], s[2 * kk][1]), pack_bf16x2(s[2 * kk][2], s[2 * kk][3]),
                             pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; dp++) {
        uint32_t vf[4];
        ldsm_x4_t(vf, a_addr(Vt, KP, kk * 16, dp * 16, lane));
        mma16816(o[2 * dp], a, vf[0], vf[1]);
        mma16816(o[2 * dp + 1], a, vf[2], vf[3]);
      }
    }
  }
  cp_async_wait<0>();  // nothing may still be copying into this warp's Qs rows
  __syncwarp();        // every lane's ldmatrix of Q is done before any lane overwrites the rows

  // Output through this warp's own Qs rows: 16-byte coalesced stores instead of 4-byte ones.
  bf16* ob = out + int64_t(b) * Tq * qs + int64_t(h) * D;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float lt = l[r];
    lt += __shfl_xor_sync(0xffffffffu, lt, 1);
    lt += __shfl_xor_sync(0xffffffffu, lt, 2);
    const float inv = lt > 0.f ? 1.f / lt : 0.f;
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++)
      *reinterpret_cast<uint32_t*>(Qw + (g + 8 * r) * KP + dt * 8 + tq * 2) = pack_bf16x2(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
    if (tq == 0 && row[r] < Tq) lse[(int64_t(b) * Hq + h) * Tq + row[r]] = lt > 0.f ? (m[r] + log2f(lt)) * kLn2 : -INFINITY;
  }
  __syncwarp();
#pragma unroll
  for (int n = 0; n < 16 * CH / 32; n++) {
    const int c = lane + 32 * n, r = c / CH, c8 = (c % CH) * 8, i = wr0 + r;
    if (i < Tq) *reinterpret_cast<uint4*>(ob + int64_t(i) * qs + c8) = *reinterpret_cast<const uint4*>(Qw + r * KP + c8);
  }
}

// Backward, one block per (128 keys, query head), 8 warps of 16 keys, iterating over 64-query tiles:
// dK, dV of those keys from that head's queries. With GQA (Hq > Hkv) they go to fp32 partials dk_part,
// dv_part [B, Tk, Hq, D] (unscaled) that attn_dkv_reduce sums over the group; with Hq == Hkv straight to
// dk, dv [B, Tk, Hkv, D] in bf16. dq_acc [B, Tq, Hq, D] f32 (+=, unscaled) <- dout, q, k, v, lse, delta,
// segments. MINB as in attn_fwd_tc. Shared memory: Ks, Vs [128][KP]; Qs, dOs [2][64][KP];
// dSt [128][64 + 8] (dSᵀ of the current tile); lse_s, dl_s, segq [2][64]; segk [128]; misc [4];
// wact [8] (warp w computed the tile: its 16 rows of dSt are valid).
template <int D, int MINB>
__global__ void __launch_bounds__(256, MINB)
    attn_bwd_tc(bf16* __restrict__ dk, bf16* __restrict__ dv, float* __restrict__ dk_part, float* __restrict__ dv_part,
                float* __restrict__ dq_acc, const bf16* __restrict__ dout, const bf16* __restrict__ q, const bf16* __restrict__ k,
                const bf16* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ delta,
                const int32_t* __restrict__ seg, int Tq, int Tk, int Hq, int Hkv, float scale_log2, float scale) {
  constexpr int BK = BWD_BK, BQ = BWD_BQ, KP = D + 8, SP = BQ + 8, CH = D / 8;
  constexpr int QC = D == 64 ? 16 : 32;  // queries per Sᵀ/dPᵀ chunk (D = 64: fewer live registers, 2 blocks per SM)
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* Ks = reinterpret_cast<bf16*>(smem);
  bf16* Vs = Ks + BK * KP;
  bf16* Qs = Vs + BK * KP;
  bf16* dOs = Qs + 2 * BQ * KP;
  bf16* dSt = dOs + 2 * BQ * KP;
  float* lse_s = reinterpret_cast<float*>(dSt + BK * SP);
  float* dl_s = lse_s + 2 * BQ;
  int* segq = reinterpret_cast<int*>(dl_s + 2 * BQ);
  int* segk = segq + 2 * BQ;
  int* misc = segk + BK;  // kmin, kmax, last relevant query
  int* wact = misc + 4;

  const int h = blockIdx.x, b = blockIdx.z, k0 = blockIdx.y * BK;  // earliest (most seen) keys first
  const int kvh = h / (Hq / Hkv);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
  const int off = Tk - Tq;
  const int64_t qs = int64_t(Hq) * D, ks = int64_t(Hkv) * D;
  const int32_t* sb = seg + int64_t(b) * Tk;
  const bf16* kb = k + int64_t(b) * Tk * ks + int64_t(kvh) * D;
  const bf16* vb = v + int64_t(b) * Tk * ks + int64_t(kvh) * D;
  // One offset for q, dout, dq_acc and one for lse, delta (fewer live registers than five pointers).
  const int64_t qoff = int64_t(b) * Tq * qs + int64_t(h) * D, loff = (int64_t(b) * Hq + h) * Tq;

#pragma unroll 1  // once per block; unrolled, its index math stays live and spills at D = 64
  for (int n = 0; n < BK * CH / 256; n++) {
    const int c = tid + 256 * n, r = c / CH, c8 = (c % CH) * 8, j = k0 + r;
    const int64_t src = int64_t(j < Tk ? j : 0) * ks + c8;
    cp_async16(Ks + r * KP + c8, kb + src, j < Tk);
    cp_async16(Vs + r * KP + c8, vb + src, j < Tk);
  }
  cp_async_commit();
  if (tid < BK) segk[tid] = k0 + tid < Tk ? sb[k0 + tid] : 0;
  if (tid == 0) misc[0] = INT_MAX, misc[1] = INT_MIN, misc[2] = -1;
  __syncthreads();
  if (tid < BK && segk[tid] != 0) atomicMin(&misc[0], segk[tid]), atomicMax(&misc[1], segk[tid]);
  const int kr0 = warp * 16 + g, kr1 = kr0 + 8;  // this thread's key rows (local)
  const int sk0 = segk[kr0], sk1 = segk[kr1];
  // This warp's key segment range (padding excluded) and whether its 16 keys share one segment.
  const int wkmin = __reduce_min_sync(0xffffffffu, min(sk0 != 0 ? sk0 : INT_MAX, sk1 != 0 ? sk1 : INT_MAX));
  const int wkmax = __reduce_max_sync(0xffffffffu, max(sk0 != 0 ? sk0 : INT_MIN, sk1 != 0 ? sk1 : INT_MIN));
  const bool wkuni = __all_sync(0xffffffffu, sk0 != 0 && sk1 != 0) && wkmin == wkmax;
  const int kw_first = k0 + warp * 16, kw_last = kw_first + 15;
  __syncthreads();
  const int kmin = misc[0], kmax = misc[1];
  const int istart = max(0, k0 - off);  // first query that can see key k0

  // Last query that can see a key of the block (segment in the block's range): tiles run from istart to it.
  if (kmin <= kmax) {
    for (int c = Tq - 1; c >= istart; c -= 256) {
      const int i = c - tid;
      bool hit = false;
      if (i >= istart) {
        const int s = sb[off + i];
        hit = s != 0 && s >= kmin && s <= kmax;
        if (hit) atomicMax(&misc[2], i);
      }
      if (__syncthreads_or(hit)) break;
    }
  }
  const int qlast = misc[2];
  const int ntiles = qlast >= istart ? (qlast - istart) / BQ + 1 : 0;

  // Q, dO rows of query tile it (rows ≥ Tq zeros) and their lse, Δ, segment (zeros past Tq).
  auto load_q = [&](int it, int st) {
    const int i0 = istart + it * BQ;
#pragma unroll
    for (int n = 0; n < BQ * CH / 256; n++) {
      const int c = tid + 256 * n, r = c / CH, c8 = (c % CH) * 8, i = i0 + r;
      const int64_t src = qoff + int64_t(i < Tq ? i : 0) * qs + c8;
      cp_async16(Qs + (st * BQ + r) * KP + c8, q + src, i < Tq);
      cp_async16(dOs + (st * BQ + r) * KP + c8, dout + src, i < Tq);
    }
    if (tid < 3 * BQ) {
      const int which = tid / BQ, r = tid % BQ, i = i0 + r, ic = i < Tq ? i : 0;
      if (which == 0)
        cp_async4(lse_s + st * BQ + r, lse + loff + ic, i < Tq);
      else if (which == 1)
        cp_async4(dl_s + st * BQ + r, delta + loff + ic, i < Tq);
      else
        cp_async4(segq + st * BQ + r, sb + off + ic, i < Tq);
    }
  };
  if (ntiles > 0) load_q(0, 0);
  cp_async_commit();

  float dKa[D / 8][4], dVa[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; dt++)
#pragma unroll
    for (int e = 0; e < 4; e++) dKa[dt][e] = dVa[dt][e] = 0.f;

  for (int it = 0; it < ntiles; it++) {
    const int st = it & 1, i0 = istart + it * BQ;
    cp_async_wait<0>();  // tile it (and, at it = 0, K and V)
    __syncthreads();     // complete for all; every warp done with tile it-1 (its stage, dSt, wact)
    if (it + 1 < ntiles) load_q(it + 1, st ^ 1);
    cp_async_commit();

    const bf16* Qt = Qs + st * BQ * KP;
    const bf16* dOt = dOs + st * BQ * KP;
    const float* ls = lse_s + st * BQ;
    const float* dls = dl_s + st * BQ;
    const int* sq = segq + st * BQ;
    {
      const int s_a = sq[lane], s_b = sq[lane + 32];
      const bool seen =
          __any_sync(0xffffffffu, (s_a != 0 && s_a >= wkmin && s_a <= wkmax) || (s_b != 0 && s_b >= wkmin && s_b <= wkmax)) &&
          off + min(i0 + BQ - 1, Tq - 1) >= kw_first;
      if (lane == 0) wact[warp] = seen;
      if (seen) {
        // Every (key, query) of the tile visible to all 16 keys: one segment, all keys ≤ the first query's position.
        const bool full = wkuni && kw_last <= off + i0 && i0 + BQ <= Tq && __all_sync(0xffffffffu, s_a == wkmin && s_b == wkmin);
#pragma unroll
        for (int qc = 0; qc < BQ / QC; qc++) {
          // Sᵀ, dPᵀ [16 keys × QC queries] of this warp.
          float sT[QC / 8][4], pT[QC / 8][4];
#pragma unroll
          for (int nt = 0; nt < QC / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) sT[nt][e] = pT[nt][e] = 0.f;
#pragma unroll
          for (int kt = 0; kt < D / 16; kt++) {
            uint32_t ak[4], av[4];
            ldsm_x4(ak, a_addr(Ks, KP, warp * 16, kt * 16, lane));
            ldsm_x4(av, a_addr(Vs, KP, warp * 16, kt * 16, lane));
#pragma unroll
            for (int np = 0; np < QC / 16; np++) {
              uint32_t bq[4], bo[4];
              ldsm_x4(bq, bnk_addr(Qt, KP, qc * QC + np * 16, kt * 16, lane));
              ldsm_x4(bo, bnk_addr(dOt, KP, qc * QC + np * 16, kt * 16, lane));
              mma16816(sT[2 * np], ak, bq[0], bq[1]);
              mma16816(sT[2 * np + 1], ak, bq[2], bq[3]);
              mma16816(pT[2 * np], av, bo[0], bo[1]);
              mma16816(pT[2 * np + 1], av, bo[2], bo[3]);
            }
          }
          // P = exp(S − lse), dS = P ∘ (dP − Δ); element e of tile nt: key kr0 + 8(e / 2), query ql + e % 2.
#pragma unroll
          for (int nt = 0; nt < QC / 8; nt++) {
            const int ql = qc * QC + nt * 8 + tq * 2;
            const float2 L = *reinterpret_cast<const float2*>(ls + ql);
            const float2 Dl = *reinterpret_cast<const float2*>(dls + ql);
            const int2 S = *reinterpret_cast<const int2*>(sq + ql);
#pragma unroll
            for (int e = 0; e < 4; e++) {
              const int c = e & 1, skr = (e >> 1) ? sk1 : sk0;
              const int key = k0 + kr0 + 8 * (e >> 1), qpos = off + i0 + ql + c;
              const bool ok = full || (key <= qpos && skr != 0 && skr == (c ? S.y : S.x));
              const float p = ok ? ex2f(fmaf(sT[nt][e], scale_log2, -(c ? L.y : L.x) * kLog2e)) : 0.f;
              const float ds = ok ? p * (pT[nt][e] - (c ? Dl.y : Dl.x)) : 0.f;
              sT[nt][e] = p;
              pT[nt][e] = ds;
            }
            *reinterpret_cast<uint32_t*>(dSt + kr0 * SP + ql) = pack_bf16x2(pT[nt][0], pT[nt][1]);
            *reinterpret_cast<uint32_t*>(dSt + kr1 * SP + ql) = pack_bf16x2(pT[nt][2], pT[nt][3]);
          }
          // dV += Pᵀ dO, dK += dSᵀ Q over these QC queries (k-steps of 16).
#pragma unroll
          for (int kq = 0; kq < QC / 16; kq++) {
            const uint32_t ap[4] = {pack_bf16x2(sT[2 * kq][0], sT[2 * kq][1]), pack_bf16x2(sT[2 * kq][2], sT[2 * kq][3]),
                                    pack_bf16x2(sT[2 * kq + 1][0], sT[2 * kq + 1][1]), pack_bf16x2(sT[2 * kq + 1][2], sT[2 * kq + 1][3])};
            const uint32_t as[4] = {pack_bf16x2(pT[2 * kq][0], pT[2 * kq][1]), pack_bf16x2(pT[2 * kq][2], pT[2 * kq][3]),
                                    pack_bf16x2(pT[2 * kq + 1][0], pT[2 * kq + 1][1]), pack_bf16x2(pT[2 * kq + 1][2], pT[2 * kq + 1][3])};
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
              uint32_t bf[4];
              ldsm_x4_t(bf, a_addr(dOt, KP, qc * QC + kq * 16, dp * 16, lane));
              mma16816(dVa[2 * dp], ap, bf[0], bf[1]);
              mma16816(dVa[2 * dp + 1], ap, bf[2], bf[3]);
              ldsm_x4_t(bf, a_addr(Qt, KP, qc * QC + kq * 16, dp * 16, lane));
              mma16816(dKa[2 * dp], as, bf[0], bf[1]);
              mma16816(dKa[2 * dp + 1], as, bf[2], bf[3]);
            }
          }
        }
      }
    }
    __syncthreads();  // dSt and wact complete

    // dQ[i0 + wq·16 …, wd·D/2 …] += dS · K over the block's 128 keys (k-step kk = warp kk's keys).
    {
      const int wq = warp & 3, wd = warp >> 2;
      float acc[D / 16][4];
#pragma unroll
      for (int nt = 0; nt < D / 16; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
      int any = 0;
#pragma unroll
      for (int kk = 0; kk < BK / 16; kk++) {
        if (!wact[kk]) continue;
        any = 1;
        uint32_t a[4];
        ldsm_x4_t(a, bnk_addr(dSt, SP, kk * 16, wq * 16, lane));
#pragma unroll
        for (int dp = 0; dp < D / 32; dp++) {
          uint32_t bf[4];
          ldsm_x4_t(bf, a_addr(Ks, KP, kk * 16, wd * (D / 2) + dp * 16, lane));
          mma16816(acc[2 * dp], a, bf[0], bf[1]);
          mma16816(acc[2 * dp + 1], a, bf[2], bf[3]);
        }
      }
      if (any) {
        // Lanes tq, tq ^ 1 swap halves: even tq adds row g, columns 2tq…2tq+3; odd tq row g + 8, 2tq−2…2tq+1.
        const bool odd = tq & 1;
        const int qi = i0 + wq * 16 + g + (odd ? 8 : 0);
#pragma unroll
        for (int nt = 0; nt < D / 16; nt++) {
          const float x0 = __shfl_xor_sync(0xffffffffu, odd ? acc[nt][0] : acc[nt][2], 1);
          const float x1 = __shfl_xor_sync(0xffffffffu, odd ? acc[nt][1] : acc[nt][3], 1);
          const float4 val = odd ? make_float4(x0, x1, acc[nt][2], acc[nt][3]) : make_float4(acc[nt][0], acc[nt][1], x0, x1);
          float* dst = dq_acc + qoff + int64_t(qi) * qs + wd * (D / 2) + nt * 8 + (tq & 2) * 2;
          if (qi < Tq) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
            atomicAdd(reinterpret_cast<float4*>(dst), val);
#else
            atomicAdd(dst, val.x), atomicAdd(dst + 1, val.y), atomicAdd(dst + 2, val.z), atomicAdd(dst + 3, val.w);
#endif
          }
        }
      }
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int j = k0 + kr0 + 8 * r;
    if (j >= Tk) continue;
    if (dk_part) {
      float* dkr = dk_part + ((int64_t(b) * Tk + j) * Hq + h) * D;
      float* dvr = dv_part + ((int64_t(b) * Tk + j) * Hq + h) * D;
#pragma unroll
      for (int dt = 0; dt < D / 8; dt++) {
        const int col = dt * 8 + tq * 2;
        *reinterpret_cast<float2*>(dkr + col) = make_float2(dKa[dt][2 * r], dKa[dt][2 * r + 1]);
        *reinterpret_cast<float2*>(dvr + col) = make_float2(dVa[dt][2 * r], dVa[dt][2 * r + 1]);
      }
    } else {
      bf16* dkr = dk + (int64_t(b) * Tk + j) * ks + int64_t(kvh) * D;
      bf16* dvr = dv + (int64_t(b) * Tk + j) * ks + int64_t(kvh) * D;
#pragma unroll
      for (int dt = 0; dt < D / 8; dt++) {
        const int col = dt * 8 + tq * 2;
        *reinterpret_cast<uint32_t*>(dkr + col) = pack_bf16x2(dKa[dt][2 * r] * scale, dKa[dt][2 * r + 1] * scale);
        *reinterpret_cast<uint32_t*>(dvr + col) = pack_bf16x2(dVa[dt][2 * r], dVa[dt][2 * r + 1]);
      }
    }
  }
}

// Four floats to four bf16 in one 8-byte store.
__device__ __forceinline__ void store_bf16x4(bf16* p, float4 v) {
  *reinterpret_cast<uint2*>(p) = make_uint2(pack_bf16x2(v.x, v.y), pack_bf16x2(v.z, v.w));
}

// dk, dv [B, Tk, Hkv, D] bf16 = (scale ·) Σ over each kv head's group of dk_part, dv_part [B, Tk, Hq, D].
// Four consecutive d per thread (D % 4 == 0: the tensor-core path's D is 64 or 128), 16-byte loads.
__global__ void attn_dkv_reduce(bf16* dk, bf16* dv, const float* dk_part, const float* dv_part, int64_t n, int Hkv, int group, int D,
                                float scale) {
  for (int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 4; i < n; i += int64_t(gridDim.x) * blockDim.x * 4) {
    const int d = int(i % D);
    const int64_t jk = i / D;  // (b · Tk + j) · Hkv + kvh
    const int64_t base = (jk / Hkv * (int64_t(Hkv) * group) + (jk % Hkv) * group) * D + d;
    float4 a = make_float4(0.f, 0.f, 0.f, 0.f), c = a;
    for (int g = 0; g < group; g++) {
      const float4 x = *reinterpret_cast<const float4*>(dk_part + base + int64_t(g) * D);
      const float4 y = *reinterpret_cast<const float4*>(dv_part + base + int64_t(g) * D);
      a.x += x.x, a.y += x.y, a.z += x.z, a.w += x.w;
      c.x += y.x, c.y += y.y, c.z += y.z, c.w += y.w;
    }
    store_bf16x4(dk + i, make_float4(a.x * scale, a.y * scale, a.z * scale, a.w * scale));
    store_bf16x4(dv + i, c);
  }
}

// dq [n] bf16 = scale · dq_acc [n], n % 4 == 0, four per thread.
__global__ void attn_dq_convert(bf16* dq, const float* acc, float scale, int64_t n) {
  for (int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 4; i < n; i += int64_t(gridDim.x) * blockDim.x * 4) {
    const float4 a = *reinterpret_cast<const float4*>(acc + i);
    store_bf16x4(dq + i, make_float4(a.x * scale, a.y * scale, a.z * scale, a.w * scale));
  }
}

// Launches a tensor-core kernel with its dynamic shared memory (set once per instantiation). Blocks per
// SM at D = 64: 2 (registers capped at 128) when the grid fills more than one wave of 2 blocks on every
// SM; with fewer blocks (e.g. 14 heads × 16 tiles = 224 < 2 × 132) all of them run at once anyway, and 1
// block per SM with uncapped registers (≈ 200) is faster per block, so the heaviest blocks finish
// sooner (measured, backward: Qwen2.5-0.5B 204 → 176 µs, while Llama-3.2-1B's 512 blocks went 283 → 368).
// D = 128 uses ≈ 230-255 registers: 1 block per SM either way.
template <auto kernel, typename... Args>
void launch_tc(size_t smem, dim3 grid, cudaStream_t stream, Args... args) {
  static bool configured = false;  // one per kernel (the kernel is the template argument)
  if (!configured) {
    LKC_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    configured = true;
  }
  kernel<<<grid, 256, smem, stream>>>(args...);
}
bool fits_one_wave(int64_t blocks) { return blocks <= 2 * int64_t(num_sms()); }

void check(DType t, int B, int Tq, int Tk, int Hq, int Hkv, int D) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, std::string("attention takes f32 or bf16 tensors, not ") + dtype_name(t) + ".");
  LKC_REQUIRE(B > 0 && Tq > 0 && Tk > 0 && Hq > 0 && Hkv > 0 && D > 0, "attention sizes must be positive.");
  LKC_REQUIRE(Tq <= Tk, "attention needs at least as many keys as queries.");
  LKC_REQUIRE(Hq % Hkv == 0, "attention query heads must be a multiple of the key/value heads.");
  LKC_REQUIRE(D <= kAttnMaxD, "attention supports head dimensions up to 256.");
}

// The tensor-core kernels read bf16 only: f32 always takes the CUDA-core path.
bool use_tc(DType t, int D, const void* a, const void* b2, const void* c) {
  return !g_force_generic && t == DType::BF16 && (D == 64 || D == 128) && aligned16(a) && aligned16(b2) && aligned16(c);
}

template <int D>
void launch_fwd_tc(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int32_t* seg, int B, int Tq, int Tk,
                   int Hq, int Hkv, float scale, cudaStream_t stream) {
  dim3 grid(Hq, ceil_div(Tq, FWD_BQ), B);  // x = head: consecutive blocks are the heaviest query blocks of every head
  if constexpr (D == 64) {
    if (!fits_one_wave(int64_t(grid.x) * grid.y * grid.z)) {
      launch_tc<attn_fwd_tc<D, 2>>(fwd_smem_bytes<D>(), grid, stream, out, lse, q, k, v, seg, Tq, Tk, Hq, Hkv, scale * kLog2e);
      return;
    }
  }
  launch_tc<attn_fwd_tc<D, 1>>(fwd_smem_bytes<D>(), grid, stream, out, lse, q, k, v, seg, Tq, Tk, Hq, Hkv, scale * kLog2e);
}

template <int D>
void launch_bwd_tc(bf16* dk, bf16* dv, float* dk_part, float* dv_part, float* dq_acc, const bf16* dout, const bf16* q, const bf16* k, const bf16* v,
                   const float* lse, const float* delta, const int32_t* seg, int B, int Tq, int Tk, int Hq, int Hkv, float scale,
                   cudaStream_t stream) {
  dim3 grid(Hq, ceil_div(Tk, BWD_BK), B);  // x = head: the earliest (most seen) key blocks of every head first
  if constexpr (D == 64) {
    if (!fits_one_wave(int64_t(grid.x) * grid.y * grid.z)) {
      launch_tc<attn_bwd_tc<D, 2>>(bwd_smem_bytes<D>(), grid, stream, dk, dv, dk_part, dv_part, dq_acc, dout, q, k, v, lse, delta, seg,
                                   Tq, Tk, Hq, Hkv, scale * kLog2e, scale);
      return;
    }
  }
  launch_tc<attn_bwd_tc<D, 1>>(bwd_smem_bytes<D>(), grid, stream, dk, dv, dk_part, dv_part, dq_acc, dout, q, k, v, lse, delta, seg, Tq,
                               Tk, Hq, Hkv, scale * kLog2e, scale);
}

}  // namespace

void attention_set_force_generic(bool on) { g_force_generic = on; }

void attention_forward(void* out, float* lse, const void* q, const void* k, const void* v, DType t, const int32_t* segments, int B,
                       int Tq, int Tk, int Hq, int Hkv, int D, float scale, cudaStream_t stream) {
  check(t, B, Tq, Tk, Hq, Hkv, D);
  if (use_tc(t, D, q, k, v) && aligned16(out)) {  // bf16
    bf16* out16 = static_cast<bf16*>(out);
    const bf16 *q16 = static_cast<const bf16*>(q), *k16 = static_cast<const bf16*>(k), *v16 = static_cast<const bf16*>(v);
    if (D == 64)
      launch_fwd_tc<64>(out16, lse, q16, k16, v16, segments, B, Tq, Tk, Hq, Hkv, scale, stream);
    else
      launch_fwd_tc<128>(out16, lse, q16, k16, v16, segments, B, Tq, Tk, Hq, Hkv, scale, stream);
    LKC_CHECK_LAUNCH("attention_forward");
  } else {
    attention_forward_generic(out, lse, q, k, v, t, segments, B, Tq, Tk, Hq, Hkv, D, scale, stream);
  }
}

namespace {
size_t a256(size_t b) { return (b + 255) / 256 * 256; }
}  // namespace

// [dq_acc f32 B·Tq·Hq·D][delta f32 B·Hq·Tq][dk_part, dv_part f32 B·Tk·Hq·D each, only with GQA]
size_t attention_backward_workspace(int B, int Tq, int Tk, int Hq, int Hkv, int D) {
  const size_t parts = Hq != Hkv ? 2 * a256(size_t(B) * Tk * Hq * D * 4) : 0;
  return a256(size_t(B) * Tq * Hq * D * 4) + a256(size_t(B) * Hq * Tq * 4) + parts;
}

void attention_backward(void* dq, void* dk, void* dv, const void* dout, const void* out, const void* q, const void* k, const void* v,
                        DType t, const float* lse, const int32_t* segments, int B, int Tq, int Tk, int Hq, int Hkv, int D, float scale,
                        void* workspace, cudaStream_t stream) {
  check(t, B, Tq, Tk, Hq, Hkv, D);
  const int64_t nq = int64_t(B) * Tq * Hq * D;
  char* ws = static_cast<char*>(workspace);
  float* dq_acc = reinterpret_cast<float*>(ws);
  float* delta = reinterpret_cast<float*>(ws + a256(size_t(nq) * 4));
  const int64_t nkp = int64_t(B) * Tk * Hq * D;
  float* dk_part = Hq != Hkv ? reinterpret_cast<float*>(ws + a256(size_t(nq) * 4) + a256(size_t(B) * Hq * Tq * 4)) : nullptr;
  float* dv_part = dk_part ? dk_part + a256(size_t(nkp) * 4) / 4 : nullptr;
  attention_delta(delta, dout, out, t, B, Tq, Hq, D, stream);
  if (use_tc(t, D, q, k, v) && aligned16(dout) && aligned16(dk) && aligned16(dv)) {  // bf16
    bf16 *dq16 = static_cast<bf16*>(dq), *dk16 = static_cast<bf16*>(dk), *dv16 = static_cast<bf16*>(dv);
    const bf16 *dout16 = static_cast<const bf16*>(dout), *q16 = static_cast<const bf16*>(q), *k16 = static_cast<const bf16*>(k),
               *v16 = static_cast<const bf16*>(v);
    LKC_CUDA(cudaMemsetAsync(dq_acc, 0, size_t(nq) * 4, stream));
    if (D == 64)
      launch_bwd_tc<64>(dk16, dv16, dk_part, dv_part, dq_acc, dout16, q16, k16, v16, lse, delta, segments, B, Tq, Tk, Hq, Hkv, scale,
                        stream);
    else
      launch_bwd_tc<128>(dk16, dv16, dk_part, dv_part, dq_acc, dout16, q16, k16, v16, lse, delta, segments, B, Tq, Tk, Hq, Hkv, scale,
                         stream);
    LKC_CHECK_LAUNCH("attention_backward");
    if (dk_part) {
      const int64_t nk = int64_t(B) * Tk * Hkv * D;
      attn_dkv_reduce<<<grid_for(nk / 4, 256), 256, 0, stream>>>(dk16, dv16, dk_part, dv_part, nk, Hkv, Hq / Hkv, D, scale);
      LKC_CHECK_LAUNCH("attention_dkv_reduce");
    }
    attn_dq_convert<<<grid_for(nq / 4, 256), 256, 0, stream>>>(dq16, dq_acc, scale, nq);
    LKC_CHECK_LAUNCH("attention_backward");
  } else {
    attention_backward_generic(dq, dk, dv, dout, q, k, v, t, lse, delta, segments, B, Tq, Tk, Hq, Hkv, D, scale, stream);
  }
}

}  // namespace lkc
