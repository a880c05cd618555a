// Paged KV cache harness: paged_kv_write (the pools must hold exactly the rows written, nothing else
// touched) and paged_attention against a float64 reference, on odd sizes: N = 1..37 rows mixing
// several sequences (some rows of one sequence at consecutive positions, as a prefill chunk), GQA
// groups of 1, 4 and 7 (and 16, split over blocks), D 64, 128, 80 and 13 (16-byte and scalar loads),
// block sizes 16, 1 and 7, shuffled non-contiguous block tables, contexts up to ~3000 (one row alone:
// the flash-decoding split and merge), bf16 and f32. Then the decode-shaped timing (64 rows, Hq 32,
// Hkv 8, D 128, contexts 1024 and 8192, bf16) in GB/s of K and V read.
#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

Buf up_as(DType t, const std::vector<float>& v) { return t == DType::F32 ? up(v) : up_bf16(v); }
std::vector<float> down_as(DType t, const void* p, size_t n) { return t == DType::F32 ? down<float>(p, n) : down_bf16(p, n); }

template <typename T>
void shuffle(std::vector<T>& v, Rng& r) {
  for (size_t i = v.size(); i > 1; i--) std::swap(v[i - 1], v[size_t(r.below(int(i)))]);
}

struct Case {
  std::vector<int> lens;  // sequence lengths
  int N, Hq, Hkv, D, bs;
};

void check_case(const Case& c, DType t, Rng& r) {
  const bool f32 = t == DType::F32;
  const int S = int(c.lens.size()), row = c.Hkv * c.D;
  std::vector<int> blocks_of(S);
  int num_blocks = 2, max_blocks = 1;  // spare blocks: never read
  for (int s = 0; s < S; s++) {
    blocks_of[s] = (c.lens[s] + c.bs - 1) / c.bs;
    num_blocks += blocks_of[s];
    max_blocks = std::max(max_blocks, blocks_of[s] + 1);
  }
  std::vector<int32_t> ids(num_blocks), table(size_t(S) * max_blocks, -1);
  for (int i = 0; i < num_blocks; i++) ids[i] = i;
  shuffle(ids, r);
  for (int s = 0, n = 0; s < S; s++)
    for (int b = 0; b < blocks_of[s]; b++) table[size_t(s) * max_blocks + b] = ids[n++];
  // Every position of every sequence, written in a shuffled order with one paged_kv_write.
  std::vector<std::pair<int, int>> order;
  for (int s = 0; s < S; s++)
    for (int p = 0; p < c.lens[s]; p++) order.push_back({s, p});
  shuffle(order, r);
  const int64_t rows = int64_t(order.size()), num_slots = int64_t(num_blocks) * c.bs;
  auto slot_of = [&](int s, int p) { return int64_t(table[size_t(s) * max_blocks + p / c.bs]) * c.bs + p % c.bs; };
  std::vector<int32_t> slots(rows);
  for (int64_t i = 0; i < rows; i++) slots[i] = int32_t(slot_of(order[i].first, order[i].second));
  auto k = randn(r, size_t(rows) * row, 1.f, !f32), v = randn(r, size_t(rows) * row, 1.f, !f32);
  const size_t pool_n = size_t(num_slots) * row, es = lkc::dtype_size(t);
  Buf kp(pool_n * es), vp(pool_n * es), dk = up_as(t, k), dv = up_as(t, v), dslots = up(slots);
  kp.poison(), vp.poison();  // unwritten slots are NaN: reading one spoils the output
  lkc::paged_kv_write(kp.p, vp.p, dk.p, dv.p, t, dslots.as<int32_t>(), rows, c.Hkv, c.D, nullptr);
  const std::string tag = std::string(lkc::dtype_name(t)) + " " + dims({c.N, c.Hq, c.Hkv, c.D}) + " bs=" + std::to_string(c.bs) +
                          " S=" + std::to_string(S);
  {
    const auto gk = down_as(t, kp.p, pool_n), gv = down_as(t, vp.p, pool_n);
    bool same = true;
    for (int64_t i = 0; i < rows && same; i++)
      for (int e = 0; e < row; e++)
        same = same && gk[size_t(slots[i]) * row + e] == k[size_t(i) * row + e] && gv[size_t(slots[i]) * row + e] == v[size_t(i) * row + e];
    expect("paged_kv_write", tag + " rows land at their slots", same);
  }
  // Dense per-sequence K and V for the reference.
  std::vector<std::vector<float>> ks(S), vs(S);
  for (int s = 0; s < S; s++) ks[s].resize(size_t(c.lens[s]) * row), vs[s].resize(size_t(c.lens[s]) * row);
  for (int64_t i = 0; i < rows; i++)
    for (int e = 0; e < row; e++) {
      ks[order[i].first][size_t(order[i].second) * row + e] = k[size_t(i) * row + e];
      vs[order[i].first][size_t(order[i].second) * row + e] = v[size_t(i) * row + e];
    }
  // Query rows: each sequence's last position, then runs of up to 4 consecutive positions.
  std::vector<int32_t> rseq, rpos;
  for (int s = 0; s < S && int(rseq.size()) < c.N; s++) rseq.push_back(s), rpos.push_back(c.lens[s] - 1);
  while (int(rseq.size()) < c.N) {
    const int s = r.below(S), start = r.below(c.lens[s]), run = 1 + r.below(4);
    for (int p = start; p < std::min(c.lens[s], start + run) && int(rseq.size()) < c.N; p++) rseq.push_back(s), rpos.push_back(p);
  }
  std::vector<int> perm(c.N);
  for (int i = 0; i < c.N; i++) perm[i] = i;
  shuffle(perm, r);
  std::vector<int32_t> seq(c.N), pos(c.N);
  for (int i = 0; i < c.N; i++) seq[i] = rseq[perm[i]], pos[i] = rpos[perm[i]];
  const float scale = float(1.1 / std::sqrt(double(c.D)));
  auto q = randn(r, size_t(c.N) * c.Hq * c.D, 1.f, !f32);
  const int G = c.Hq / c.Hkv;
  std::vector<double> ref(q.size());
  for (int i = 0; i < c.N; i++)
    for (int h = 0; h < c.Hq; h++) {
      const int g = h / G, L = pos[i] + 1;
      std::vector<double> sc(L);
      double mx = -INFINITY, sum = 0;
      for (int p = 0; p < L; p++) {
        double a = 0;
        for (int d = 0; d < c.D; d++) a += double(q[(size_t(i) * c.Hq + h) * c.D + d]) * ks[seq[i]][(size_t(p) * c.Hkv + g) * c.D + d];
        sc[p] = a * scale;
        mx = std::max(mx, sc[p]);
      }
      for (int p = 0; p < L; p++) sum += (sc[p] = std::exp(sc[p] - mx));
      for (int p = 0; p < L; p++)
        for (int d = 0; d < c.D; d++)
          ref[(size_t(i) * c.Hq + h) * c.D + d] += sc[p] / sum * vs[seq[i]][(size_t(p) * c.Hkv + g) * c.D + d];
    }
  Buf dq = up_as(t, q), dout(q.size() * es), dtab = up(table), dseq = up(seq), dpos = up(pos);
  const size_t ws_bytes = lkc::paged_attention_workspace(c.N, c.Hq, c.Hkv, c.D, c.bs, max_blocks);
  Buf ws(ws_bytes);
  dout.poison();
  lkc::paged_attention(dout.p, dq.p, kp.p, vp.p, t, dtab.as<int32_t>(), dseq.as<int32_t>(), dpos.as<int32_t>(), c.N, c.Hq, c.Hkv,
                       c.D, c.bs, max_blocks, scale, ws_bytes ? ws.p : nullptr, nullptr);
  // bf16: inputs exact, one output rounding and fp32 sums over thousands of positions.
  check("paged_attention", tag + (ws_bytes ? " split" : ""), compare(down_as(t, dout.p, q.size()), ref), f32 ? 1e-5 : 1e-2);
}

void correctness() {
  Rng r(97);
  const std::vector<Case> cases = {
      {{5, 37, 130}, 11, 4, 4, 64, 16},          // groups of 1
      {{1, 2999, 77}, 9, 8, 2, 13, 7},           // groups of 4, scalar loads, odd block size
      {{19, 45, 3}, 37, 7, 1, 80, 1},            // a group of 7, one slot per block
      {{200, 3, 640, 1}, 23, 32, 8, 128, 16},    // groups of 4, D 128
      {{3001}, 1, 28, 4, 128, 16},               // one row, a long context: split over blocks
      {{2500, 1700}, 2, 16, 1, 64, 7},           // a group of 16 (two blocks), split
      {{33, 1}, 3, 4, 1, 13, 16},
      {{300, 12, 90, 2000, 41, 5}, 29, 14, 2, 80, 16},
  };
  for (const Case& c : cases)
    for (DType t : {DType::BF16, DType::F32}) check_case(c, t, r);
  expect_throw("paged_attention", "Hq not a multiple of Hkv", [] {
    lkc::paged_attention(nullptr, nullptr, nullptr, nullptr, DType::BF16, nullptr, nullptr, nullptr, 1, 6, 4, 64, 16, 4, 1.f, nullptr,
                         nullptr);
  });
  expect_throw("paged_attention", "D over 256", [] {
    lkc::paged_attention(nullptr, nullptr, nullptr, nullptr, DType::BF16, nullptr, nullptr, nullptr, 1, 4, 4, 320, 16, 4, 1.f, nullptr,
                         nullptr);
  });
  expect_throw("paged_kv_write", "u8 tensors",
               [] { lkc::paged_kv_write(nullptr, nullptr, nullptr, nullptr, DType::U8, nullptr, 4, 2, 8, nullptr); });
}

// Decode rows, one sequence each, every sequence `ctx` long (its last position is the row's), blocks
// of 16 handed out shuffled; the rate counts the K and V bytes every row reads once per kv head.
void time_decode(int N, int ctx) {
  const int Hq = 32, Hkv = 8, D = 128, bs = 16;
  const int max_blocks = ctx / bs;
  const int64_t num_blocks = int64_t(N) * max_blocks, pool_n = num_blocks * bs * Hkv * D;
  Buf kp = rand_bf16(pool_n, 1), vp = rand_bf16(pool_n, 2), q = rand_bf16(int64_t(N) * Hq * D, 3), out(size_t(N) * Hq * D * 2);
  std::vector<int32_t> table(static_cast<size_t>(num_blocks));
  for (int64_t i = 0; i < num_blocks; i++) table[i] = int32_t(i);
  Rng r(5);
  shuffle(table, r);
  std::vector<int32_t> seq(N), pos(N, ctx - 1);
  for (int i = 0; i < N; i++) seq[i] = i;
  Buf dtab = up(table), dseq = up(seq), dpos = up(pos);
  const size_t ws_bytes = lkc::paged_attention_workspace(N, Hq, Hkv, D, bs, max_blocks);
  Buf ws(ws_bytes);
  const double us = time_us([&] {
    lkc::paged_attention(out.p, q.p, kp.p, vp.p, DType::BF16, dtab.as<int32_t>(), dseq.as<int32_t>(), dpos.as<int32_t>(), N, Hq, Hkv, D,
                         bs, max_blocks, 0.088f, ws_bytes ? ws.p : nullptr, nullptr);
  });
  const double bytes = 2.0 * N * ctx * Hkv * D * 2;
  timing("paged_attention bf16 decode", dims({N, Hq, Hkv, D}) + " ctx=" + std::to_string(ctx) + (ws_bytes ? " split" : ""), us,
         gbps(bytes, us));
}

void timings() {
  for (int ctx : {1024, 8192}) time_decode(64, ctx);
  time_decode(1, 8192);  // one row: flash-decoding carries it
}

}  // namespace

int main() {
  return run("paged_attention", [] {
    correctness();
    if (!quick()) timings();
  });
}
