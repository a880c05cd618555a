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
// quant_linear forward/backward never hold the dense weight: a tile of W's rows is dequantized into a
// small fp32 buffer (sized for L2), multiplied with the shared GEMM (gemm.h), and reused for the next
// tile. Backward computes dx only (the base weight is frozen); it needs nothing saved but x's shape.
// GCC 12 reports a false positive inside its own AVX-512 headers (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "gemm.h"
#include "napi_util.h"
#include "parallel.h"

namespace lk {
namespace {

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

// out [(r1-r0), cols] = W[r0:r1] dequantized: code·absmax in fp32 exactly as bitsandbytes.
void dequant_rows(float* out, const QW& w, int64_t r0, int64_t r1) {
  const int64_t cols = w.cols;
  if (w.kind == kInt8) {
    const float inv127 = static_cast<float>(7.874015718698502e-3);
    parallel_for(r1 - r0, std::max<int64_t>(1, 8192 / std::max<int64_t>(cols, 1)), [&](int64_t a, int64_t b) {
      for (int64_t r = r0 + a; r < r0 + b; r++) {
        const int8_t* q = reinterpret_cast<const int8_t*>(w.data) + r * cols;
        const float s = w.absmax[r];
        float* o = out + (r - r0) * cols;
        for (int64_t j = 0; j < cols; j++) o[j] = (static_cast<float>(q[j]) * s) * inv127;
      }
    });
    return;
  }
  const Code4& c = code4(w.kind);
  const float* lut = c.value;
  parallel_for(r1 - r0, std::max<int64_t>(1, 8192 / std::max<int64_t>(cols, 1)), [&](int64_t a, int64_t b) {
    // Elements [e0, e1) of the flattened weight, cut at block boundaries (one scale per piece).
    int64_t e = (r0 + a) * cols;
    const int64_t e1 = (r0 + b) * cols;
    float* o = out + a * cols;
    while (e < e1) {
      const int64_t blk = e / w.bs, stop = std::min(e1, (blk + 1) * w.bs);
      const float s = w.scale(blk);
      if (e & 1) {  // odd start: finish the byte
        *o++ = lut[w.data[e >> 1] & 15] * s;
        e++;
      }
#ifdef __AVX512F__
      const __m512 vlut = _mm512_loadu_ps(lut), vs = _mm512_set1_ps(s);
      const __m128i mask4 = _mm_set1_epi8(0x0f);
      for (; e + 16 <= stop; e += 16, o += 16) {
        __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.data + (e >> 1)));
        __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask4), lo = _mm_and_si128(raw, mask4);
        __m512i idx = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(hi, lo));
        _mm512_storeu_ps(o, _mm512_mul_ps(_mm512_permutexvar_ps(idx, vlut), vs));
      }
#endif
      for (; e + 2 <= stop; e += 2, o += 2) {
        const uint8_t byte = w.data[e >> 1];
        o[0] = lut[byte >> 4] * s;
        o[1] = lut[byte & 15] * s;
      }
      if (e < stop) {  // odd end: the high nibble
        *o++ = lut[w.data[e >> 1] >> 4] * s;
        e++;
      }
    }
  });
}

// Rows of W per tile: about 1 MiB of fp32, so a tile stays in L2 while the GEMM reads it.
int64_t tile_rows(const QW& w) {
  const int64_t t = (int64_t(1) << 18) / std::max<int64_t>(w.cols, 1);
  return std::min(w.rows, std::max<int64_t>(32, t));
}

struct Buffer {
  float* p;
  explicit Buffer(int64_t n) : p(static_cast<float*>(std::aligned_alloc(64, std::max<int64_t>(64, (n * 4 + 63) / 64 * 64)))) {
    if (!p) throw std::runtime_error("out of memory for a dequantization tile");
  }
  ~Buffer() { std::free(p); }
};

// y [m, out] = x [m, in] · Wᵀ (+ bias [out]).
void quant_linear_forward(float* y, const float* x, const float* bias, const QW& w, int64_t m) {
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
