// Quantized matrix-vector products for a few rows (token-by-token generation, m = 1..8):
//   y [m, out] = x [m, in] · Wᵀ (+ bias [out])
// with W [out, in] 4-bit (NF4/FP4, bitsandbytes' layout, plain or double-quantized absmax) or int8 per
// row, read once and dequantized in registers. The QLoRA path it replaces dequantizes all of W into a
// bf16 temporary and runs a GEMM: 0.5 B/weight read + 2 B written + 2 B read again; this reads 0.5 B.
// Each weight is exactly the value dequant4.cu / dequant_int8.cu write for dtype t (bf16: the fp32
// product table·absmax rounded once; f32: the product itself), products and sums in fp32, bias added in
// fp32, one rounding to t: dequantize + GEMM up to the order of the fp32 sums.
//
// Tensor-core path (bf16; in % 32 == 0; 4-bit: blocksize % 32 == 0, packed and x 16-byte aligned; int8: q
// and x 16-byte aligned): mma.sync m16n8k16, bf16 inputs (exact products), fp32 accumulators, as the
// cuBLASLt GEMM it replaces. A block owns 16 output rows (the mma's M) and splits `in` over its 1 to 16
// warps (as many as fit all blocks in one wave) in steps of 128 columns; the mma's N = 8 are the rows of x
// (kMaxRows = 8; columns ≥ m are zeros). Each thread owns 32 consecutive columns of rows g and g + 8 per
// step (g = lane / 4): one 16-byte streaming load per row (4-bit; two for int8), issued two steps ahead
// into three rotating register buffers, plus 64 bytes of x row g (L1/L2-resident, only the lanes g < m
// load). The dot product's k order is free, so the A and B fragments use the thread's own columns (mma j
// of a step takes columns 4j..4j+3 of each thread's 32): no shuffles, no shared-memory staging. 4-bit
// values: the 16-entry fp32 table in shared memory at a 256-byte aligned address (one PRMT puts the
// nibble × 4 into the address's low byte), one FMUL by the block's absmax, one F2FP per pair; the absmax
// block is a running cursor (no division in the loop; blocks that straddle two rows need nothing special
// as long as blocksize % 32 == 0). int8 values: float(q) by the 2²³ trick (one PRMT, one FADD; I2F runs
// at 1/8 rate), two FMULs as dequant_int8.cu. The warps' partial tiles are summed in a fixed order
// through shared memory: results are bitwise repeatable.
// CUDA-core path (f32 always, bf16 otherwise, and quant_gemv_set_force_generic): one warp per output row,
// 8 values per lane and step when in % 8 == 0, blocksize % 8 == 0 (4-bit), and the pointers allow 4-
// (packed), 8- (q) and 16-byte (x) accesses, else one value per lane and step from the flattened index
// (any blocksize, odd in, rows starting mid-byte); fp32 FMAs, warp-shuffle sum.
//
// Design estimate (H200, 132 SMs at ≈ 1.98 GHz, ≈ 4.2 TB/s measured copy), NF4 + double quantization,
// W 14336×4096, m = 1..8: the floor is the 29.4 MB packed + 0.9 MB absmax_q at ≈ 4 TB/s ≈ 7.5 µs.
// The compiled loop (SASS) spends ≈ 5 instructions per weight: 1 PRMT, 1 LDS, 1 FMUL, ½ F2FP, ½ for
// the nibble masks, ⅛ HMMA and ≈ 0.6 of loads, cursor and loop; 58.7 M weights × 5 ≈ 290 M
// lane-instructions ≈ 9 µs of issue at 16 warps per SM, and the table lookups alone ≈ 7 µs of
// shared-memory bandwidth (one 32-lane LDS per clock per SM), overlapping the loads: expected 9-12 µs
// (2.5-3.3 TB/s of packed weights), the same at m = 4 (the mma's N is 8 either way). dequantize_4bit
// (49 µs, NOTES.md) + a GEMM that reads the 117 MB bf16 copy (≥ 28 µs) ≈ 80 µs: 7-8× slower.
// Measured (one H200, quant_gemv_check, cold weights): 14336×4096 m = 1 27.6 µs (1.06 TB/s of packed
// weights) against 93.3 µs for dequantize_4bit_dq + GEMM (3.4×); 4096×14336 22.1 µs (4.3×); 4096×4096
// 9.0 µs (3.4×); 1024×4096 6.1 µs (2.4×, 64 of 132 SMs busy); m = 4 within 10% of m = 1; the CUDA-core
// kernel forced at 14336×4096: 49.4 µs; int8 14336×4096 30.7 µs (5.3×). The estimate above was 2.3-3×
// too optimistic: the loop is not at the memory floor yet.
#include <algorithm>

#include "common.cuh"
#include "lorakit_cuda.h"
#include "quant4_codes.cuh"

namespace lkc {
namespace {

constexpr int kMaxRows = kQuantGemvMaxRows;  // 8: the N of one m16n8k16 mma
constexpr int kTileRows = 16;                 // output rows per block on the tensor-core path (the mma's M)
constexpr int kChunk = 32;                    // columns per thread and step (16 bytes of 4-bit, 32 of int8)
constexpr int kStepCols = 4 * kChunk;         // columns per warp and step
constexpr int kMaxWarps = 16;                 // tensor-core blocks: 1 to 16 warps (an SM's worth at 128 registers)
constexpr int kGenericWarps = 8;              // CUDA-core blocks: one row per warp
constexpr float kInv127 = static_cast<float>(7.874015718698502e-3);  // dequant_int8.cu's multiplier

bool g_force_generic = false;

// ---- device helpers ----------------------------------------------------------------------------------

// The value dequantize writes for dtype T, back in fp32: bf16 rounds once, f32 keeps it.
template <typename T>
__device__ __forceinline__ float rounded(float v) {
  return to_f32(from_f32<T>(v));
}

// a / b for a ≥ 0 that mostly fits 32 bits (64-bit division is a long software sequence).
__device__ __forceinline__ int64_t div_u32(int64_t a, uint32_t b) {
  return (a >> 32) == 0 ? int64_t(uint32_t(a) / b) : a / int64_t(b);
}

// Streaming 16-byte load of weights read once: no L1 allocation (x stays there), 256-byte L2 prefetch.
__device__ __forceinline__ uint4 ld_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ uint32_t word_of(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// The 16-entry code table in shared memory at a 256-byte aligned address, so that the address of entry k
// is the table's address with its low byte replaced by 4k: one PRMT per lookup, no add (on sm_90 the
// shared window's base is a register, so a plain table[k] costs a shift and an add).
struct Lut {
  float space[64 + 16];
  // Shared-memory address of the aligned table; every thread of the block gets the same.
  __device__ uint32_t base() const { return (static_cast<uint32_t>(__cvta_generic_to_shared(space)) + 255u) & ~255u; }
  __device__ void fill(int code) {
    const uint32_t b = base();
    if (threadIdx.x < 16) space[(b - static_cast<uint32_t>(__cvta_generic_to_shared(space))) / 4 + threadIdx.x] = kCodes[code][threadIdx.x];
  }
};
__device__ __forceinline__ float lds(uint32_t addr) {
  float v;
  asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(v) : "r"(addr));
  return v;
}
// Entry (byte b of x4) / 4 of the table at `base`, where x4 holds 4 · nibble in each byte.
__device__ __forceinline__ float lut_at(uint32_t base, uint32_t x4, int b) { return lds(__byte_perm(x4, base, 0x7650u | unsigned(b))); }

// D[16×8] += A[16×16] · B[16×8], bf16 inputs, fp32 accumulators (attention.cu's fragment layout):
// A regs {a0: (g, 2t..2t+1), a1: (g+8, 2t..), a2: (g, 2t+8..), a3: (g+8, 2t+8..)};
// B regs {b0: (k = 2t..2t+1, n = g), b1: (k = 2t+8.., n = g)}; C {c0,c1: (g, 2t..2t+1), c2,c3: (g+8, ..)}.
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---- weight sources ----------------------------------------------------------------------------------
// What the kernels need from a quantized W, for both paths:
//   Shared, load_shared(sh)       per-block tables (all threads call it, a barrier follows)
//   CUDA-core: Row row(r, in); value1<T>(sh, row, c); values8<T>(sh, row, c, v[8]) (c % 8 == 0)
//   tensor-core: Step step(cols); Cursor cursor(r, c, in, ok); advance(cursor, step); Raw load(cursor)
//     (the step's global loads, nothing that waits on them); scale(sh, raw); table(sh); pairs(table,
//     raw, scale, j, pa, pb): the bf16 pairs of columns (4j, 4j+1) and (4j+2, 4j+3) of the thread's 32.

// 4-bit: element i = r·in + c of the flattened W in byte i / 2 (high nibble first), absmax per
// `bs` consecutive elements; DQ: absmax[j] = code2[absmax_q[j]] · absmax2[j / bs2] + offset (two roundings).
template <bool DQ>
struct Q4 {
  const uint8_t* packed;
  const float* absmax;
  const uint8_t* absmax_q;
  const float* absmax2;
  const float* code2;
  float offset;
  int code, bs, bs2;

  struct Shared {
    Lut lut;
    float code2[DQ ? 256 : 1];
  };
  __device__ void load_shared(Shared& sh) const {
    sh.lut.fill(code);
    if (DQ)
      for (int i = threadIdx.x; i < 256; i += blockDim.x) sh.code2[i] = code2[i];
  }
  __device__ float absmax_of(const Shared& sh, int64_t j) const {
    if (DQ) return __fadd_rn(__fmul_rn(sh.code2[__ldg(absmax_q + j)], __ldg(absmax2 + div_u32(j, uint32_t(bs2)))), offset);
    return __ldg(absmax + j);
  }

  // CUDA-core path. Row: flat index of (r, 0) and its block quotient/remainder, so that the block of
  // column c is jq + (jr + c) / bs in 32 bits (jr < bs and c < in, both below 2³¹).
  struct Row {
    int64_t base, jq;
    uint32_t jr;
  };
  __device__ Row row(int64_t r, int64_t in) const {
    const int64_t base = r * in;
    return {base, base / bs, uint32_t(base % bs)};
  }
  __device__ int64_t block_of(const Row& rw, int64_t c) const { return rw.jq + (rw.jr + uint32_t(c)) / uint32_t(bs); }
  template <typename T>
  __device__ float value1(const Shared& sh, const Row& rw, int64_t c) const {
    const int64_t i = rw.base + c;
    const uint32_t byte = __ldg(packed + (i >> 1));
    const uint32_t nib = (i & 1) ? (byte & 15) : (byte >> 4);
    return rounded<T>(__fmul_rn(lds(sh.lut.base() + 4 * nib), absmax_of(sh, block_of(rw, c))));
  }
  // c % 8 == 0 with in % 8 == 0 and bs % 8 == 0: the 8 values share one block and one aligned word.
  template <typename T>
  __device__ void values8(const Shared& sh, const Row& rw, int64_t c, float (&v)[8]) const {
    const uint32_t w = __ldg(reinterpret_cast<const uint32_t*>(packed + (rw.base + c) / 2));
    const uint32_t hi4 = (w >> 2) & 0x3c3c3c3cu, lo4 = (w << 2) & 0x3c3c3c3cu, base = sh.lut.base();
    const float s = absmax_of(sh, block_of(rw, c));
#pragma unroll
    for (int b = 0; b < 4; b++) {
      v[2 * b] = rounded<T>(__fmul_rn(lut_at(base, hi4, b), s));
      v[2 * b + 1] = rounded<T>(__fmul_rn(lut_at(base, lo4, b), s));
    }
  }

  // Tensor-core path (in % 32 == 0, bs % 32 == 0: a thread's 32 columns lie in one block and 16
  // aligned bytes). The cursor follows the thread's chunk: its bytes, its absmax (DQ: absmax_q and
  // absmax2) entries, its offset in the block (and DQ: the block's offset in its absmax2 block).
  struct Step {
    int64_t bytes;
    uint32_t dq, dr;    // columns per step = dq · bs + dr
    uint32_t dq2, dr2;  // DQ: dq = dq2 · bs2 + dr2
  };
  struct Cursor {
    const uint8_t* p;
    const uint8_t* aq;  // DQ: absmax_q + j
    const float* a;     // absmax + j, or DQ: absmax2 + j / bs2
    uint32_t r, r2;     // (r·in + c) % bs, and DQ: j % bs2
  };
  struct Raw {
    uint4 q;
    uint32_t aq;  // DQ: absmax_q[j]
    float a;      // absmax[j], or DQ: absmax2[j / bs2]
  };
  __device__ Step step(int64_t cols) const {
    const uint32_t dq = uint32_t(cols / bs);
    return {cols / 2, dq, uint32_t(cols % bs), DQ ? dq / uint32_t(bs2) : 0u, DQ ? dq % uint32_t(bs2) : 0u};
  }
  __device__ Cursor cursor(int64_t r, int64_t c, int64_t in, bool) const {
    const int64_t i = r * in + c, j = i / bs;
    Cursor k;
    k.p = packed + i / 2;
    k.r = uint32_t(i % bs);
    k.aq = DQ ? absmax_q + j : nullptr;
    k.a = DQ ? absmax2 + j / bs2 : absmax + j;
    k.r2 = DQ ? uint32_t(j % bs2) : 0u;
    return k;
  }
  // The block index moves by dq or dq + 1 (carry); r2 + dr2 + carry < 2 · bs2, so one wrap at most.
  __device__ void advance(Cursor& k, const Step& st) const {
    k.p += st.bytes;
    k.r += st.dr;
    const uint32_t carry = k.r >= uint32_t(bs);
    if (carry) k.r -= uint32_t(bs);
    if (DQ) {
      k.aq += st.dq + carry;
      k.a += st.dq2;
      k.r2 += st.dr2 + carry;
      if (k.r2 >= uint32_t(bs2)) k.r2 -= uint32_t(bs2), k.a++;
    } else {
      k.a += st.dq + carry;
    }
  }
  __device__ Raw load(const Cursor& k) const {
    Raw w;
    w.q = ld_stream(k.p);
    w.aq = DQ ? __ldg(k.aq) : 0u;
    w.a = __ldg(k.a);
    return w;
  }
  __device__ float scale(const Shared& sh, const Raw& w) const {
    return DQ ? __fadd_rn(__fmul_rn(sh.code2[w.aq], w.a), offset) : w.a;
  }
  // Bytes 2j and 2j+1 of the chunk; each byte is the pair (high nibble, low nibble). `base`: the table.
  __device__ void pairs(uint32_t base, const Raw& w, float s, int j, uint32_t& pa, uint32_t& pb) const {
    const uint32_t word = word_of(w.q, j >> 1);
    const uint32_t hi4 = (word >> 2) & 0x3c3c3c3cu, lo4 = (word << 2) & 0x3c3c3c3cu;  // 4 · nibble per byte
    const int b = 2 * (j & 1);
    pa = pack_bf16x2(__fmul_rn(lut_at(base, hi4, b), s), __fmul_rn(lut_at(base, lo4, b), s));
    pb = pack_bf16x2(__fmul_rn(lut_at(base, hi4, b + 1), s), __fmul_rn(lut_at(base, lo4, b + 1), s));
  }
  __device__ uint32_t table(const Shared& sh) const { return sh.lut.base(); }
};

// int8 per row: W[r, c] = (float(q[r, c]) · scale[r]) · kInv127, two fp32 roundings (dequant_int8.cu).
struct Q8 {
  const int8_t* q;
  const float* scale_;

  struct Shared {
    int unused;
  };
  __device__ void load_shared(Shared&) const {}
  __device__ static float value(float fq, float sc) { return __fmul_rn(__fmul_rn(fq, sc), kInv127); }

  struct Row {
    int64_t base;
    float sc;
  };
  __device__ Row row(int64_t r, int64_t in) const { return {r * in, __ldg(scale_ + r)}; }
  template <typename T>
  __device__ float value1(const Shared&, const Row& rw, int64_t c) const {
    return rounded<T>(value(float(__ldg(q + rw.base + c)), rw.sc));
  }
  template <typename T>
  __device__ void values8(const Shared&, const Row& rw, int64_t c, float (&v)[8]) const {
    const uint2 u = __ldg(reinterpret_cast<const uint2*>(q + rw.base + c));
#pragma unroll
    for (int i = 0; i < 8; i++) v[i] = rounded<T>(value(float(int8_t(((i < 4 ? u.x : u.y) >> (8 * (i & 3))) & 0xff)), rw.sc));
  }

  struct Step {
    int64_t bytes;
  };
  struct Cursor {
    const int8_t* p;
    float sc;
  };
  struct Raw {
    uint4 q0, q1;
    float a;
  };
  __device__ Step step(int64_t cols) const { return {cols}; }
  __device__ Cursor cursor(int64_t r, int64_t c, int64_t in, bool ok) const { return {q + r * in + c, ok ? __ldg(scale_ + r) : 0.f}; }
  __device__ void advance(Cursor& k, const Step& st) const { k.p += st.bytes; }
  __device__ Raw load(const Cursor& k) const { return {ld_stream(k.p), ld_stream(k.p + 16), k.sc}; }
  __device__ float scale(const Shared&, const Raw& w) const { return w.a; }
  // float(q) exactly: the float with bits 0x4B0000uu is 2²³ + uu, and uu = q + 128 (q ^ 0x80).
  __device__ static float s8(uint32_t flipped, int b) {
    return __fsub_rn(__uint_as_float(__byte_perm(flipped, 0x4B000000u, 0x7540u | unsigned(b))), 8388736.f);
  }
  // Bytes 4j..4j+3 of the chunk: pairs (4j, 4j+1) and (4j+2, 4j+3).
  __device__ void pairs(uint32_t, const Raw& w, float s, int j, uint32_t& pa, uint32_t& pb) const {
    const uint32_t f = (j < 4 ? word_of(w.q0, j) : word_of(w.q1, j - 4)) ^ 0x80808080u;
    pa = pack_bf16x2(value(s8(f, 0), s), value(s8(f, 1), s));
    pb = pack_bf16x2(value(s8(f, 2), s), value(s8(f, 3), s));
  }
  __device__ uint32_t table(const Shared&) const { return 0u; }
};

// ---- kernels -----------------------------------------------------------------------------------------

__device__ __forceinline__ void put(bf16* y, const bf16* bias, int64_t row, int n, float v, int m, int64_t out) {
  if (row < out && n < m) y[n * out + row] = __float2bfloat16_rn(bias ? v + __bfloat162float(bias[row]) : v);
}

// y [m, out] bf16 <- x [m, in] bf16, W of Src, bias [out] bf16 or null. Block: 16 rows of y, nw = blockDim / 32
// warps over `in` in steps of 128 columns (warp w takes steps w, w + nw, ...).
template <class Src>
__global__ void __launch_bounds__(kMaxWarps * 32) gemv_mma_kernel(bf16* y, const bf16* x, const Src src, const bf16* bias, int m,
                                                                   int64_t out, int64_t in) {
  __shared__ typename Src::Shared sh;
  __shared__ float4 part[kMaxWarps][32];
  src.load_shared(sh);
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5, g = lane >> 2, t = lane & 3;
  const int64_t r0 = int64_t(blockIdx.x) * kTileRows + g, r1 = r0 + 8;  // the A rows of this thread
  const bool ok0 = r0 < out, ok1 = r1 < out;
  // Columns in 32 bits: in < 2³¹ and a thread's column stays below in + 3 · 2048.
  const uint32_t n_in = uint32_t(in), stride = uint32_t(nw) * kStepCols;
  const typename Src::Step st = src.step(stride);
  uint32_t c = uint32_t(warp) * kStepCols + t * kChunk;  // the thread's first column in the current step
  // Weights two steps ahead, in three rotating buffers (no register moves). A chunk past the end of the
  // row or a row past `out` is not loaded: the buffer keeps zeros or an earlier chunk's (finite) values,
  // which meet zeros of x or land in rows nobody stores.
  typename Src::Cursor k0 = src.cursor(r0, c, in, ok0), k1 = src.cursor(r1, c, in, ok1);
  typename Src::Raw b0[2] = {}, b1[2] = {}, b2[2] = {};
  auto fetch = [&](typename Src::Raw(&w)[2], bool inside) {
    if (inside && ok0) w[0] = src.load(k0);
    if (inside && ok1) w[1] = src.load(k1);
    src.advance(k0, st);
    src.advance(k1, st);
  };
  fetch(b0, c < n_in);
  fetch(b1, c + stride < n_in);
  const uint4* xp = reinterpret_cast<const uint4*>(x + int64_t(g) * in + c);  // row g of x = column g of B
  const uint32_t table = src.table(sh);
  uint4 xv[4] = {};  // x[g, c .. c + 32) as bf16 pairs: words 2j, 2j+1 are mma j's B fragment
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  auto step = [&](const typename Src::Raw(&w)[2], typename Src::Raw(&ahead)[2]) {
    if (g < m) {  // the other lanes' B columns stay zero
      if (c < n_in) {
#pragma unroll
        for (int i = 0; i < 4; i++) xv[i] = __ldg(xp + i);
      } else {
#pragma unroll
        for (int i = 0; i < 4; i++) xv[i] = make_uint4(0u, 0u, 0u, 0u);
      }
    }
    fetch(ahead, c + 2 * stride < n_in);
    const float s0 = src.scale(sh, w[0]), s1 = src.scale(sh, w[1]);
#pragma unroll
    for (int j = 0; j < 8; j++) {
      uint32_t a[4];
      src.pairs(table, w[0], s0, j, a[0], a[2]);
      src.pairs(table, w[1], s1, j, a[1], a[3]);
      mma16816(acc, a, word_of(xv[j >> 1], 2 * (j & 1)), word_of(xv[j >> 1], 2 * (j & 1) + 1));
    }
    c += stride, xp += stride / 8;
  };
  // Steps while the warp's step is inside the row (c of lane t = 0 is the step's first column).
  const uint32_t c_end = n_in + uint32_t(t) * kChunk;
  while (c < c_end) {
    step(b0, b2);
    if (c >= c_end) break;
    step(b1, b0);
    if (c >= c_end) break;
    step(b2, b1);
  }
  part[warp][lane] = make_float4(acc[0], acc[1], acc[2], acc[3]);
  __syncthreads();
  if (warp != 0) return;
  float4 v = part[0][lane];
  for (int w = 1; w < nw; w++) {  // fixed order: bitwise repeatable
    const float4 u = part[w][lane];
    v.x += u.x, v.y += u.y, v.z += u.z, v.w += u.w;
  }
  put(y, bias, r0, 2 * t, v.x, m, out);
  put(y, bias, r0, 2 * t + 1, v.y, m, out);
  put(y, bias, r1, 2 * t, v.z, m, out);
  put(y, bias, r1, 2 * t + 1, v.w, m, out);
}

// y [m, out] of T <- x [m, in] of T, W of Src, bias [out] of T or null. One warp per row of W; VEC: 8
// columns per lane and step (in % 8 == 0, 16-byte aligned x, the source's own conditions).
template <typename T, class Src, bool VEC>
__global__ void __launch_bounds__(kGenericWarps * 32) gemv_generic_kernel(T* y, const T* x, const Src src, const T* bias, int m,
                                                                          int64_t out, int64_t in) {
  __shared__ typename Src::Shared sh;
  src.load_shared(sh);
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kGenericWarps + (threadIdx.x >> 5);
  if (row >= out) return;  // whole warps
  const typename Src::Row rw = src.row(row, in);
  float acc[kMaxRows] = {};
  if (VEC) {
    for (int64_t c = int64_t(lane) * 8; c < in; c += 32 * 8) {
      float v[8];
      src.template values8<T>(sh, rw, c, v);
#pragma unroll
      for (int n = 0; n < kMaxRows; n++) {
        if (n >= m) break;
        float xv[8];
        load8(x + n * in + c, xv);
#pragma unroll
        for (int i = 0; i < 8; i++) acc[n] = fmaf(v[i], xv[i], acc[n]);
      }
    }
  } else {
    for (int64_t c = lane; c < in; c += 32) {
      const float v = src.template value1<T>(sh, rw, c);
#pragma unroll
      for (int n = 0; n < kMaxRows; n++) {
        if (n >= m) break;
        acc[n] = fmaf(v, to_f32(x[n * in + c]), acc[n]);
      }
    }
  }
#pragma unroll
  for (int n = 0; n < kMaxRows; n++) {
    if (n >= m) break;
    const float s = warp_sum(acc[n]);
    if (lane == 0) y[n * out + row] = from_f32<T>(bias ? s + to_f32(bias[row]) : s);
  }
}

// ---- launchers ---------------------------------------------------------------------------------------

void check_sizes(DType t, int64_t m, int64_t out, int64_t in) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, std::string("quantized GEMV takes f32 or bf16 activations, not ") + dtype_name(t) + ".");
  LKC_REQUIRE(m >= 0 && m <= kMaxRows, "quantized GEMV takes 0 to " + std::to_string(kMaxRows) + " rows of x (got m = " +
                                           std::to_string(m) + "); use dequantize and GEMM for more.");
  LKC_REQUIRE(out >= 0 && in >= 0 && out <= INT32_MAX && in <= INT32_MAX, "quantized GEMV needs out and in in [0, 2^31).");
}

template <typename T, class Src>
void launch_generic(void* y, const void* x, const Src& src, const void* bias, int64_t m, int64_t out, int64_t in, bool vec,
                    cudaStream_t stream) {
  const unsigned grid = ceil_div(out, kGenericWarps);
  auto* yt = static_cast<T*>(y);
  auto* xt = static_cast<const T*>(x);
  auto* bt = static_cast<const T*>(bias);
  if (vec)
    gemv_generic_kernel<T, Src, true><<<grid, kGenericWarps * 32, 0, stream>>>(yt, xt, src, bt, int(m), out, in);
  else
    gemv_generic_kernel<T, Src, false><<<grid, kGenericWarps * 32, 0, stream>>>(yt, xt, src, bt, int(m), out, in);
}

// Warps per block: as many as keep every tile resident at once (at ≤ 128 registers an SM holds 16 warps),
// so that there is one wave and each warp's two-step prefetch is paid once over as many steps as
// possible: 14336×4096 (896 tiles) gets 2 warps of 16 steps, 4096×4096 (256) 8 warps, 1024×4096 (64)
// 16; never more warps than 128-column steps, at least one.
template <class Src>
void launch_mma(void* y, const void* x, const Src& src, const void* bias, int64_t m, int64_t out, int64_t in, cudaStream_t stream) {
  const int64_t tiles = (out + kTileRows - 1) / kTileRows, nsteps = (in + kStepCols - 1) / kStepCols;
  const int64_t resident = int64_t(num_sms()) * kMaxWarps;
  const int nw = int(std::max<int64_t>(1, std::min({resident / tiles, int64_t(kMaxWarps), nsteps})));
  gemv_mma_kernel<Src><<<unsigned(tiles), nw * 32, 0, stream>>>(static_cast<bf16*>(y), static_cast<const bf16*>(x), src,
                                                                 static_cast<const bf16*>(bias), int(m), out, in);
}

template <bool DQ>
void dispatch_4bit(void* y, DType t, const void* x, const Q4<DQ>& src, const void* bias, int64_t m, int64_t out, int64_t in,
                   cudaStream_t stream) {
  const uintptr_t pk = reinterpret_cast<uintptr_t>(src.packed);
  const bool vec = in % 8 == 0 && src.bs % 8 == 0 && (pk & 3) == 0 && aligned16(x);
  if (t == DType::F32)
    launch_generic<float>(y, x, src, bias, m, out, in, vec, stream);
  else if (!g_force_generic && in % kChunk == 0 && src.bs % kChunk == 0 && (pk & 15) == 0 && aligned16(x))
    launch_mma(y, x, src, bias, m, out, in, stream);
  else
    launch_generic<bf16>(y, x, src, bias, m, out, in, vec, stream);
}

}  // namespace

void quant_gemv_4bit(void* y, DType t, const void* x, const uint8_t* packed, const float* absmax, const uint8_t* absmax_q,
                     const float* absmax2, const float* code2, float offset, int code, const void* bias, int64_t m, int64_t out,
                     int64_t in, int blocksize, int blocksize2, cudaStream_t stream) {
  check_sizes(t, m, out, in);
  LKC_REQUIRE(code == 0 || code == 1, "4-bit code must be 0 (NF4) or 1 (FP4).");
  LKC_REQUIRE(blocksize > 0, "4-bit block size must be positive.");
  LKC_REQUIRE(!absmax_q || blocksize2 > 0, "4-bit double-quantization block size must be positive.");
  if (m == 0 || out == 0) return;
  LKC_REQUIRE(absmax_q ? absmax2 && code2 : absmax != nullptr,
              "4-bit GEMV needs absmax, or absmax_q with absmax2 and code2 (double quantization).");
  if (absmax_q)
    dispatch_4bit(y, t, x, Q4<true>{packed, nullptr, absmax_q, absmax2, code2, offset, code, blocksize, blocksize2}, bias, m, out, in,
                  stream);
  else
    dispatch_4bit(y, t, x, Q4<false>{packed, absmax, nullptr, nullptr, nullptr, 0.f, code, blocksize, 1}, bias, m, out, in, stream);
  LKC_CHECK_LAUNCH("quant_gemv_4bit");
}

void quant_gemv_int8(void* y, DType t, const void* x, const int8_t* q, const float* scale, const void* bias, int64_t m, int64_t out,
                     int64_t in, cudaStream_t stream) {
  check_sizes(t, m, out, in);
  if (m == 0 || out == 0) return;
  const Q8 src{q, scale};
  const uintptr_t qa = reinterpret_cast<uintptr_t>(q);
  const bool vec = in % 8 == 0 && (qa & 7) == 0 && aligned16(x);
  if (t == DType::F32)
    launch_generic<float>(y, x, src, bias, m, out, in, vec, stream);
  else if (!g_force_generic && in % kChunk == 0 && (qa & 15) == 0 && aligned16(x))
    launch_mma(y, x, src, bias, m, out, in, stream);
  else
    launch_generic<bf16>(y, x, src, bias, m, out, in, vec, stream);
  LKC_CHECK_LAUNCH("quant_gemv_int8");
}

void quant_gemv_set_force_generic(bool on) { g_force_generic = on; }

}  // namespace lkc
