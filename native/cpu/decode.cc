// Batch-1 decode step kernels: one new token through a Llama layer in a few calls, each one parallel
// region, reading the weights directly (fp32, bf16 bits, or int8 rows with a per-row scale) with the
// threads splitting output rows. A decode step is a chain of matrix-vector products, so its speed is
// how fast the weights stream from memory; these kernels never pack, copy or dequantize a weight.
//
//   decodeProject:   y_i (+)= W_i · norm(x) (+ b_i) for up to three weights sharing the input (QKV; o and
//                    down with accumulate, which adds the residual in place; the output head)
//   decodeSwiglu:    m = silu(Wg · norm(x) + bg) · (Wu · norm(x) + bu)
//   decodeAttention: q/k norm (Qwen3), rope at one position, append k and v to the cache, attention of
//                    the new query over every cached position (one sequence: the cache holds only it)
//
// A weight may carry a LoRA adapter (A [r, cols], B [rows, r], scale s): its rows are then
// W·x (+ b) + s·(B·(A·x)), in lora-linear.ts's order of sums (base and bias first, then the low-rank
// term). h = A·x is r dot products, done by the calling thread before the rows are shared out.
//
// norm(x) = w · (x · rstd), rstd = 1/sqrt(mean(x²) + eps) (rmsnorm.cc's order). Products and sums fp32.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "napi_util.h"
#include "parallel.h"
#include "simd.h"

namespace lk {
namespace {
namespace v = simd;

// A weight W [rows, cols] as stored: exactly one of f (fp32), b (bf16 bits), q (int8, W = q·scale/127
// per row, bitsandbytes' row format); bias [rows] optional; a LoRA adapter optional (rank > 0: A
// [rank, cols], B [rows, rank], scale s, and h [rank] = A·x once the input is known).
struct Weight {
  const float* f = nullptr;
  const uint16_t* b = nullptr;
  const int8_t* q = nullptr;
  const float* scale = nullptr;
  const float* bias = nullptr;
  int64_t rows = 0, cols = 0;
  const float* lora_a = nullptr;
  const float* lora_b = nullptr;
  int64_t rank = 0;
  float lora_s = 0.0f;
  std::vector<float> h;
};

LK_INLINE v::F ld(const float* p) { return v::load(p); }
LK_INLINE v::F ld(const float* p, int64_t n) { return v::load(p, n); }
LK_INLINE v::F ld(const uint16_t* p) { return v::load(p); }
LK_INLINE v::F ld(const uint16_t* p, int64_t n) { return v::load(p, n); }
LK_INLINE v::F ld(const int8_t* p) { return v::load_i8(p); }
LK_INLINE v::F ld(const int8_t* p, int64_t n) { return v::load_i8(p, n); }

// y [r1 - r0] = W[r0:r1] · x [cols], four rows at a time so each x vector loaded serves four rows.
template <typename T>
void dot_rows(float* y, const T* w, const float* x, int64_t r0, int64_t r1, int64_t cols) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const T* w0 = w + r * cols;
    const T *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
    v::F a0 = v::zero(), a1 = v::zero(), a2 = v::zero(), a3 = v::zero();
    int64_t k = 0;
    for (; k + v::kLanes <= cols; k += v::kLanes) {
      // The next block's rows, a few vectors ahead: rows are short (hundreds of values), so the
      // hardware prefetcher alone does not keep enough lines in flight.
      v::prefetch(w0 + 4 * cols + k);
      v::prefetch(w1 + 4 * cols + k);
      v::prefetch(w2 + 4 * cols + k);
      v::prefetch(w3 + 4 * cols + k);
      const v::F xv = v::load(x + k);
      a0 = v::fma(ld(w0 + k), xv, a0);
      a1 = v::fma(ld(w1 + k), xv, a1);
      a2 = v::fma(ld(w2 + k), xv, a2);
      a3 = v::fma(ld(w3 + k), xv, a3);
    }
    if (k < cols) {
      const int64_t n = cols - k;
      const v::F xv = v::load(x + k, n);
      a0 = v::fma(ld(w0 + k, n), xv, a0);
      a1 = v::fma(ld(w1 + k, n), xv, a1);
      a2 = v::fma(ld(w2 + k, n), xv, a2);
      a3 = v::fma(ld(w3 + k, n), xv, a3);
    }
    y[r - r0] = v::sum(a0);
    y[r - r0 + 1] = v::sum(a1);
    y[r - r0 + 2] = v::sum(a2);
    y[r - r0 + 3] = v::sum(a3);
  }
  for (; r < r1; r++) {
    const T* w0 = w + r * cols;
    v::F a0 = v::zero();
    for (int64_t k = 0; k < cols; k += v::kLanes) a0 = v::fma(ld(w0 + k, cols - k), v::load(x + k, cols - k), a0);
    y[r - r0] = v::sum(a0);
  }
}

// Rows are handed out in pieces of kPiece: enough work per piece to amortize the loop, small enough
// that the pieces of three unequal matrices split evenly between threads.
constexpr int64_t kPiece = 16;

// out [r1 - r0] = (W · x + bias + s·B·h)[r0:r1], r1 - r0 <= kPiece
void rows(float* out, const Weight& w, const float* x, int64_t r0, int64_t r1) {
  if (w.f) dot_rows(out, w.f, x, r0, r1, w.cols);
  if (w.b) dot_rows(out, w.b, x, r0, r1, w.cols);
  if (w.q) {
    dot_rows(out, w.q, x, r0, r1, w.cols);
    const float inv127 = static_cast<float>(7.874015718698502e-3);
    for (int64_t r = r0; r < r1; r++) out[r - r0] *= w.scale[r] * inv127;
  }
  if (w.bias)
    for (int64_t r = r0; r < r1; r++) out[r - r0] += w.bias[r];
  if (w.rank > 0) {
    float lr[kPiece];
    dot_rows(lr, w.lora_b, w.h.data(), r0, r1, w.rank);
    for (int64_t r = r0; r < r1; r++) out[r - r0] += w.lora_s * lr[r - r0];
  }
}

// h = A·x for a weight with an adapter (call before its rows are computed).
void lora_input(Weight& w, const float* x) {
  if (w.rank == 0) return;
  w.h.resize(w.rank);
  dot_rows(w.h.data(), w.lora_a, x, 0, w.rank, w.cols);
}

// xn [D] = norm(x) with weight [D], or x itself when norm is null.
const float* normed(std::vector<float>& xn, const float* x, const float* norm, int64_t D, float eps) {
  if (!norm) return x;
  xn.resize(D);
  float ss = 0.0f;
  for (int64_t d = 0; d < D; d++) ss += x[d] * x[d];
  const float s = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps);
  for (int64_t d = 0; d < D; d++) xn[d] = norm[d] * (x[d] * s);
  return xn.data();
}

int64_t piece_grain(int64_t cols) { return std::max<int64_t>(1, (1 << 14) / (kPiece * std::max<int64_t>(cols, 1))); }

// y[i] [rows_i] (+)= W_i · norm(x) (+ b_i), i < nw; x [cols].
void project(float* const* y, Weight* w, int nw, const float* x, const float* norm, float eps, bool accumulate) {
  std::vector<float> buf;
  const float* xn = normed(buf, x, norm, w[0].cols, eps);
  for (int i = 0; i < nw; i++) lora_input(w[i], xn);
  // Pieces of every weight in one index space: piece p belongs to the first weight whose end passes p.
  int64_t start[4] = {0};
  for (int i = 0; i < nw; i++) start[i + 1] = start[i] + (w[i].rows + kPiece - 1) / kPiece;
  parallel_for(start[nw], piece_grain(w[0].cols), [&](int64_t pb, int64_t pe) {
    float tmp[kPiece];
    for (int64_t p = pb; p < pe; p++) {
      int i = 0;
      while (p >= start[i + 1]) i++;
      const int64_t r0 = (p - start[i]) * kPiece, r1 = std::min(w[i].rows, r0 + kPiece);
      rows(tmp, w[i], xn, r0, r1);
      float* out = y[i] + r0;
      if (accumulate)
        for (int64_t r = 0; r < r1 - r0; r++) out[r] += tmp[r];
      else
        for (int64_t r = 0; r < r1 - r0; r++) out[r] = tmp[r];
    }
  });
}

// m [rows] = silu(Wg · norm(x) + bg) · (Wu · norm(x) + bu), silu as swiglu.cc computes it.
void swiglu_project(float* m, Weight& wg, Weight& wu, const float* x, const float* norm, float eps) {
  std::vector<float> buf;
  const float* xn = normed(buf, x, norm, wg.cols, eps);
  lora_input(wg, xn);
  lora_input(wu, xn);
  const int64_t pieces = (wg.rows + kPiece - 1) / kPiece;
  parallel_for(pieces, piece_grain(wg.cols), [&](int64_t pb, int64_t pe) {
    float g[kPiece], u[kPiece];
    const v::F one = v::set1(1.0f);
    for (int64_t p = pb; p < pe; p++) {
      const int64_t r0 = p * kPiece, r1 = std::min(wg.rows, r0 + kPiece), n = r1 - r0;
      rows(g, wg, xn, r0, r1);
      rows(u, wu, xn, r0, r1);
      for (int64_t i = 0; i < n; i += v::kLanes) {
        const v::F gv = v::load(g + i, n - i), uv = v::load(u + i, n - i);
        v::store(m + r0 + i, gv / (one + v::exp(-gv)) * uv, n - i);
      }
    }
  });
}

// x [heads, Dh] in place: per-head rmsnorm with w [Dh], then the rotation by +θ of rope.cc.
void norm_rope(float* x, const float* w, const float* c, const float* s, int64_t heads, int64_t Dh, int64_t half, float eps) {
  for (int64_t h = 0; h < heads; h++) {
    float* xh = x + h * Dh;
    if (w) {
      float ss = 0.0f;
      for (int64_t d = 0; d < Dh; d++) ss += xh[d] * xh[d];
      const float r = 1.0f / std::sqrt(ss / static_cast<float>(Dh) + eps);
      for (int64_t d = 0; d < Dh; d++) xh[d] = w[d] * (xh[d] * r);
    }
    for (int64_t i = 0; i < half; i++) {
      const float x1 = xh[i], x2 = xh[i + half];
      xh[i] = x1 * c[i] - x2 * s[i];
      xh[i + half] = x2 * c[i] + x1 * s[i];
    }
  }
}

// out [H, Dh] = softmax(q · Kᵀ · scale) · V over the cache's first L positions; q [H, Dh],
// kc, vc [>= L, Hkv, Dh]; query head h reads kv head h / (H / Hkv).
// Where position t of the sequence lives in the cache: row t of a contiguous cache, or slot
// blocks[t / bs] * bs + t % bs of a paged one.
struct Slots {
  const int32_t* blocks = nullptr;
  int64_t bs = 1;
  int64_t operator()(int64_t t) const { return blocks ? int64_t(blocks[t / bs]) * bs + t % bs : t; }
};

void attend(float* out, const float* q, const float* kc, const float* vc, int64_t L, int64_t H, int64_t Hkv, int64_t Dh,
            float scale, Slots slot) {
  const int64_t group = H / Hkv, row = Hkv * Dh;
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(2 * L * Dh, 1));
  parallel_for(H, grain, [&](int64_t hb, int64_t he) {
    std::vector<float> p(L);
    for (int64_t h = hb; h < he; h++) {
      const float* qh = q + h * Dh;
      const int64_t g = h / group;
      float mx = -INFINITY;
      for (int64_t t = 0; t < L; t++) {
        const float* kt = kc + slot(t) * row + g * Dh;
        v::F a = v::zero();
        for (int64_t d = 0; d < Dh; d += v::kLanes) a = v::fma(v::load(qh + d, Dh - d), v::load(kt + d, Dh - d), a);
        p[t] = v::sum(a) * scale;
        mx = std::max(mx, p[t]);
      }
      const v::F m = v::set1(mx);
      v::F total = v::zero();
      for (int64_t t = 0; t < L; t += v::kLanes) {
        const v::F e = v::exp(v::load(p.data() + t, L - t) - m);
        // Lanes past L loaded 0, so their exp(−max) must not count: store and sum only the first L - t.
        v::store(p.data() + t, e, L - t);
        total += v::load(p.data() + t, L - t);
      }
      const float inv = 1.0f / v::sum(total);
      float* oh = out + h * Dh;
      for (int64_t d = 0; d < Dh; d += v::kLanes) {
        v::F a = v::zero();
        for (int64_t t = 0; t < L; t++) a = v::fma(v::set1(p[t]), v::load(vc + slot(t) * row + g * Dh + d, Dh - d), a);
        v::store(oh + d, a * v::set1(inv), Dh - d);
      }
    }
  });
}

// Argument i as an fp32 or bf16 array of at least n values (the 'f32|u16' kind), into w.
void float_weight(Args& a, size_t i, int64_t n, Weight& w) {
  napi_typedarray_type type;
  size_t len;
  void* data;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(a.env, a.raw(i), &type, &len, &data, &buffer, &offset) != napi_ok)
    throw ArgError("argument " + std::to_string(i) + " must be a Float32Array or Uint16Array");
  if (type == napi_float32_array)
    w.f = a.f32(i, n);
  else
    w.b = a.u16(i, n);
}

// Arguments per weight: dense (f32|u16) | null, int8 (u8) | null, int8 scale | null, bias | null,
// LoRA A | null, LoRA B | null, rank, scale.
constexpr size_t kWeightArgs = 8;

// A weight from its kWeightArgs arguments at i.
Weight weight_at(Args& a, size_t i, int64_t rows, int64_t cols) {
  Weight w;
  w.rows = rows;
  w.cols = cols;
  if (!a.absent(i)) float_weight(a, i, rows * cols, w);
  if (!a.absent(i + 1)) {
    if (a.absent(i + 2)) throw ArgError("an int8 weight needs its row scales");
    w.q = reinterpret_cast<const int8_t*>(a.u8(i + 1, rows * cols));
    w.scale = a.f32(i + 2, rows);
  }
  if ((w.f || w.b) == (w.q != nullptr)) throw ArgError("give a weight either dense or int8");
  if (!a.absent(i + 3)) w.bias = a.f32(i + 3, rows);
  w.rank = a.int64(i + 6);
  if (w.rank < 0) throw ArgError("LoRA rank must be >= 0");
  if (w.rank > 0) {
    if (a.absent(i + 4) || a.absent(i + 5)) throw ArgError("a LoRA adapter needs both A and B");
    w.lora_a = a.f32(i + 4, w.rank * cols);
    w.lora_b = a.f32(i + 5, rows * w.rank);
    w.lora_s = static_cast<float>(a.num(i + 7));
  }
  return w;
}
}  // namespace

// (y0, y1 | null, y2 | null, x, norm | null, then 3 weights of kWeightArgs each, rows0, rows1, rows2,
// cols, eps, accumulate): y_i [rows_i], x [cols]; rows_i = 0 for an unused weight.
constexpr size_t kProjectSizes = 5 + 3 * kWeightArgs;
LK_ENTRY(js_decode_project, kProjectSizes + 6, {
  const int64_t cols = a.int64(kProjectSizes + 3);
  const float eps = static_cast<float>(a.num(kProjectSizes + 4));
  const bool accumulate = a.boolean(kProjectSizes + 5);
  float* y[3] = {};
  Weight w[3];
  int nw = 0;
  for (int i = 0; i < 3; i++) {
    const int64_t r = a.int64(kProjectSizes + i);
    if (r == 0) continue;
    if (nw != i) throw ArgError("weights must come first: rows0, rows1, rows2 with zeros last");
    y[i] = a.f32(i, r);
    w[i] = weight_at(a, 5 + kWeightArgs * i, r, cols);
    nw++;
  }
  if (nw == 0) return undefined(a.env);
  project(y, w, nw, a.f32(3, cols), a.absent(4) ? nullptr : a.f32(4, cols), eps, accumulate);
})

// (m, x, norm | null, gate, up (kWeightArgs each), rows, cols, eps)
LK_ENTRY(js_decode_swiglu, 3 + 2 * kWeightArgs + 3, {
  constexpr size_t sizes = 3 + 2 * kWeightArgs;
  const int64_t rows = a.int64(sizes), cols = a.int64(sizes + 1);
  Weight wg = weight_at(a, 3, rows, cols), wu = weight_at(a, 3 + kWeightArgs, rows, cols);
  swiglu_project(a.f32(0, rows), wg, wu, a.f32(1, cols), a.absent(2) ? nullptr : a.f32(2, cols),
                 static_cast<float>(a.num(sizes + 2)));
})

// (out, q, k, v, kCache, vCache, qNorm | null, kNorm | null, cos, sin, at, pos, H, Hkv, Dh, half, P, eps, scale,
//  blocks | null, blockSize)
// q [H·Dh] is normed and rotated in place, k [Hkv·Dh] too before it is written at cache position `at`, v
// as it is; out [H·Dh] attends over positions [0, at]. Without blocks the cache is contiguous
// [capacity, Hkv, Dh]; with blocks (i32, the sequence's blocks in order) it is a block pool
// [numBlocks, blockSize, Hkv, Dh] and position t is at slot blocks[t / blockSize]·blockSize + t % blockSize.
LK_ENTRY(js_decode_attention, 21, {
  const int64_t at = a.int64(10), pos = a.int64(11), H = a.int64(12), Hkv = a.int64(13), Dh = a.int64(14),
                half = a.int64(15), P = a.int64(16);
  const float eps = static_cast<float>(a.num(17)), scale = static_cast<float>(a.num(18));
  if (Hkv <= 0 || H % Hkv != 0) throw ArgError("query heads must be a multiple of the key/value heads");
  if (2 * half > Dh) throw ArgError("rotary width exceeds the head dimension");
  if (pos < 0 || pos >= P) throw ArgError("position " + std::to_string(pos) + " is outside the rope tables");
  if (at < 0) throw ArgError("cache row must be >= 0");
  const int64_t row = Hkv * Dh;
  float* q = a.f32(1, H * Dh);
  float* k = a.f32(2, row);
  const float* vv = a.f32(3, row);
  Slots slot;
  int64_t slots = at + 1;  // cache rows the positions reach
  if (!a.absent(19)) {
    slot.bs = a.int64(20);
    if (slot.bs < 1) throw ArgError("block size must be >= 1");
    const int64_t nblocks = (at + slot.bs) / slot.bs;
    slot.blocks = a.i32(19, nblocks);
    slots = 0;
    for (int64_t b = 0; b < nblocks; b++) {
      if (slot.blocks[b] < 0) throw ArgError("block ids must be >= 0");
      slots = std::max(slots, (int64_t(slot.blocks[b]) + 1) * slot.bs);
    }
  }
  float* kc = a.f32(4, slots * row);
  float* vc = a.f32(5, slots * row);
  const float* qn = a.absent(6) ? nullptr : a.f32(6, Dh);
  const float* kn = a.absent(7) ? nullptr : a.f32(7, Dh);
  const float* c = a.f32(8, P * half) + pos * half;
  const float* s = a.f32(9, P * half) + pos * half;
  norm_rope(q, qn, c, s, H, Dh, half, eps);
  norm_rope(k, kn, c, s, Hkv, Dh, half, eps);
  std::copy(k, k + row, kc + slot(at) * row);
  std::copy(vv, vv + row, vc + slot(at) * row);
  attend(a.f32(0, H * Dh), q, kc, vc, at + 1, H, Hkv, Dh, scale, slot);
})

LK_EXPORT("decodeProject", js_decode_project);
LK_EXPORT("decodeSwiglu", js_decode_swiglu);
LK_EXPORT("decodeAttention", js_decode_attention);

}  // namespace lk
