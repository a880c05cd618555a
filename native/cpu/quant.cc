// Quantized base weights (QLoRA): NF4/FP4 blockwise 4-bit and int8 per-row, bit-compatible with
// bitsandbytes, and the quantized linear layer that runs on them.
//
// 4-bit layout (bitsandbytes): the weight is flattened row-major and cut into blocks of `blocksize`
// values; each block keeps absmax = max|x| (fp32), and each value the index of the nearest of 16 code
// values of x/absmax. Two indices share a byte, the even element in the high nibble. With double
// quantization the fp32 absmax array is itself stored as 8-bit codes (bitsandbytes' dynamic map) in
// blocks of 256 with one fp32 scale each, around a mean offset: absmax[b] = code8[q[b]]·s[b/256] + offset.
// int8 (bitsandbytes' Int8Params row format, from the fp16-rounded weight): q = round(x · 127/rowabsmax),
// x ≈ q · rowabsmax / 127.
//
// quant_linear forward/backward never hold the dense weight. For up to 8 rows of x (decoding) the dot
// products read the packed weight directly and dequantize it in registers; for more, a tile of W's rows
// is dequantized into a small fp32 buffer (sized for L2), multiplied with the shared GEMM (gemm.h), and
// reused for the next tile. Backward computes dx only (the base weight is frozen); it needs nothing
// saved but x's shape. The ISA-specific pieces (code-book lookup, int8 widening) are quant_kernel.h.
// GCC 12 reports a false positive inside its own AVX-512 headers (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <type_traits>

#include "gemm.h"
#include "napi_util.h"
#include "parallel.h"
#include "quant_kernel.h"
#include "simd.h"

namespace lk {
namespace {
namespace v = simd;
constexpr int64_t L = v::kLanes;  // one 4-bit lookup covers 2·L elements, L bytes

enum Kind { kNF4 = 0, kFP4 = 1, kInt8 = 2 };

// Code values as bitsandbytes builds them: Python doubles rounded to fp32 (FP4: ±{0, 1/16, 8, 12, 4, 6,
// 2, 3}/12 in bit-pattern order, divided in fp32).
constexpr double kNF4d[16] = {-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                              -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                              0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                              0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0};
constexpr double kFP4d[16] = {0.0, 0.0052083334885537624, 0.6666666865348816, 1.0, 0.3333333432674408, 0.5,
                              0.1666666716337204, 0.25, 0.0, -0.0052083334885537624, -0.6666666865348816, -1.0,
                              -0.3333333432674408, -0.5, -0.1666666716337204, -0.25};
// FP4 code indices in ascending value order (torch.argsort of the code on the reference machine; the
// two zeros keep their index order).
constexpr uint8_t kFP4Order[16] = {11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3};

struct Code4 {
  float value[16];
  float mid[15];  // midpoints of the sorted values: a value's bucket is how many lie below it
  uint8_t order[16];
};

Code4 make_code(int kind) {
  Code4 c;
  const double* src = kind == kNF4 ? kNF4d : kFP4d;
  for (int i = 0; i < 16; i++) {
    c.value[i] = static_cast<float>(src[i]);
    c.order[i] = kind == kNF4 ? static_cast<uint8_t>(i) : kFP4Order[i];
  }
  for (int i = 0; i < 15; i++) c.mid[i] = (c.value[c.order[i]] + c.value[c.order[i + 1]]) / 2.0f;
  return c;
}

const Code4& code4(int kind) {
  static const Code4 nf4 = make_code(kNF4), fp4 = make_code(kFP4);
  return kind == kNF4 ? nf4 : fp4;
}

// torch.bucketize(v, mid, right=False), then the code index: 15 compares, branch-free.
inline uint8_t bucket(const Code4& c, float v) {
  int q = 0;
  for (int i = 0; i < 15; i++) q += c.mid[i] < v;
  return c.order[q];
}

// out [(n+1)/2] packed, absmax [ceil(n/bs)], x [n]. Matches bitsandbytes' quantize_4bit (its torch
// implementation, used on CPU): full blocks scale by the fp32 reciprocal of absmax, the last partial
// block divides; both clamp absmax at 1e-38 and the result to [-1, 1]. An odd n pads one zero.
void quantize_4bit(uint8_t* out, float* absmax, const float* x, int64_t n, int64_t bs, int kind) {
  const Code4& c = code4(kind);
  const int64_t nb = (n + bs - 1) / bs, full = n / bs;
  const float tiny = static_cast<float>(1e-38);
  parallel_for(nb, std::max<int64_t>(1, 4096 / bs), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
      const int64_t s = b * bs, e = std::min(n, s + bs);
      float am = 0;
      for (int64_t i = s; i < e; i++) am = std::max(am, std::fabs(x[i]));
      absmax[b] = am;
      const float d = std::max(am, tiny), r = 1.0f / d;
      const bool whole = b < full;
      for (int64_t i = s; i < e; i += 2) {
        float v0 = whole ? x[i] * r : x[i] / d;
        float v1 = i + 1 < e ? (whole ? x[i + 1] * r : x[i + 1] / d) : 0.0f;
        v0 = std::min(1.0f, std::max(-1.0f, v0));
        v1 = std::min(1.0f, std::max(-1.0f, v1));
        out[i >> 1] = static_cast<uint8_t>(bucket(c, v0) << 4 | bucket(c, v1));
      }
    }
  });
}

// A quantized weight W [rows, cols] as the kernels see it.
struct QW {
  int kind;
  int64_t bs, nested_bs, rows, cols;
  const uint8_t* data;
  const float* absmax;     // 4-bit: per block (null when nested); int8: per row
  const uint8_t* qabsmax;  // double quant: 8-bit absmax codes
  const float* absmax2;    // double quant: one scale per nested block
  const float* code8;      // double quant: the 8-bit code (256 values)
  float offset;

  float scale(int64_t b) const {
    if (!qabsmax) return absmax[b];
    float p = code8[qabsmax[b]] * absmax2[b / nested_bs];
    asm volatile("" : "+x"(p));  // round the product: bitsandbytes multiplies, then adds (no FMA)
    return p + offset;
  }
};

// W's 4-bit elements are walked per row and cut where a block of `bs` ends, since one scale holds per
// block; BlockWalk keeps the block index and offset of a row's first element without dividing per row.
struct BlockWalk {
  int64_t blk, off;  // the element's block and its offset in it
  int64_t cb, cr;    // cols / bs, cols % bs: the step to the next row
  int64_t bs;
  BlockWalk(const QW& w, int64_t r) : bs(std::max<int64_t>(w.bs, 1)) {  // int8 has no blocks: any bs
    blk = r * w.cols / bs, off = r * w.cols % bs, cb = w.cols / bs, cr = w.cols % bs;
  }
  void next_row() {
    blk += cb;
    off += cr;
    if (off >= bs) off -= bs, blk++;
  }
};

// out [n] (n <= 2·kLanes) <- the 4-bit elements [e, e + n) of W scaled by s, one at a time (loop tails,
// odd starts): the same products the table lookup gives.
inline void decode4_tail(float* out, const QW& w, const float* code, float s, int64_t e, int64_t n) {
  for (int64_t k = 0; k < n; k++, e++) {
    const uint8_t byte = w.data[e >> 1];
    out[k] = code[e & 1 ? byte & 15 : byte >> 4] * s;
  }
}

// out [(r1-r0), cols] = W[r0:r1] dequantized: code·absmax in fp32 exactly as bitsandbytes.
void dequant_rows(float* out, const QW& w, int64_t r0, int64_t r1) {
  const int64_t cols = w.cols;
  if (w.kind == kInt8) {
    const float inv127 = static_cast<float>(7.874015718698502e-3);
    parallel_for(r1 - r0, std::max<int64_t>(1, 8192 / std::max<int64_t>(cols, 1)), [&](int64_t a, int64_t b) {
      for (int64_t r = r0 + a; r < r0 + b; r++) {
        const int8_t* q = reinterpret_cast<const int8_t*>(w.data) + r * cols;
        const float s = w.absmax[r];
        const v::F vs = v::set1(s), vc = v::set1(inv127);
        float* o = out + (r - r0) * cols;
        int64_t j = 0;
        for (; j + L <= cols; j += L) v::store(o + j, (v::load_i8(q + j) * vs) * vc);
        for (; j < cols; j++) o[j] = (static_cast<float>(q[j]) * s) * inv127;
      }
    });
    return;
  }
  const float* code = code4(w.kind).value;
  const qk::Lut4 base = qk::lut4(code);
  parallel_for(r1 - r0, std::max<int64_t>(1, 8192 / std::max<int64_t>(cols, 1)), [&](int64_t a, int64_t b) {
    // Elements [e, e1) of the flattened weight, cut at block boundaries (one scale per piece).
    int64_t e = (r0 + a) * cols;
    const int64_t e1 = (r0 + b) * cols;
    float* o = out + a * cols;
    while (e < e1) {
      const int64_t blk = e / w.bs, stop = std::min(e1, (blk + 1) * w.bs);
      const float s = w.scale(blk);
      if (e & 1) {  // odd start: finish the byte
        decode4_tail(o++, w, code, s, e++, 1);
      }
      const qk::Lut4 t = qk::scaled(base, v::set1(s));
      for (; e + 2 * L <= stop; e += 2 * L, o += 2 * L) {
        v::F lo, hi;
        qk::lookup4(t, w.data + (e >> 1), lo, hi);
        v::store(o, lo);
        v::store(o + L, hi);
      }
      decode4_tail(o, w, code, s, e, stop - e);
      o += stop - e;
      e = stop;
    }
  });
}

struct Buffer {
  float* p;
  explicit Buffer(int64_t n) : p(static_cast<float*>(std::aligned_alloc(64, std::max<int64_t>(64, (n * 4 + 63) / 64 * 64)))) {
    if (!p) throw std::runtime_error("out of memory for a dequantization tile");
  }
  ~Buffer() { std::free(p); }
};

// ---- few rows of x (decode): dot products straight from the quantized weight ----------------------
// y [m, out] = x [m, in] · Wᵀ for m <= kGemvRows reads each weight byte once and dequantizes it in
// registers: the work is bound by reading W, and nothing is written but y. dx = g · W likewise.
constexpr int64_t kGemvRows = 8;

// acc[i] += wv [n] · x_i [n] for the MR rows x_i = x + i·ldx; n <= 2·kLanes (tails, odd starts).
template <int MR>
LK_INLINE void dot_tail(v::F* acc, const float* wv, int64_t n, const float* x, int64_t ldx) {
  for (int64_t k = 0; k < n; k += L) {
    const v::F wk = v::load(wv + k, n - k);
    for (int i = 0; i < MR; i++) acc[i] = simd::fma(wk, v::load(x + i * ldx + k, n - k), acc[i]);
  }
}

// Independent accumulators per row of x, so that few rows still hide the FMA latency.
template <int MR>
constexpr int kAcc = MR <= 2 ? 4 : MR <= 4 ? 2 : 1;

// y[i, r] = x_i · W[r] (+ bias[r]) for i < MR, r in [r0, r1); W 4-bit, x [MR, cols], y [MR, rows].
template <int MR>
void gemv4(float* y, const float* x, const float* bias, const QW& w, int64_t r0, int64_t r1) {
  constexpr int NA = kAcc<MR>, U = NA >= 2 ? NA / 2 : 1;  // U lookups (2 vectors each) per step
  const int64_t cols = w.cols, out = w.rows;
  const float* code = code4(w.kind).value;
  const qk::Lut4 base = qk::lut4(code);
  BlockWalk bw(w, r0);
  for (int64_t r = r0; r < r1; r++, bw.next_row()) {
    v::F acc[NA][MR];
    for (auto& a : acc)
      for (auto& b : a) b = v::zero();
    const int64_t row0 = r * cols, end = row0 + cols;
    int64_t e = row0, blk = bw.blk, stop = std::min(end, row0 - bw.off + w.bs);
    for (; e < end; blk++, stop = std::min(end, stop + w.bs)) {
      const float s = w.scale(blk);
      if (e & 1) {  // odd start (odd cols): the low nibble of a byte the previous row began
        float wv;
        decode4_tail(&wv, w, code, s, e, 1);
        dot_tail<MR>(acc[0], &wv, 1, x + (e - row0), cols);
        e++;
      }
      const qk::Lut4 t = qk::scaled(base, v::set1(s));
      for (; e + 2 * U * L <= stop; e += 2 * U * L) {
        const float* xj = x + (e - row0);
        for (int u = 0; u < U; u++) {
          v::F lo, hi;
          qk::lookup4(t, w.data + (e >> 1) + u * L, lo, hi);
          for (int i = 0; i < MR; i++) {
            const float* xi = xj + i * cols + 2 * u * L;
            acc[(2 * u) % NA][i] = simd::fma(lo, v::load(xi), acc[(2 * u) % NA][i]);
            acc[(2 * u + 1) % NA][i] = simd::fma(hi, v::load(xi + L), acc[(2 * u + 1) % NA][i]);
          }
        }
      }
      for (; U > 1 && e + 2 * L <= stop; e += 2 * L) {
        const float* xj = x + (e - row0);
        v::F lo, hi;
        qk::lookup4(t, w.data + (e >> 1), lo, hi);
        for (int i = 0; i < MR; i++) {
          acc[0][i] = simd::fma(lo, v::load(xj + i * cols), acc[0][i]);
          acc[1 % NA][i] = simd::fma(hi, v::load(xj + i * cols + L), acc[1 % NA][i]);
        }
      }
      if (e < stop) {
        float wv[2 * L];
        decode4_tail(wv, w, code, s, e, stop - e);
        dot_tail<MR>(acc[0], wv, stop - e, x + (e - row0), cols);
        e = stop;
      }
    }
    for (int i = 0; i < MR; i++) {
      v::F tot = acc[0][i];
      for (int a = 1; a < NA; a++) tot += acc[a][i];
      y[i * out + r] = v::sum(tot) + (bias ? bias[r] : 0.0f);
    }
  }
}

// Rows whose blocks are whole (cols a multiple of bs, bs of 2·kLanes): every 2·kLanes-element piece of a
// row starts a byte, so x can be stored once per call in the order lookup4_split yields the weights
// (split_pairs), which saves the shuffles that put codes back in element order.
bool whole_blocks(const QW& w) { return w.kind != kInt8 && w.cols % w.bs == 0 && w.bs % (2 * L) == 0; }

// xs [m, cols] <- x [m, cols] with every 2·kLanes values stored evens first, then odds; cols % 2·kLanes == 0.
void split_pairs(float* xs, const float* x, int64_t m, int64_t cols) {
  for (int64_t i = 0; i < m * cols; i += 2 * L)
    for (int64_t k = 0; k < L; k++) {
      xs[i + k] = x[i + 2 * k];
      xs[i + L + k] = x[i + 2 * k + 1];
    }
}

// gemv4 for whole_blocks(w), with xs = split_pairs(x).
template <int MR>
void gemv4_split(float* y, const float* xs, const float* bias, const QW& w, int64_t r0, int64_t r1) {
  constexpr int NA = kAcc<MR>, U = NA >= 2 ? NA / 2 : 1;
  const int64_t cols = w.cols, out = w.rows, bs = w.bs;
  const qk::Lut4 base = qk::lut4(code4(w.kind).value);
  for (int64_t r = r0; r < r1; r++) {
    v::F acc[NA][MR];
    for (auto& a : acc)
      for (auto& b : a) b = v::zero();
    const uint8_t* row = w.data + r * cols / 2;
    int64_t blk = r * (cols / bs);
    for (int64_t j = 0; j < cols; j += bs, blk++) {
      const qk::Lut4 t = qk::scaled(base, v::set1(w.scale(blk)));
      int64_t k = j;
      for (; k + 2 * U * L <= j + bs; k += 2 * U * L)
        for (int u = 0; u < U; u++) {
          v::F ev, od;
          qk::lookup4_split(t, row + k / 2 + u * L, ev, od);
          for (int i = 0; i < MR; i++) {
            const float* xi = xs + i * cols + k + 2 * u * L;
            acc[(2 * u) % NA][i] = simd::fma(ev, v::load(xi), acc[(2 * u) % NA][i]);
            acc[(2 * u + 1) % NA][i] = simd::fma(od, v::load(xi + L), acc[(2 * u + 1) % NA][i]);
          }
        }
      for (; k < j + bs; k += 2 * L) {
        v::F ev, od;
        qk::lookup4_split(t, row + k / 2, ev, od);
        for (int i = 0; i < MR; i++) {
          acc[0][i] = simd::fma(ev, v::load(xs + i * cols + k), acc[0][i]);
          acc[1 % NA][i] = simd::fma(od, v::load(xs + i * cols + k + L), acc[1 % NA][i]);
        }
      }
    }
    for (int i = 0; i < MR; i++) {
      v::F tot = acc[0][i];
      for (int a = 1; a < NA; a++) tot += acc[a][i];
      y[i * out + r] = v::sum(tot) + (bias ? bias[r] : 0.0f);
    }
  }
}

// The same for int8 rows: y = (Σ q·x)·rowabsmax·(1/127), the row's scale applied once to its sum.
template <int MR>
void gemv8(float* y, const float* x, const float* bias, const QW& w, int64_t r0, int64_t r1) {
  constexpr int NA = kAcc<MR>;  // NA vectors per step
  const int64_t cols = w.cols, out = w.rows;
  const float inv127 = static_cast<float>(7.874015718698502e-3);
  for (int64_t r = r0; r < r1; r++) {
    const int8_t* q = reinterpret_cast<const int8_t*>(w.data) + r * cols;
    v::F acc[NA][MR];
    for (auto& a : acc)
      for (auto& b : a) b = v::zero();
    int64_t j = 0;
    for (; j + NA * L <= cols; j += NA * L)
      for (int a = 0; a < NA; a++) {
        const v::F wv = v::load_i8(q + j + a * L);
        for (int i = 0; i < MR; i++) acc[a][i] = simd::fma(wv, v::load(x + i * cols + j + a * L), acc[a][i]);
      }
    for (; NA > 1 && j + L <= cols; j += L) {
      const v::F wv = v::load_i8(q + j);
      for (int i = 0; i < MR; i++) acc[0][i] = simd::fma(wv, v::load(x + i * cols + j), acc[0][i]);
    }
    if (j < cols) {
      float wv[L];
      for (int64_t k = 0; j + k < cols; k++) wv[k] = static_cast<float>(q[j + k]);
      dot_tail<MR>(acc[0], wv, cols - j, x + j, cols);
    }
    const float s = w.absmax[r];
    for (int i = 0; i < MR; i++) {
      v::F tot = acc[0][i];
      for (int a = 1; a < NA; a++) tot += acc[a][i];
      y[i * out + r] = (v::sum(tot) * s) * inv127 + (bias ? bias[r] : 0.0f);
    }
  }
}

// d[i] (+)= g_i · wv [n] for the MR rows d_i = d + i·ldd; n <= 2·kLanes.
template <int MR>
LK_INLINE void axpy_tail(float* d, int64_t ldd, const v::F* g, const float* wv, int64_t n) {
  for (int64_t k = 0; k < n; k += L) {
    const v::F wk = v::load(wv + k, n - k);
    for (int i = 0; i < MR; i++) {
      float* di = d + i * ldd + k;
      v::store(di, simd::fma(g[i], wk, v::load(di, n - k)), n - k);
    }
  }
}

// dx[i, c0:c1] += Σ_r g[i, r] · W[r, c0:c1] for i < MR, r in row order; W 4-bit or int8, g [MR, rows],
// dx [MR, cols]. Threads split the columns, so every dx value is summed in the same order.
template <int MR>
void gemv_t(float* dx, const float* g, const QW& w, int64_t c0, int64_t c1) {
  const int64_t cols = w.cols, out = w.rows;
  const bool int8 = w.kind == kInt8;
  const float* code = int8 ? nullptr : code4(w.kind).value;
  const qk::Lut4 base = qk::lut4(int8 ? code4(kNF4).value : code);
  const float inv127 = static_cast<float>(7.874015718698502e-3);
  BlockWalk bw(w, 0);
  for (int64_t r = 0; r < out; r++, bw.next_row()) {
    v::F gv[MR];
    for (int i = 0; i < MR; i++) gv[i] = v::set1(g[i * out + r]);
    const int64_t row0 = r * cols, end = row0 + c1;
    int64_t e = row0 + c0;
    if (int8) {
      const int8_t* q = reinterpret_cast<const int8_t*>(w.data) + row0;
      const float s = w.absmax[r];
      const v::F vs = v::set1(s), vc = v::set1(inv127);
      int64_t j = c0;
      for (; j + L <= c1; j += L) {
        const v::F wv = (v::load_i8(q + j) * vs) * vc;
        for (int i = 0; i < MR; i++) {
          float* di = dx + i * cols + j;
          v::store(di, simd::fma(gv[i], wv, v::load(di)));
        }
      }
      if (j < c1) {
        float wv[L];
        for (int64_t k = 0; j + k < c1; k++) wv[k] = (static_cast<float>(q[j + k]) * s) * inv127;
        axpy_tail<MR>(dx + j, cols, gv, wv, c1 - j);
      }
      continue;
    }
    // The block of element e: bw gives the row's first element's; c0 further on.
    const int64_t off = bw.off + c0;
    int64_t blk = bw.blk + off / w.bs, stop = std::min(end, e - off % w.bs + w.bs);
    for (; e < end; blk++, stop = std::min(end, stop + w.bs)) {
      const float s = w.scale(blk);
      if (e & 1) {
        float wv;
        decode4_tail(&wv, w, code, s, e, 1);
        axpy_tail<MR>(dx + (e - row0), cols, gv, &wv, 1);
        e++;
      }
      const qk::Lut4 t = qk::scaled(base, v::set1(s));
      for (; e + 2 * L <= stop; e += 2 * L) {
        v::F lo, hi;
        qk::lookup4(t, w.data + (e >> 1), lo, hi);
        for (int i = 0; i < MR; i++) {
          float* di = dx + i * cols + (e - row0);
          v::store(di, simd::fma(gv[i], lo, v::load(di)));
          v::store(di + L, simd::fma(gv[i], hi, v::load(di + L)));
        }
      }
      if (e < stop) {
        float wv[2 * L];
        decode4_tail(wv, w, code, s, e, stop - e);
        axpy_tail<MR>(dx + (e - row0), cols, gv, wv, stop - e);
        e = stop;
      }
    }
  }
}

template <int MR>
void gemv_forward(float* y, const float* x, const float* bias, const QW& w) {
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(w.cols, 1));
  if (whole_blocks(w)) {
    Buffer xs(MR * w.cols);
    split_pairs(xs.p, x, MR, w.cols);
    parallel_for(w.rows, grain, [&](int64_t a, int64_t b) { gemv4_split<MR>(y, xs.p, bias, w, a, b); });
    return;
  }
  parallel_for(w.rows, grain, [&](int64_t a, int64_t b) {
    if (w.kind == kInt8) gemv8<MR>(y, x, bias, w, a, b);
    else gemv4<MR>(y, x, bias, w, a, b);
  });
}

template <int MR>
void gemv_backward(float* dx, const float* g, const QW& w, bool accumulate) {
  constexpr int64_t kGroup = 64;  // columns per unit of work: whole vectors, whole bytes
  const int64_t cols = w.cols, groups = (cols + kGroup - 1) / kGroup;
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(kGroup * w.rows, 1));
  parallel_for(groups, grain, [&](int64_t a, int64_t b) {
    const int64_t c0 = a * kGroup, c1 = std::min(cols, b * kGroup);
    if (!accumulate)
      for (int i = 0; i < MR; i++) std::memset(dx + i * cols + c0, 0, (c1 - c0) * sizeof(float));
    gemv_t<MR>(dx, g, w, c0, c1);
  });
}

// Calls f.template operator()<MR>() for MR = m, m in [1, kGemvRows].
template <typename Fn>
void with_rows(int64_t m, Fn&& f) {
  switch (m) {
    case 1: return f(std::integral_constant<int, 1>());
    case 2: return f(std::integral_constant<int, 2>());
    case 3: return f(std::integral_constant<int, 3>());
    case 4: return f(std::integral_constant<int, 4>());
    case 5: return f(std::integral_constant<int, 5>());
    case 6: return f(std::integral_constant<int, 6>());
    case 7: return f(std::integral_constant<int, 7>());
    default: return f(std::integral_constant<int, 8>());
  }
}

// Rows of W per tile: about 1 MiB of fp32, so a tile stays in L2 while the GEMM reads it.
int64_t tile_rows(const QW& w) {
  const int64_t t = (int64_t(1) << 18) / std::max<int64_t>(w.cols, 1);
  return std::min(w.rows, std::max<int64_t>(32, t));
}


// y [m, out] = x [m, in] · Wᵀ (+ bias [out]).
void quant_linear_forward(float* y, const float* x, const float* bias, const QW& w, int64_t m) {
  if (m <= kGemvRows) {
    if (m > 0) with_rows(m, [&](auto mr) { gemv_forward<decltype(mr)::value>(y, x, bias, w); });
    return;
  }
  const int64_t in = w.cols, out = w.rows, tile = tile_rows(w);
  Buffer wt(tile * in);
  if (tile == out) {
    dequant_rows(wt.p, w, 0, out);
    gemm<float, float>(y, x, wt.p, bias, 1, m, out, in, false, true, 1.0f, 0.0f, 0, 0, 0);
    return;
  }
  Buffer ct(m * tile);
  for (int64_t o0 = 0; o0 < out; o0 += tile) {
    const int64_t t = std::min(tile, out - o0);
    dequant_rows(wt.p, w, o0, o0 + t);
    gemm<float, float>(ct.p, x, wt.p, bias ? bias + o0 : nullptr, 1, m, t, in, false, true, 1.0f, 0.0f, 0, 0, 0);
    parallel_for(m, std::max<int64_t>(1, 16384 / t), [&](int64_t a, int64_t b) {
      for (int64_t r = a; r < b; r++) std::memcpy(y + r * out + o0, ct.p + r * t, t * sizeof(float));
    });
  }
}

// dx [m, in] = g [m, out] · W. Needs nothing from forward (W is frozen, x is not used).
// dx [m, cols] = g [m, rows] · W, or dx += g · W when accumulating (layers sharing an input).
void quant_linear_backward(float* dx, const float* g, const QW& w, int64_t m, bool accumulate) {
  if (m <= kGemvRows) {
    if (m > 0) with_rows(m, [&](auto mr) { gemv_backward<decltype(mr)::value>(dx, g, w, accumulate); });
    return;
  }
  const int64_t in = w.cols, out = w.rows, tile = tile_rows(w);
  Buffer wt(tile * in);
  if (tile == out) {
    dequant_rows(wt.p, w, 0, out);
    gemm<float, float>(dx, g, wt.p, nullptr, 1, m, in, out, false, false, 1.0f, accumulate ? 1.0f : 0.0f, 0, 0, 0);
    return;
  }
  Buffer gt(m * tile);
  for (int64_t o0 = 0; o0 < out; o0 += tile) {
    const int64_t t = std::min(tile, out - o0);
    dequant_rows(wt.p, w, o0, o0 + t);
    parallel_for(m, std::max<int64_t>(1, 16384 / t), [&](int64_t a, int64_t b) {
      for (int64_t r = a; r < b; r++) std::memcpy(gt.p + r * t, g + r * out + o0, t * sizeof(float));
    });
    const float beta = o0 == 0 && !accumulate ? 0.0f : 1.0f;
    gemm<float, float>(dx, gt.p, wt.p, nullptr, 1, m, in, t, false, false, 1.0f, beta, 0, 0, 0);
  }
}

// fp32 -> nearest fp16 value (ties to even), back in fp32.
inline float round_f16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint32_t sign = u & 0x80000000u, a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return x;  // inf, NaN
  if (a < 0x38800000u) {           // below 2^-14: fp16 subnormals, steps of 2^-24
    const float y = std::nearbyint(std::fabs(x) * 16777216.0f) / 16777216.0f;
    return std::copysign(y, x);
  }
  uint32_t r = (a + 0xfffu + ((a >> 13) & 1u)) & ~0x1fffu;
  if (r > 0x477fe000u) r = 0x7f800000u;  // above 65504: inf
  r |= sign;
  float y;
  std::memcpy(&y, &r, 4);
  return y;
}

// int8 rows as bitsandbytes' Int8Params (transformers' load_in_8bit): the weight is cast to fp16, then
// int8_vectorwise_quant: s = (1/absmax)·127 (torch evaluates 127/t as reciprocal then multiply),
// q = round-half-even(x·s). out holds int8 bits.
void quantize_int8(uint8_t* out, float* absmax, const float* x, int64_t rows, int64_t cols) {
  parallel_for(rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(cols, 1)), [&](int64_t a, int64_t b) {
    for (int64_t r = a; r < b; r++) {
      const float* xr = x + r * cols;
      float am = 0;
      for (int64_t j = 0; j < cols; j++) am = std::max(am, std::fabs(round_f16(xr[j])));
      absmax[r] = am;
      const float s = (1.0f / am) * 127.0f;
      int8_t* q = reinterpret_cast<int8_t*>(out) + r * cols;
      for (int64_t j = 0; j < cols; j++) {
        const float v = std::nearbyint(round_f16(xr[j]) * s);
        q[j] = am == 0 ? 0 : static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, v)));
      }
    }
  });
}

// Arguments i0..i0+10: data, absmax|null, qabsmax|null, absmax2|null, code8|null, offset, kind,
// blocksize, nestedBlocksize, rows, cols.
QW read_qw(Args& a, size_t i0) {
  QW w;
  w.kind = static_cast<int>(a.int64(i0 + 6));
  w.bs = a.int64(i0 + 7);
  w.nested_bs = a.int64(i0 + 8);
  w.rows = a.int64(i0 + 9);
  w.cols = a.int64(i0 + 10);
  if (w.kind < 0 || w.kind > 2) throw ArgError("unknown quantization kind");
  if (w.rows < 0 || w.cols < 0) throw ArgError("negative weight shape");
  const int64_t n = w.rows * w.cols;
  w.offset = static_cast<float>(a.num(i0 + 5));
  w.qabsmax = nullptr;
  w.absmax2 = nullptr;
  w.code8 = nullptr;
  w.absmax = nullptr;
  if (w.kind == kInt8) {
    w.data = a.u8(i0, n);
    w.absmax = a.f32(i0 + 1, w.rows);
    return w;
  }
  if (w.bs <= 0 || w.bs % 2) throw ArgError("blocksize must be positive and even");
  const int64_t nb = (n + w.bs - 1) / w.bs;
  w.data = a.u8(i0, (n + 1) / 2);
  if (a.absent(i0 + 1)) {
    if (w.nested_bs <= 0) throw ArgError("nested blocksize must be positive");
    w.qabsmax = a.u8(i0 + 2, nb);
    w.absmax2 = a.f32(i0 + 3, (nb + w.nested_bs - 1) / w.nested_bs);
    w.code8 = a.f32(i0 + 4, 256);
  } else {
    w.absmax = a.f32(i0 + 1, nb);
  }
  return w;
}

}  // namespace

LK_ENTRY(js_quantize_4bit, 6, {
  int64_t n = a.int64(3), bs = a.int64(4), kind = a.int64(5);
  if (bs <= 0 || bs % 2) throw ArgError("blocksize must be positive and even");
  if (kind != kNF4 && kind != kFP4) throw ArgError("kind must be nf4 (0) or fp4 (1)");
  quantize_4bit(a.u8(0, (n + 1) / 2), a.f32(1, (n + bs - 1) / bs), a.f32(2, n), n, bs, static_cast<int>(kind));
})
LK_ENTRY(js_quantize_int8, 5, {
  int64_t rows = a.int64(3), cols = a.int64(4);
  quantize_int8(a.u8(0, rows * cols), a.f32(1, rows), a.f32(2, rows * cols), rows, cols);
})
// out [(r1-r0)·cols] = rows [r0, r1) of W, dequantized.
LK_ENTRY(js_dequantize, 14, {
  QW w = read_qw(a, 1);
  int64_t r0 = a.int64(12), r1 = a.int64(13);
  if (r0 < 0 || r1 > w.rows || r0 > r1) throw ArgError("row range out of bounds");
  dequant_rows(a.f32(0, (r1 - r0) * w.cols), w, r0, r1);
})
LK_ENTRY(js_quant_linear, 15, {
  QW w = read_qw(a, 3);
  int64_t m = a.int64(14);
  const float* bias = a.absent(2) ? nullptr : a.f32(2, w.rows);
  quant_linear_forward(a.f32(0, m * w.rows), a.f32(1, m * w.cols), bias, w, m);
})
LK_ENTRY(js_quant_linear_backward, 15, {
  QW w = read_qw(a, 2);
  int64_t m = a.int64(13);
  quant_linear_backward(a.f32(0, m * w.cols), a.f32(1, m * w.rows), w, m, a.boolean(14));
})

LK_EXPORT("quantize4bit", js_quantize_4bit);
LK_EXPORT("quantizeInt8", js_quantize_int8);
LK_EXPORT("dequantizeRows", js_dequantize);
LK_EXPORT("quantLinear", js_quant_linear);
LK_EXPORT("quantLinearBackward", js_quant_linear_backward);

}  // namespace lk
