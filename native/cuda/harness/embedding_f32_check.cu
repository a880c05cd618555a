// Embedding forward from an f32 table: out = bf16(table[id]) bit-exact (round to nearest even) with
// repeated and out-of-range ids (zero rows), odd widths, more rows than the grid holds; the bf16-table
// kernel on the bf16-rounded table gives the same output; then bandwidth.
#include "harness.h"

using namespace hx;

namespace {

void correctness() {
  Rng r(89);
  struct Case {
    int64_t N;
    int C;
    int64_t V;
  };
  for (Case c : {Case{1, 7, 3}, Case{33, 64, 17}, Case{127, 33, 1000}, Case{7, 2048, 5}, Case{40000, 5, 300}}) {
    const std::string tag = dims({c.N, c.C}) + " V=" + std::to_string(c.V);
    std::vector<int32_t> ids(c.N);
    for (auto& i : ids) i = r.below(int(c.V));
    if (c.N > 3) ids[1] = -5, ids[2] = int32_t(c.V);  // out of range: zero rows
    auto table = randn(r, c.V * c.C, 1.f, false);
    Buf dt = up(table), dtb = up_bf16(table), did = up(ids), out(c.N * c.C * 2);
    out.poison();
    lkc::embedding_forward_f32(out.bf(), did.as<int32_t>(), dt.f(), c.N, c.C, c.V, nullptr);
    std::vector<double> ref(c.N * c.C, 0.0);
    for (int64_t n = 0; n < c.N; n++)
      if (ids[n] >= 0 && ids[n] < c.V)
        for (int k = 0; k < c.C; k++) ref[n * c.C + k] = round_bf16(table[ids[n] * c.C + k]);
    check("embedding fwd f32 table (bit-exact)", tag, compare(down_bf16(out.p, c.N * c.C), ref), 0);
    out.poison();
    lkc::embedding_forward(out.bf(), did.as<int32_t>(), dtb.bf(), c.N, c.C, c.V, nullptr);
    check("embedding fwd bf16 table agrees", tag, compare(down_bf16(out.p, c.N * c.C), ref), 0);
  }
}

void timings() {
  const int64_t N = 16384, V = 32000;
  const int C = 4096;
  Buf table(size_t(V) * C * 4), out(size_t(N) * C * 2);
  table.zero();
  std::vector<int32_t> ids(N);
  Rng r(5);
  for (auto& i : ids) i = r.below(int(V));
  Buf did = up(ids);
  const double us = time_us([&] { lkc::embedding_forward_f32(out.bf(), did.as<int32_t>(), table.f(), N, C, V, nullptr); });
  timing("embedding fwd f32 table", dims({N, C}), us, gbps(6.0 * N * C, us));
}

}  // namespace

int main() {
  return run("embedding_f32", [] {
    correctness();
    if (!quick()) timings();
  });
}
