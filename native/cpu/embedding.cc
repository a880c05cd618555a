// Token embedding: out[n, :] = table[ids[n], :], table f32 or bf16, out f32.
// Backward scatter-adds dy rows into an f32 dtable; it needs only ids (saved by the op).
#include <algorithm>
#include <cstring>
#include <string>

#include "napi_util.h"
#include "parallel.h"
#include "simd.h"

namespace lk {
namespace {
namespace v = simd;

// f(i, k) over [b, e): whole vectors (k = kLanes, a constant once inlined, so the loads and stores
// are unmasked and the one-lane path is a plain loop the compiler vectorizes), then one tail k < kLanes.
template <class Fn>
LK_INLINE void for_lanes(int64_t b, int64_t e, Fn&& f) {
  int64_t i = b;
  for (; i + v::kLanes <= e; i += v::kLanes) f(i, int64_t{v::kLanes});
  if (i < e) f(i, e - i);
}

int64_t row_grain(int64_t D) { return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(D, 1)); }

void check_ids(const int32_t* ids, int64_t N, int64_t V) {
  for (int64_t n = 0; n < N; n++)
    if (ids[n] < 0 || ids[n] >= V)
      throw ArgError("token id " + std::to_string(ids[n]) + " is outside the vocabulary [0, " + std::to_string(V) + ")");
}

// out [N, D]  <-  table [V, D] (f32), ids [N]
void embedding_forward_f32(float* out, const float* table, const int32_t* ids, int64_t N, int64_t D) {
  parallel_for(N, row_grain(D), [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; n++) std::memcpy(out + n * D, table + static_cast<int64_t>(ids[n]) * D, D * sizeof(float));
  });
}

// out [N, D]  <-  table [V, D] (bf16 bits), ids [N]
void embedding_forward_bf16(float* out, const uint16_t* table, const int32_t* ids, int64_t N, int64_t D) {
  parallel_for(N, row_grain(D), [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; n++) {
      const uint16_t* src = table + static_cast<int64_t>(ids[n]) * D;
      float* dst = out + n * D;
      for_lanes(0, D, [&](int64_t d, int64_t k) { v::store(dst + d, v::load(src + d, k), k); });
    }
  });
}

// dtable [V, D] = 0, then dtable[ids[n], :] += dy[n, :]   <-  dy [N, D], ids [N]
// Repeated ids would race if threads split the tokens, so threads split the columns instead: each
// owns a 64-byte-aligned column range of every row, and walks all tokens in order.
void embedding_backward(float* dtable, const float* dy, const int32_t* ids, int64_t N, int64_t V, int64_t D) {
  parallel_for(V, row_grain(D), [&](int64_t b, int64_t e) { std::memset(dtable + b * D, 0, (e - b) * D * sizeof(float)); });
  const int64_t blocks = (D + 15) / 16;  // 16 floats = one cache line
  parallel_for(blocks, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(N * 16, 1)), [&](int64_t bb, int64_t be) {
    const int64_t c0 = bb * 16, c1 = std::min(be * 16, D);
    for (int64_t n = 0; n < N; n++) {
      float* dst = dtable + static_cast<int64_t>(ids[n]) * D;
      const float* src = dy + n * D;
      for_lanes(c0, c1, [&](int64_t c, int64_t k) { v::store(dst + c, v::load(dst + c, k) + v::load(src + c, k), k); });
    }
  });
}
}  // namespace

// (out, table, ids, N, V, D)
LK_ENTRY(js_embedding_forward_f32, 6, {
  int64_t N = a.int64(3), V = a.int64(4), D = a.int64(5);
  const int32_t* ids = a.i32(2, N);
  check_ids(ids, N, V);
  embedding_forward_f32(a.f32(0, N * D), a.f32(1, V * D), ids, N, D);
})
LK_ENTRY(js_embedding_forward_bf16, 6, {
  int64_t N = a.int64(3), V = a.int64(4), D = a.int64(5);
  const int32_t* ids = a.i32(2, N);
  check_ids(ids, N, V);
  embedding_forward_bf16(a.f32(0, N * D), a.u16(1, V * D), ids, N, D);
})
// (dtable, dy, ids, N, V, D)
LK_ENTRY(js_embedding_backward, 6, {
  int64_t N = a.int64(3), V = a.int64(4), D = a.int64(5);
  const int32_t* ids = a.i32(2, N);
  check_ids(ids, N, V);
  embedding_backward(a.f32(0, V * D), a.f32(1, N * D), ids, N, V, D);
})

LK_EXPORT("embeddingForwardF32", js_embedding_forward_f32);
LK_EXPORT("embeddingForwardBf16", js_embedding_forward_bf16);
LK_EXPORT("embeddingBackwardF32", js_embedding_backward);

}  // namespace lk
