// Paged KV cache for serving (inference only): keys and values live in a pool of fixed-size blocks,
// each sequence owning a list of blocks (its row of the block table), so sequences grow without one
// contiguous cache each and freed blocks are reused by any sequence.
//
//   pagedKvWrite:   kPool[slots[i]] = k[i], vPool[slots[i]] = v[i]; pools [numSlots, Hkv, D]
//                   (numSlots = numBlocks · blockSize), k, v [N, Hkv, D]
//   pagedAttention: out[i, h] = softmax(q[i, h] · Kᵀ · scale) · V over positions 0..rowPos[i] of
//                   sequence rowSeq[i], position p at slot blockTables[rowSeq[i], p / blockSize] ·
//                   blockSize + p % blockSize; query head h reads kv head h / (Hq / Hkv); rowPos[i]
//                   = −1: row i attends to nothing and is zeros
//
// Attention is an online softmax over chunks of kChunk positions (a running max, the sum and the
// output rescaled when the max grows), so no buffer grows with the context. Products and sums fp32.
// Every index is checked before anything is read or written: a bad one throws and leaves the outputs
// as they were.
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

// Positions scored at once: their scores sit in a stack buffer between the two passes over a chunk.
constexpr int64_t kChunk = 64;

// kPool, vPool [numSlots, Hkv, D] <- k, v [rows, Hkv, D] at slots [rows].
void kv_write(float* kp, float* vp, const float* k, const float* vv, const int32_t* slots, int64_t rows, int64_t row) {
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(2 * row, 1));
  parallel_for(rows, grain, [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; r++) {
      const int64_t s = slots[r];
      std::copy(k + r * row, k + (r + 1) * row, kp + s * row);
      std::copy(vv + r * row, vv + (r + 1) * row, vp + s * row);
    }
  });
}

struct Paged {
  const float *kp, *vp;
  const int32_t* tables;  // [S, maxBlocks]
  int64_t Hkv, D, block_size, max_blocks;
};

// out [D] = softmax(q · Kᵀ · scale) · V over positions [0, L) of the sequence whose block-table row is
// `table`, for kv head g; q [D].
void attend_paged(float* out, const float* q, const Paged& p, const int32_t* table, int64_t L, int64_t g, float scale) {
  const int64_t D = p.D, row = p.Hkv * D;
  float s[kChunk];
  int64_t off[kChunk];  // where each chunk position's kv head starts within either pool
  float m = -INFINITY, l = 0.0f;
  std::fill(out, out + D, 0.0f);
  if (L == 0) return;  // rowPos −1: a row with nothing to attend to (answered by another kernel) is zeros
  for (int64_t c0 = 0; c0 < L; c0 += kChunk) {
    const int64_t n = std::min(kChunk, L - c0);
    float cmax = -INFINITY;
    for (int64_t t = 0; t < n; t++) {
      const int64_t pos = c0 + t;
      const int64_t slot = int64_t(table[pos / p.block_size]) * p.block_size + pos % p.block_size;
      off[t] = slot * row + g * D;
      const float* kt = p.kp + off[t];
      v::F a = v::zero();
      for (int64_t d = 0; d < D; d += v::kLanes) a = v::fma(v::load(q + d, D - d), v::load(kt + d, D - d), a);
      s[t] = v::sum(a) * scale;
      cmax = std::max(cmax, s[t]);
    }
    const float mnew = std::max(m, cmax);
    // The first chunk: m = −inf, alpha = 0, and out and l are still 0.
    const float alpha = std::exp(m - mnew);
    const v::F mv = v::set1(mnew);
    v::F total = v::zero();
    for (int64_t t = 0; t < n; t += v::kLanes) {
      const v::F e = v::exp(v::load(s + t, n - t) - mv);
      // Lanes past n loaded 0, so their exp(−max) must not count: store and sum only the first n - t.
      v::store(s + t, e, n - t);
      total += v::load(s + t, n - t);
    }
    l = l * alpha + v::sum(total);
    const v::F av = v::set1(alpha);
    for (int64_t d = 0; d < D; d += v::kLanes) {
      v::F a = v::load(out + d, D - d) * av;
      for (int64_t t = 0; t < n; t++)
        a = v::fma(v::set1(s[t]), v::load(p.vp + off[t] + d, D - d), a);
      v::store(out + d, a, D - d);
    }
    m = mnew;
  }
  const v::F inv = v::set1(1.0f / l);
  for (int64_t d = 0; d < D; d += v::kLanes) v::store(out + d, v::load(out + d, D - d) * inv, D - d);
}

// out [N, Hq, D] for q [N, Hq, D], one (row, query head) per work item; consecutive heads of one kv
// group fall to the same thread, which finds that group's keys and values still in cache.
// `positions` (Σ rowPos + 1) sizes the work so that short calls stay on the calling thread.
void paged_attention(float* out, const float* q, const Paged& p, const int32_t* row_seq, const int32_t* row_pos, int64_t N,
                     int64_t Hq, int64_t positions, float scale) {
  const int64_t group = Hq / p.Hkv, D = p.D;
  const int64_t per_item = std::max<int64_t>(1, 2 * D * positions / std::max<int64_t>(N, 1));
  parallel_for(N * Hq, std::max<int64_t>(1, (1 << 14) / per_item), [&](int64_t ib, int64_t ie) {
    for (int64_t i = ib; i < ie; i++) {
      const int64_t r = i / Hq, h = i % Hq;
      attend_paged(out + i * D, q + i * D, p, p.tables + int64_t(row_seq[r]) * p.max_blocks, int64_t(row_pos[r]) + 1,
                   h / group, scale);
    }
  });
}

std::string str(int64_t x) { return std::to_string(x); }

void check_slots(const int32_t* slots, int64_t rows, int64_t num_slots) {
  for (int64_t r = 0; r < rows; r++)
    if (slots[r] < 0 || slots[r] >= num_slots)
      throw ArgError("pagedKvWrite: slot " + str(slots[r]) + " of row " + str(r) + " is outside the pool's " + str(num_slots) +
                     " slots");
}

// Every row's sequence, position and the block ids its positions use, before any is read; returns
// the positions attended over, Σ (rowPos + 1).
int64_t check_rows(const Paged& p, const int32_t* row_seq, const int32_t* row_pos, int64_t N, int64_t S, int64_t num_blocks) {
  int64_t positions = 0;
  for (int64_t r = 0; r < N; r++) {
    if (row_seq[r] < 0 || row_seq[r] >= S)
      throw ArgError("pagedAttention: row " + str(r) + " names sequence " + str(row_seq[r]) + " but the block table has " +
                     str(S) + " rows");
    if (row_pos[r] == -1) continue;
    if (row_pos[r] < 0 || int64_t(row_pos[r]) >= p.max_blocks * p.block_size)
      throw ArgError("pagedAttention: position " + str(row_pos[r]) + " of row " + str(r) + " is outside the block table's " +
                     str(p.max_blocks * p.block_size) + " positions");
    const int32_t* table = p.tables + int64_t(row_seq[r]) * p.max_blocks;
    for (int64_t b = 0; b <= row_pos[r] / p.block_size; b++)
      if (table[b] < 0 || table[b] >= num_blocks)
        throw ArgError("pagedAttention: block " + str(table[b]) + " at blockTables[" + str(row_seq[r]) + ", " + str(b) +
                       "] is outside the pool's " + str(num_blocks) + " blocks");
    positions += int64_t(row_pos[r]) + 1;
  }
  return positions;
}
}  // namespace

// (kPool, vPool, k, v, slots, rows, Hkv, D, numSlots)
LK_ENTRY(js_paged_kv_write, 9, {
  const int64_t rows = a.int64(5), Hkv = a.int64(6), D = a.int64(7), num_slots = a.int64(8);
  const int64_t row = Hkv * D;
  const int32_t* slots = a.i32(4, rows);
  check_slots(slots, rows, num_slots);
  kv_write(a.f32(0, num_slots * row), a.f32(1, num_slots * row), a.f32(2, rows * row), a.f32(3, rows * row), slots, rows, row);
})

// (out, q, kPool, vPool, blockTables, rowSeq, rowPos, N, Hq, Hkv, D, numBlocks, blockSize, S, maxBlocks, scale)
LK_ENTRY(js_paged_attention, 16, {
  const int64_t N = a.int64(7), Hq = a.int64(8), Hkv = a.int64(9), D = a.int64(10), num_blocks = a.int64(11),
                block_size = a.int64(12), S = a.int64(13), max_blocks = a.int64(14);
  const float scale = static_cast<float>(a.num(15));
  if (Hkv <= 0 || Hq % Hkv != 0) throw ArgError("query heads must be a multiple of the key/value heads");
  if (block_size <= 0 || D <= 0) throw ArgError("block size and head size must be positive");
  const int64_t pool = num_blocks * block_size * Hkv * D;
  Paged p{a.f32(2, pool), a.f32(3, pool), a.i32(4, S * max_blocks), Hkv, D, block_size, max_blocks};
  const int32_t* row_seq = a.i32(5, N);
  const int32_t* row_pos = a.i32(6, N);
  const int64_t positions = check_rows(p, row_seq, row_pos, N, S, num_blocks);
  paged_attention(a.f32(0, N * Hq * D), a.f32(1, N * Hq * D), p, row_seq, row_pos, N, Hq, positions, scale);
})

LK_EXPORT("pagedKvWriteF32", js_paged_kv_write);
LK_EXPORT("pagedAttentionF32", js_paged_attention);

}  // namespace lk
