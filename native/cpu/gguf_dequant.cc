// GGUF block dequantization (ggml's Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) to
// fp32: layouts as ggml-common.h, formulas as ggml-quants.c dequantize_row_*. src/io/gguf-quants.ts
// holds the same loops in TypeScript (the fallback and the test reference).
//
// Bit-exact with ggml and gguf-py whatever the compiler does: every product is exact in fp32 (an f16
// scale has 11 significant bits, the integer factors at most 13 more), so each value is one correctly
// rounded operation, with or without FMA contraction. Blocks are independent: threads split them, and
// the inner loops run over 16/32 contiguous values, which the compiler vectorizes.
#include <cstdint>
#include <cstring>

#include "f16.h"
#include "napi_util.h"
#include "parallel.h"

namespace lk {
namespace {

// A block's f16 scale (little-endian bytes; blocks may sit at any byte address) -> fp32, exactly.
inline float f16(const uint8_t* p) { return f16_to_f32(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

// block_q4_0 { f16 d; u8 qs[16] } -> 32 values: y[j] = (lo(qs[j]) - 8) d, y[j + 16] = (hi(qs[j]) - 8) d
void q4_0(float* __restrict y, const uint8_t* __restrict b) {
  const float d = f16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; j++) {
    y[j] = static_cast<float>((qs[j] & 15) - 8) * d;
    y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

// block_q4_1 { f16 d, m; u8 qs[16] }: y = q d + m
void q4_1(float* __restrict y, const uint8_t* __restrict b) {
  const float d = f16(b), m = f16(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; j++) {
    y[j] = static_cast<float>(qs[j] & 15) * d + m;
    y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

// block_q5_0 { f16 d; u8 qh[4]; u8 qs[16] }: 5th bit of value j in bit j of qh; y = (q - 16) d
void q5_0(float* __restrict y, const uint8_t* __restrict b) {
  const float d = f16(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; j++) {
    const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
    y[j] = static_cast<float>(((qs[j] & 15) | h0) - 16) * d;
    y[j + 16] = static_cast<float>(((qs[j] >> 4) | h1) - 16) * d;
  }
}

// block_q5_1 { f16 d, m; u8 qh[4]; u8 qs[16] }: y = q d + m
void q5_1(float* __restrict y, const uint8_t* __restrict b) {
  const float d = f16(b), m = f16(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; j++) {
    const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
    y[j] = static_cast<float>((qs[j] & 15) | h0) * d + m;
    y[j + 16] = static_cast<float>((qs[j] >> 4) | h1) * d + m;
  }
}

// block_q8_0 { f16 d; i8 qs[32] }: y = q d
void q8_0(float* __restrict y, const uint8_t* __restrict b) {
  const float d = f16(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; j++) y[j] = static_cast<float>(qs[j]) * d;
}

// block_q2_K { u8 scales[16]; u8 qs[64]; f16 d, dmin } -> 256 values in 16 groups of 16.
void q2_K(float* __restrict y, const uint8_t* __restrict b) {
  const float d = f16(b + 80), min = f16(b + 82);
  int is = 0;
  for (int n = 0; n < 2; n++) {
    const uint8_t* q = b + 16 + n * 32;
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half = 0; half < 2; half++) {
        const uint8_t sc = b[is++];
        const float dl = d * static_cast<float>(sc & 15), ml = min * static_cast<float>(sc >> 4);
        for (int l = 0; l < 16; l++) *y++ = dl * static_cast<float>((q[half * 16 + l] >> shift) & 3) - ml;
      }
    }
  }
}

// block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }: 6-bit signed scales per 16 values;
// value = low 2 bits minus 4 where the hmask bit is clear.
void q3_K(float* __restrict y, const uint8_t* __restrict b) {
  const float d = f16(b + 108);
  const uint8_t* hm = b;
  const uint8_t* a = b + 96;
  int sc[16];
  for (int k = 0; k < 16; k++) {
    const int lo = (a[k & 7] >> (4 * (k >> 3))) & 15, hi = (a[8 + (k & 3)] >> (2 * (k >> 2))) & 3;
    sc[k] = (lo | (hi << 4)) - 32;
  }
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < 2; n++) {
    const uint8_t* q = b + 32 + n * 32;
    for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
      for (int half = 0; half < 2; half++) {
        const float dl = d * static_cast<float>(sc[is++]);
        for (int l = 0; l < 16; l++) {
          const int k = half * 16 + l;
          *y++ = dl * static_cast<float>(((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4));
        }
      }
    }
  }
}

// get_scale_min_k4: the 12 packed bytes of 6-bit (scale, min) pairs of Q4_K/Q5_K.
inline void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// block_q4_K { f16 d, dmin; u8 scales[12]; u8 qs[128] }: 8 groups of 32, y = d·sc·q − dmin·m
void q4_K(float* __restrict y, const uint8_t* __restrict b) {
  const float d = f16(b), min = f16(b + 2);
  const uint8_t* scales = b + 4;
  for (int j = 0, is = 0; j < 4; j++, is += 2) {
    const uint8_t* q = b + 16 + j * 32;
    int sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
    for (int l = 0; l < 32; l++) y[l] = d1 * static_cast<float>(q[l] & 15) - m1;
    for (int l = 0; l < 32; l++) y[32 + l] = d2 * static_cast<float>(q[l] >> 4) - m2;
    y += 64;
  }
}

// block_q5_K { f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }: Q4_K plus a 5th bit from qh.
void q5_K(float* __restrict y, const uint8_t* __restrict b) {
  const float d = f16(b), min = f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0, is = 0; j < 4; j++, is += 2, u1 <<= 2, u2 <<= 2) {
    const uint8_t* q = b + 48 + j * 32;
    int sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
    for (int l = 0; l < 32; l++) y[l] = d1 * static_cast<float>((q[l] & 15) + ((qh[l] & u1) ? 16 : 0)) - m1;
    for (int l = 0; l < 32; l++) y[32 + l] = d2 * static_cast<float>((q[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
    y += 64;
  }
}

// block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }: 16 groups of 16, y = d·sc·(q − 32)
void q6_K(float* __restrict y, const uint8_t* __restrict b) {
  const float d = f16(b + 208);
  for (int n = 0; n < 2; n++, y += 128) {
    const uint8_t* ql = b + n * 64;
    const uint8_t* qh = b + 128 + n * 32;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192 + n * 8);
    for (int half = 0; half < 2; half++) {  // 16 values share each scale: constant inside the loop
      const float s1 = d * static_cast<float>(sc[half]), s2 = d * static_cast<float>(sc[half + 2]);
      const float s3 = d * static_cast<float>(sc[half + 4]), s4 = d * static_cast<float>(sc[half + 6]);
      for (int l = half * 16; l < half * 16 + 16; l++) {
        const int q1 = ((ql[l] & 15) | ((qh[l] & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = s1 * static_cast<float>(q1);
        y[l + 32] = s2 * static_cast<float>(q2);
        y[l + 64] = s3 * static_cast<float>(q3);
        y[l + 96] = s4 * static_cast<float>(q4);
      }
    }
  }
}

struct BlockType {
  int block_size, type_size;
  void (*fn)(float*, const uint8_t*);
};

// ggml type id -> layout; ids as ggml.h enum ggml_type.
bool block_type(int64_t id, BlockType& t) {
  switch (id) {
    case 2: t = {32, 18, q4_0}; return true;
    case 3: t = {32, 20, q4_1}; return true;
    case 6: t = {32, 22, q5_0}; return true;
    case 7: t = {32, 24, q5_1}; return true;
    case 8: t = {32, 34, q8_0}; return true;
    case 10: t = {256, 84, q2_K}; return true;
    case 11: t = {256, 110, q3_K}; return true;
    case 12: t = {256, 144, q4_K}; return true;
    case 13: t = {256, 176, q5_K}; return true;
    case 14: t = {256, 210, q6_K}; return true;
    default: return false;
  }
}

}  // namespace

// dst[n_blocks * block_size] (f32) from src[n_blocks * type_size] (raw blocks of ggml type `type`).
LK_ENTRY(js_ggml_dequantize, 4, {
  const int64_t type = a.int64(2), n_blocks = a.int64(3);
  BlockType t;
  if (!block_type(type, t)) throw ArgError("unsupported ggml type " + std::to_string(type));
  if (n_blocks < 0) throw ArgError("negative block count");
  float* dst = a.f32(0, static_cast<size_t>(n_blocks * t.block_size));
  const uint8_t* src = a.u8(1, static_cast<size_t>(n_blocks * t.type_size));
  parallel_for(n_blocks, 8192 / t.block_size, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) t.fn(dst + i * t.block_size, src + i * t.type_size);
  });
})

LK_EXPORT("ggmlDequantize", js_ggml_dequantize);

}  // namespace lk
