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
// Tensor-core path (D = 64 or 128): mma.sync m16n8k16 bf16 with fp32 accumulators, 64×64 tiles, 4 warps
// of 16 rows each. Forward: one block per (64 query rows, head), K and V tiles in shared memory, the
// probabilities go from accumulator registers straight into the A operand of P·V. Backward: one block
// per (64 keys, query head), dK and dV accumulating in registers (summed over a GQA group by a small
// reduction afterwards); dQ is accumulated in fp32 with atomics and converted at the end. Key tiles
// that no query of the block can see (causality, other segments) are skipped, which makes packed
// sequences cost what their own lengths cost.
// CUDA-core path (attention_generic.cu, any other D ≤ 256): one warp per query row or key row, the
// same masking; used for tiny models and as a cross-check of the tensor-core path.
#include <climits>

#include "attention_generic.cuh"
#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

bool g_force_generic = false;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// D[16×8] += A[16×16] · B[16×8], bf16 inputs, fp32 accumulators. Fragments (g = lane / 4, t = lane % 4):
// A regs {a0: (g, 2t..2t+1), a1: (g+8, 2t..), a2: (g, 2t+8..), a3: (g+8, 2t+8..)};
// B regs {b0: (k = 2t..2t+1, n = g), b1: (k = 2t+8.., n = g)}; C {c0,c1: (g, 2t..2t+1), c2,c3: (g+8, ..)}.
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t ld32(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }

// B fragment (16×8, k × n) from a row-major [k][n] shared-memory tile: ldmatrix with .trans transposes
// two 8×8 blocks on the way in. row0 points at element (k = 0, n = 0); rows are `ld` elements apart
// (16-byte aligned). Lanes 0-15 give the addresses of rows k = 0…15.
__device__ __forceinline__ void ldsm_b_trans(uint32_t& b0, uint32_t& b1, const bf16* row0, int ld, int lane) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(row0 + (lane & 15) * ld));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n" : "=r"(b0), "=r"(b1) : "r"(a));
}

constexpr int BR = 64, BC = 64;

// ---- tensor-core forward ---------------------------------------------------------------------------
// out [B, Tq, Hq, D], lse [B, Hq, Tq] <- q, k, v, segments
template <int D>
__global__ void __launch_bounds__(128) attn_fwd_tc(bf16* __restrict__ out, float* __restrict__ lse, const bf16* __restrict__ q,
                                                   const bf16* __restrict__ k, const bf16* __restrict__ v,
                                                   const int32_t* __restrict__ seg, int Tq, int Tk, int Hq, int Hkv,
                                                   float scale_log2) {
  constexpr int KP = D + 8;  // padded rows: fragment loads and ldmatrix rows hit distinct banks
  __shared__ __align__(16) bf16 Ks[BC * KP];
  __shared__ __align__(16) bf16 Vs[BC * KP];
  __shared__ int segk[BC];
  __shared__ int qrange[2];
  const int b = blockIdx.z, h = blockIdx.y;
  const int i0 = (gridDim.x - 1 - blockIdx.x) * BR;  // longest (latest) query blocks first
  const int kvh = h / (Hq / Hkv);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
  const int off = Tk - Tq;
  const int64_t qs = int64_t(Hq) * D, ks = int64_t(Hkv) * D;
  const bf16* qb = q + int64_t(b) * Tq * qs + int64_t(h) * D;
  const bf16* kb = k + int64_t(b) * Tk * ks + int64_t(kvh) * D;
  const bf16* vb = v + int64_t(b) * Tk * ks + int64_t(kvh) * D;
  const int32_t* sb = seg + int64_t(b) * Tk;

  int row[2], pos[2], sg[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    row[r] = i0 + warp * 16 + g + 8 * r;
    pos[r] = off + row[r];
    sg[r] = row[r] < Tq ? sb[pos[r]] : 0;
  }
  if (tid == 0) qrange[0] = INT_MAX, qrange[1] = INT_MIN;
  __syncthreads();
#pragma unroll
  for (int r = 0; r < 2; r++)
    if (sg[r] != 0) atomicMin(&qrange[0], sg[r]), atomicMax(&qrange[1], sg[r]);
  const bool rows_ok = (row[0] >= Tq || sg[0] != 0) && (row[1] >= Tq || sg[1] != 0);
  const bool no_pad_rows = __syncthreads_and(rows_ok);
  const int qmin = qrange[0], qmax = qrange[1];

  uint32_t qf[D / 16][4];
#pragma unroll
  for (int kt = 0; kt < D / 16; kt++) {
    const int c = kt * 16 + tq * 2;
    qf[kt][0] = row[0] < Tq ? ld32(qb + row[0] * qs + c) : 0u;
    qf[kt][1] = row[1] < Tq ? ld32(qb + row[1] * qs + c) : 0u;
    qf[kt][2] = row[0] < Tq ? ld32(qb + row[0] * qs + c + 8) : 0u;
    qf[kt][3] = row[1] < Tq ? ld32(qb + row[1] * qs + c + 8) : 0u;
  }

  float o[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const int last_row = min(i0 + BR, Tq) - 1;
  const int kend = off + last_row + 1;  // keys [0, kend) can be visible to this block
  const int first_pos = off + i0;

  for (int k0 = 0; k0 < kend; k0 += BC) {
    int s_tid = 0;
    bool in = false;
    if (tid < BC) {
      const int j = k0 + tid;
      s_tid = j < Tk ? sb[j] : 0;
      segk[tid] = s_tid;
      in = s_tid != 0 && s_tid >= qmin && s_tid <= qmax;
    }
    if (!__syncthreads_or(in)) continue;  // no query of the block sees any key of the tile
    // The whole tile is visible to every row: below the diagonal, one segment throughout, no padding.
    const bool full = __syncthreads_and(tid >= BC || s_tid == qmin) && qmin == qmax && no_pad_rows && k0 + BC - 1 <= first_pos;

    for (int c = tid; c < BC * D / 8; c += 128) {
      const int r = c / (D / 8), c8 = (c % (D / 8)) * 8, j = k0 + r;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (j < Tk) {
        kv = *reinterpret_cast<const uint4*>(kb + j * ks + c8);
        vv = *reinterpret_cast<const uint4*>(vb + j * ks + c8);
      }
      *reinterpret_cast<uint4*>(Ks + r * KP + c8) = kv;
      *reinterpret_cast<uint4*>(Vs + r * KP + c8) = vv;
    }
    __syncthreads();

    float s[BC / 8][4];
#pragma unroll
    for (int nt = 0; nt < BC / 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
    for (int kt = 0; kt < D / 16; kt++) {
#pragma unroll
      for (int nt = 0; nt < BC / 8; nt++) {
        const bf16* kp = Ks + (nt * 8 + g) * KP + kt * 16 + tq * 2;
        mma16816(s[nt], qf[kt], ld32(kp), ld32(kp + 8));
      }
    }
#pragma unroll
    for (int nt = 0; nt < BC / 8; nt++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        float x = s[nt][e] * scale_log2;
        if (!full) {
          const int r = e >> 1, jl = nt * 8 + tq * 2 + (e & 1);
          if (!(k0 + jl <= pos[r] && segk[jl] == sg[r] && sg[r] != 0)) x = -INFINITY;
        }
        s[nt][e] = x;
      }
    }
    // Online softmax, rows g (r = 0) and g + 8 (r = 1); a row lives in the 4 lanes of a quad.
#pragma unroll
    for (int r = 0; r < 2; r++) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < BC / 8; nt++) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mn = fmaxf(m[r], mx);
      const float base = mn == -INFINITY ? 0.f : mn;  // a row with nothing visible yet stays at zero
      const float alpha = exp2f(m[r] - base);
      m[r] = mn;
      l[r] *= alpha;
#pragma unroll
      for (int dt = 0; dt < D / 8; dt++) o[dt][2 * r] *= alpha, o[dt][2 * r + 1] *= alpha;
#pragma unroll
      for (int nt = 0; nt < BC / 8; nt++) {
        const float p0 = exp2f(s[nt][2 * r] - base), p1 = exp2f(s[nt][2 * r + 1] - base);
        s[nt][2 * r] = p0, s[nt][2 * r + 1] = p1;
        l[r] += p0 + p1;
      }
    }
    // O += P V: accumulator tiles 2kk and 2kk+1 of P form the A fragment of keys kk·16 … kk·16+15.
#pragma unroll
    for (int kk = 0; kk < BC / 16; kk++) {
      const uint32_t a[4] = {pack_bf16x2(s[2 * kk][0], s[2 * kk][1]), pack_bf16x2(s[2 * kk][2], s[2 * kk][3]),
                             pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dt = 0; dt < D / 8; dt++) {
        uint32_t b0, b1;
        ldsm_b_trans(b0, b1, Vs + kk * 16 * KP + dt * 8, KP, lane);
        mma16816(o[dt], a, b0, b1);
      }
    }
    __syncthreads();
  }

  bf16* ob = out + int64_t(b) * Tq * qs + int64_t(h) * D;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float lt = l[r];
    lt += __shfl_xor_sync(0xffffffffu, lt, 1);
    lt += __shfl_xor_sync(0xffffffffu, lt, 2);
    if (row[r] >= Tq) continue;
    const float inv = lt > 0.f ? 1.f / lt : 0.f;
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++)
      *reinterpret_cast<uint32_t*>(ob + row[r] * qs + dt * 8 + tq * 2) = pack_bf16x2(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
    if (tq == 0) lse[(int64_t(b) * Hq + h) * Tq + row[r]] = lt > 0.f ? (m[r] + log2f(lt)) * kLn2 : -INFINITY;
  }
}

// ---- tensor-core backward --------------------------------------------------------------------------

template <int D>
constexpr size_t bwd_smem_bytes() {
  return size_t(4 * BC * (D + 8) + BR * (BC + 8)) * sizeof(bf16) + size_t(3 * BR + BC + 2) * 4;
}

// One block per (64 keys, query head): dK, dV of those keys from that head's queries. With GQA
// (Hq > Hkv) they go to fp32 partials dk_part, dv_part [B, Tk, Hq, D] (unscaled) that
// attn_dkv_reduce sums over the group; with Hq == Hkv straight to dk, dv [B, Tk, Hkv, D] in bf16.
// dq_acc [B, Tq, Hq, D] f32 (+=, unscaled) <- dout, q, k, v, lse, delta, segments
template <int D>
__global__ void __launch_bounds__(128) attn_bwd_tc(bf16* __restrict__ dk, bf16* __restrict__ dv, float* __restrict__ dk_part,
                                                   float* __restrict__ dv_part, float* __restrict__ dq_acc,
                                                   const bf16* __restrict__ dout, const bf16* __restrict__ q,
                                                   const bf16* __restrict__ k, const bf16* __restrict__ v,
                                                   const float* __restrict__ lse, const float* __restrict__ delta,
                                                   const int32_t* __restrict__ seg, int Tq, int Tk, int Hq, int Hkv,
                                                   float scale_log2, float scale) {
  constexpr int KP = D + 8, SP = BC + 8;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* Ks = reinterpret_cast<bf16*>(smem);  // [BC][KP]
  bf16* Vs = Ks + BC * KP;                    // [BC][KP]
  bf16* Qs = Vs + BC * KP;                    // [BR][KP]
  bf16* dOs = Qs + BR * KP;                   // [BR][KP]
  bf16* dSs = dOs + BR * KP;                  // [BR][SP]: dS[query][key]
  float* lse_s = reinterpret_cast<float*>(dSs + BR * SP);  // [BR], log2 units
  float* delta_s = lse_s + BR;                              // [BR]
  int* segq = reinterpret_cast<int*>(delta_s + BR);         // [BR]
  int* segk = segq + BR;                                    // [BC]
  int* krange = segk + BC;                                  // [2]

  const int b = blockIdx.z, h = blockIdx.y, k0 = blockIdx.x * BC, kvh = h / (Hq / Hkv);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
  const int off = Tk - Tq;
  const int64_t qs = int64_t(Hq) * D, ks = int64_t(Hkv) * D;
  const int32_t* sb = seg + int64_t(b) * Tk;
  const bf16* kb = k + int64_t(b) * Tk * ks + int64_t(kvh) * D;
  const bf16* vb = v + int64_t(b) * Tk * ks + int64_t(kvh) * D;

  for (int c = tid; c < BC * D / 8; c += 128) {
    const int r = c / (D / 8), c8 = (c % (D / 8)) * 8, j = k0 + r;
    uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
    if (j < Tk) {
      kv = *reinterpret_cast<const uint4*>(kb + j * ks + c8);
      vv = *reinterpret_cast<const uint4*>(vb + j * ks + c8);
    }
    *reinterpret_cast<uint4*>(Ks + r * KP + c8) = kv;
    *reinterpret_cast<uint4*>(Vs + r * KP + c8) = vv;
  }
  if (tid < BC) segk[tid] = k0 + tid < Tk ? sb[k0 + tid] : 0;
  if (tid == 0) krange[0] = INT_MAX, krange[1] = INT_MIN;
  __syncthreads();
  if (tid < BC && segk[tid] != 0) atomicMin(&krange[0], segk[tid]), atomicMax(&krange[1], segk[tid]);
  __syncthreads();
  const int kmin = krange[0], kmax = krange[1];

  float dKa[D / 8][4], dVa[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; dt++)
#pragma unroll
    for (int e = 0; e < 4; e++) dKa[dt][e] = dVa[dt][e] = 0.f;
  const int kr0 = warp * 16 + g, kr1 = kr0 + 8;  // this warp's key rows (local)
  const int istart = max(0, k0 - off);           // first query that can see key k0

  if (kmin <= kmax) {
    const bf16* qb = q + int64_t(b) * Tq * qs + int64_t(h) * D;
    const bf16* dob = dout + int64_t(b) * Tq * qs + int64_t(h) * D;
    const float* lse_b = lse + (int64_t(b) * Hq + h) * Tq;
    const float* delta_b = delta + (int64_t(b) * Hq + h) * Tq;
    for (int i0 = istart / BR * BR; i0 < Tq; i0 += BR) {
      bool in = false;
      if (tid < BR) {
        const int i = i0 + tid;
        const int s = i < Tq ? sb[off + i] : 0;
        segq[tid] = s;
        in = s != 0 && s >= kmin && s <= kmax;
        lse_s[tid] = s != 0 ? lse_b[i] * kLog2e : 0.f;
        delta_s[tid] = s != 0 ? delta_b[i] : 0.f;
      }
      if (!__syncthreads_or(in)) continue;
      for (int c = tid; c < BR * D / 8; c += 128) {
        const int r = c / (D / 8), c8 = (c % (D / 8)) * 8, i = i0 + r;
        uint4 qv = make_uint4(0, 0, 0, 0), dv4 = make_uint4(0, 0, 0, 0);
        if (i < Tq) {
          qv = *reinterpret_cast<const uint4*>(qb + i * qs + c8);
          dv4 = *reinterpret_cast<const uint4*>(dob + i * qs + c8);
        }
        *reinterpret_cast<uint4*>(Qs + r * KP + c8) = qv;
        *reinterpret_cast<uint4*>(dOs + r * KP + c8) = dv4;
      }
      __syncthreads();

      // 16 queries at a time: Sᵀ, dPᵀ [16 keys × 16 queries] per warp, then dV, dK updates.
#pragma unroll 1
      for (int qc = 0; qc < BR / 16; qc++) {
        float st[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}}, dpt[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
        for (int kt = 0; kt < D / 16; kt++) {
          const int c = kt * 16 + tq * 2;
          const uint32_t ak[4] = {ld32(Ks + kr0 * KP + c), ld32(Ks + kr1 * KP + c), ld32(Ks + kr0 * KP + c + 8),
                                  ld32(Ks + kr1 * KP + c + 8)};
          const uint32_t av[4] = {ld32(Vs + kr0 * KP + c), ld32(Vs + kr1 * KP + c), ld32(Vs + kr0 * KP + c + 8),
                                  ld32(Vs + kr1 * KP + c + 8)};
#pragma unroll
          for (int nt = 0; nt < 2; nt++) {
            const int qr = qc * 16 + nt * 8 + g;
            mma16816(st[nt], ak, ld32(Qs + qr * KP + c), ld32(Qs + qr * KP + c + 8));
            mma16816(dpt[nt], av, ld32(dOs + qr * KP + c), ld32(dOs + qr * KP + c + 8));
          }
        }
#pragma unroll
        for (int nt = 0; nt < 2; nt++) {
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const int kl = kr0 + (e >> 1) * 8, ql = qc * 16 + nt * 8 + tq * 2 + (e & 1);
            const bool ok = i0 + ql < Tq && k0 + kl <= off + i0 + ql && segk[kl] != 0 && segk[kl] == segq[ql];
            const float p = ok ? exp2f(st[nt][e] * scale_log2 - lse_s[ql]) : 0.f;
            const float ds = p * (dpt[nt][e] - delta_s[ql]);
            st[nt][e] = p;
            dpt[nt][e] = ds;
            dSs[ql * SP + kl] = __float2bfloat16_rn(ds);
          }
        }
        const uint32_t ap[4] = {pack_bf16x2(st[0][0], st[0][1]), pack_bf16x2(st[0][2], st[0][3]), pack_bf16x2(st[1][0], st[1][1]),
                                pack_bf16x2(st[1][2], st[1][3])};
        const uint32_t as[4] = {pack_bf16x2(dpt[0][0], dpt[0][1]), pack_bf16x2(dpt[0][2], dpt[0][3]),
                                pack_bf16x2(dpt[1][0], dpt[1][1]), pack_bf16x2(dpt[1][2], dpt[1][3])};
#pragma unroll
        for (int dt = 0; dt < D / 8; dt++) {
          uint32_t b0, b1;
          ldsm_b_trans(b0, b1, dOs + qc * 16 * KP + dt * 8, KP, lane);
          mma16816(dVa[dt], ap, b0, b1);
          ldsm_b_trans(b0, b1, Qs + qc * 16 * KP + dt * 8, KP, lane);
          mma16816(dKa[dt], as, b0, b1);
        }
      }
      __syncthreads();  // dSs complete

      // dQ[i0 + warp·16 …, :] += dS · K, straight to the fp32 accumulator.
      {
        uint32_t a[BC / 16][4];
        const int r0 = warp * 16 + g;
#pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
          const int c = kk * 16 + tq * 2;
          a[kk][0] = ld32(dSs + r0 * SP + c);
          a[kk][1] = ld32(dSs + (r0 + 8) * SP + c);
          a[kk][2] = ld32(dSs + r0 * SP + c + 8);
          a[kk][3] = ld32(dSs + (r0 + 8) * SP + c + 8);
        }
        const int qi0 = i0 + r0, qi1 = qi0 + 8;
        float* dq0 = dq_acc + (int64_t(b) * Tq + qi0) * qs + int64_t(h) * D;
        float* dq1 = dq0 + 8 * qs;
#pragma unroll 4
        for (int dt = 0; dt < D / 8; dt++) {
          float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
          for (int kk = 0; kk < BC / 16; kk++) {
            uint32_t b0, b1;
            ldsm_b_trans(b0, b1, Ks + kk * 16 * KP + dt * 8, KP, lane);
            mma16816(acc, a[kk], b0, b1);
          }
          const int col = dt * 8 + tq * 2;
          if (qi0 < Tq) atomicAdd(dq0 + col, acc[0]), atomicAdd(dq0 + col + 1, acc[1]);
          if (qi1 < Tq) atomicAdd(dq1 + col, acc[2]), atomicAdd(dq1 + col + 1, acc[3]);
        }
      }
      __syncthreads();  // before the next tile overwrites Qs, dOs, dSs
    }
  }

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

// dk, dv [B, Tk, Hkv, D] bf16 = (scale ·) Σ over each kv head's group of dk_part, dv_part [B, Tk, Hq, D].
__global__ void attn_dkv_reduce(bf16* dk, bf16* dv, const float* dk_part, const float* dv_part, int64_t n, int Hkv, int group, int D,
                                float scale) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int d = int(i % D);
    const int64_t jk = i / D;  // (b · Tk + j) · Hkv + kvh
    const int64_t base = (jk / Hkv * (int64_t(Hkv) * group) + (jk % Hkv) * group) * D + d;
    float a = 0.f, c = 0.f;
    for (int g = 0; g < group; g++) a += dk_part[base + int64_t(g) * D], c += dv_part[base + int64_t(g) * D];
    dk[i] = __float2bfloat16_rn(a * scale);
    dv[i] = __float2bfloat16_rn(c);
  }
}

// dq [n] bf16 = scale · dq_acc [n]
__global__ void attn_dq_convert(bf16* dq, const float* acc, float scale, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dq[i] = __float2bfloat16_rn(acc[i] * scale);
}

void check(int B, int Tq, int Tk, int Hq, int Hkv, int D) {
  LKC_REQUIRE(B > 0 && Tq > 0 && Tk > 0 && Hq > 0 && Hkv > 0 && D > 0, "attention sizes must be positive.");
  LKC_REQUIRE(Tq <= Tk, "attention needs at least as many keys as queries.");
  LKC_REQUIRE(Hq % Hkv == 0, "attention query heads must be a multiple of the key/value heads.");
  LKC_REQUIRE(D <= kAttnMaxD, "attention supports head dimensions up to 256.");
}

bool use_tc(int D, const void* a, const void* b2, const void* c) {
  return !g_force_generic && (D == 64 || D == 128) && aligned16(a) && aligned16(b2) && aligned16(c);
}

template <int D>
void launch_fwd_tc(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int32_t* seg, int B, int Tq, int Tk,
                   int Hq, int Hkv, float scale, cudaStream_t stream) {
  dim3 grid(ceil_div(Tq, BR), Hq, B);
  attn_fwd_tc<D><<<grid, 128, 0, stream>>>(out, lse, q, k, v, seg, Tq, Tk, Hq, Hkv, scale * kLog2e);
}

template <int D>
void launch_bwd_tc(bf16* dk, bf16* dv, float* dk_part, float* dv_part, float* dq_acc, const bf16* dout, const bf16* q, const bf16* k, const bf16* v,
                   const float* lse, const float* delta, const int32_t* seg, int B, int Tq, int Tk, int Hq, int Hkv, float scale,
                   cudaStream_t stream) {
  constexpr size_t smem = bwd_smem_bytes<D>();
  static bool configured = false;
  if (!configured) {
    LKC_CUDA(cudaFuncSetAttribute(attn_bwd_tc<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    configured = true;
  }
  dim3 grid(ceil_div(Tk, BC), Hq, B);
  attn_bwd_tc<D><<<grid, 128, smem, stream>>>(dk, dv, dk_part, dv_part, dq_acc, dout, q, k, v, lse, delta, seg, Tq, Tk, Hq, Hkv, scale * kLog2e,
                                              scale);
}

}  // namespace

void attention_set_force_generic(bool on) { g_force_generic = on; }

void attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int32_t* segments, int B, int Tq,
                       int Tk, int Hq, int Hkv, int D, float scale, cudaStream_t stream) {
  check(B, Tq, Tk, Hq, Hkv, D);
  if (use_tc(D, q, k, v) && aligned16(out)) {
    if (D == 64)
      launch_fwd_tc<64>(out, lse, q, k, v, segments, B, Tq, Tk, Hq, Hkv, scale, stream);
    else
      launch_fwd_tc<128>(out, lse, q, k, v, segments, B, Tq, Tk, Hq, Hkv, scale, stream);
    LKC_CHECK_LAUNCH("attention_forward");
  } else {
    attention_forward_generic(out, lse, q, k, v, segments, B, Tq, Tk, Hq, Hkv, D, scale, stream);
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

void attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out, const bf16* q, const bf16* k,
                        const bf16* v, const float* lse, const int32_t* segments, int B, int Tq, int Tk, int Hq, int Hkv, int D,
                        float scale, void* workspace, cudaStream_t stream) {
  check(B, Tq, Tk, Hq, Hkv, D);
  const int64_t nq = int64_t(B) * Tq * Hq * D;
  char* ws = static_cast<char*>(workspace);
  float* dq_acc = reinterpret_cast<float*>(ws);
  float* delta = reinterpret_cast<float*>(ws + a256(size_t(nq) * 4));
  const int64_t nkp = int64_t(B) * Tk * Hq * D;
  float* dk_part = Hq != Hkv ? reinterpret_cast<float*>(ws + a256(size_t(nq) * 4) + a256(size_t(B) * Hq * Tq * 4)) : nullptr;
  float* dv_part = dk_part ? dk_part + a256(size_t(nkp) * 4) / 4 : nullptr;
  attention_delta(delta, dout, out, B, Tq, Hq, D, stream);
  if (use_tc(D, q, k, v) && aligned16(dout) && aligned16(dk) && aligned16(dv)) {
    LKC_CUDA(cudaMemsetAsync(dq_acc, 0, size_t(nq) * 4, stream));
    if (D == 64)
      launch_bwd_tc<64>(dk, dv, dk_part, dv_part, dq_acc, dout, q, k, v, lse, delta, segments, B, Tq, Tk, Hq, Hkv, scale, stream);
    else
      launch_bwd_tc<128>(dk, dv, dk_part, dv_part, dq_acc, dout, q, k, v, lse, delta, segments, B, Tq, Tk, Hq, Hkv, scale, stream);
    LKC_CHECK_LAUNCH("attention_backward");
    if (dk_part) {
      const int64_t nk = int64_t(B) * Tk * Hkv * D;
      attn_dkv_reduce<<<grid_for(nk, 256), 256, 0, stream>>>(dk, dv, dk_part, dv_part, nk, Hkv, Hq / Hkv, D, scale);
      LKC_CHECK_LAUNCH("attention_dkv_reduce");
    }
    attn_dq_convert<<<grid_for(nq, 256), 256, 0, stream>>>(dq, dq_acc, scale, nq);
    LKC_CHECK_LAUNCH("attention_backward");
  } else {
    attention_backward_generic(dq, dk, dv, dout, q, k, v, lse, delta, segments, B, Tq, Tk, Hq, Hkv, D, scale, stream);
  }
}

}  // namespace lkc
