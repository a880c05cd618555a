// Embedding harness: gather forward and scatter-add backward with repeated ids and out-of-range ids
// (zero rows, no gradient), vector and scalar paths, against float64 references.
#include "harness.h"

using namespace hx;

namespace {

void correctness() {
  Rng r(51);
  struct Case {
    int64_t N;
    int C;
    int64_t V;
  };
  for (Case c : {Case{1, 7, 3}, Case{33, 64, 17}, Case{127, 33, 1000}, Case{7, 2048, 5}}) {
    const std::string tag = dims({c.N, c.C}) + " V=" + std::to_string(c.V);
    std::vector<int32_t> ids(c.N);
    for (auto& i : ids) i = r.below(int(c.V));
    if (c.N > 3) ids[1] = -5, ids[2] = int32_t(c.V);  // out of range: zero row, no gradient
    auto table = randn(r, c.V * c.C), dout = randn(r, c.N * c.C);
    Buf dt = up_bf16(table), did = up(ids), out(c.N * c.C * 2), dd = up_bf16(dout), grad(c.V * c.C * 4);
    out.poison();
    lkc::embedding_forward(out.bf(), did.as<int32_t>(), dt.bf(), c.N, c.C, c.V, nullptr);
    std::vector<double> ref(c.N * c.C, 0.0), gref(c.V * c.C, 0.0);
    for (int64_t n = 0; n < c.N; n++)
      if (ids[n] >= 0 && ids[n] < c.V)
        for (int k = 0; k < c.C; k++) {
          ref[n * c.C + k] = table[ids[n] * c.C + k];
          gref[ids[n] * c.C + k] += dout[n * c.C + k];
        }
    check("embedding fwd", tag, compare(down_bf16(out.p, c.N * c.C), ref), 0);
    grad.zero();
    lkc::embedding_backward(grad.f(), dd.bf(), did.as<int32_t>(), c.N, c.C, c.V, nullptr);
    check("embedding bwd", tag, compare(down<float>(grad.p, c.V * c.C), gref), 1e-6);
  }
}

void timings() {
  const int64_t N = 16384, V = 128256;
  const int C = 4096;
  Buf table = rand_bf16(V * C, 1), out(N * C * 2), dout = rand_bf16(N * C, 2), grad(V * C * 4);
  std::vector<int32_t> ids(N);
  Rng r(5);
  for (auto& i : ids) i = r.below(int(V));
  Buf did = up(ids);
  double us = time_us([&] { lkc::embedding_forward(out.bf(), did.as<int32_t>(), table.bf(), N, C, V, nullptr); });
  timing("embedding fwd", dims({N, C}), us, gbps(4.0 * N * C, us));
  us = time_us([&] { lkc::embedding_backward(grad.f(), dout.bf(), did.as<int32_t>(), N, C, V, nullptr); });
  timing("embedding bwd", dims({N, C}), us, gbps(10.0 * N * C, us));
}

}  // namespace

int main() {
  return run("embedding", [] {
    correctness();
    if (!quick()) timings();
  });
}
