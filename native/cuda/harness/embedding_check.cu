// Embedding harness: gather forward for every table -> rows pair (bf16 -> bf16, f32 -> bf16 rounding to
// nearest even, f32 -> f32), bit-exact, and scatter-add backward from bf16 and f32 gradients, with
// repeated and out-of-range ids (zero rows, no gradient), vector and scalar paths, odd widths and more
// rows than the grid holds, against float64 references; then bandwidth.
#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

// Values already representable in t go up as t; results come back as floats.
Buf up_as(DType t, const std::vector<float>& v) { return t == DType::F32 ? up(v) : up_bf16(v); }
std::vector<float> down_as(DType t, const void* p, size_t n) { return t == DType::F32 ? down<float>(p, n) : down_bf16(p, n); }

void correctness() {
  Rng r(51);
  struct Case {
    int64_t N;
    int C;
    int64_t V;
  };
  struct Pair {
    DType table, out;
  };
  for (Case c : {Case{1, 7, 3}, Case{33, 64, 17}, Case{127, 33, 1000}, Case{7, 2048, 5}, Case{40000, 5, 300}}) {
    std::vector<int32_t> ids(c.N);
    for (auto& i : ids) i = r.below(int(c.V));
    if (c.N > 3) ids[1] = -5, ids[2] = int32_t(c.V);  // out of range: zero row, no gradient
    Buf did = up(ids);
    for (Pair p : {Pair{DType::BF16, DType::BF16}, Pair{DType::F32, DType::BF16}, Pair{DType::F32, DType::F32}}) {
      const std::string tag = std::string(lkc::dtype_name(p.table)) + " -> " + lkc::dtype_name(p.out) + " " + dims({c.N, c.C}) +
                              " V=" + std::to_string(c.V);
      auto table = randn(r, c.V * c.C, 1.f, p.table == DType::BF16);
      Buf dt = up_as(p.table, table), out(c.N * c.C * lkc::dtype_size(p.out));
      out.poison();
      lkc::embedding_forward(out.p, p.out, did.as<int32_t>(), dt.p, p.table, c.N, c.C, c.V, nullptr);
      std::vector<double> ref(c.N * c.C, 0.0);
      for (int64_t n = 0; n < c.N; n++)
        if (ids[n] >= 0 && ids[n] < c.V)
          for (int k = 0; k < c.C; k++) {
            const float v = table[ids[n] * c.C + k];
            ref[n * c.C + k] = p.out == DType::BF16 ? round_bf16(v) : v;
          }
      check("embedding fwd (bit-exact)", tag, compare(down_as(p.out, out.p, c.N * c.C), ref), 0);
      if (p.table == DType::F32 && p.out == DType::BF16) {  // the bf16 table rounded once gives the same rows
        Buf dtb = up_bf16(table);
        out.poison();
        lkc::embedding_forward(out.p, DType::BF16, did.as<int32_t>(), dtb.p, DType::BF16, c.N, c.C, c.V, nullptr);
        check("embedding fwd bf16 table agrees", tag, compare(down_bf16(out.p, c.N * c.C), ref), 0);
      }
    }
    for (DType t : {DType::BF16, DType::F32}) {
      const std::string tag = std::string(lkc::dtype_name(t)) + " " + dims({c.N, c.C}) + " V=" + std::to_string(c.V);
      auto dout = randn(r, c.N * c.C, 1.f, t == DType::BF16);
      Buf dd = up_as(t, dout), grad(c.V * c.C * 4);
      std::vector<double> gref(c.V * c.C, 0.0);
      for (int64_t n = 0; n < c.N; n++)
        if (ids[n] >= 0 && ids[n] < c.V)
          for (int k = 0; k < c.C; k++) gref[ids[n] * c.C + k] += dout[n * c.C + k];
      grad.zero();
      lkc::embedding_backward(grad.f(), dd.p, t, did.as<int32_t>(), c.N, c.C, c.V, nullptr);
      check("embedding bwd", tag, compare(down<float>(grad.p, c.V * c.C), gref), 1e-6);
    }
  }
  expect_throw("embedding", "bf16 table into f32 rows",
               [] { lkc::embedding_forward(nullptr, DType::F32, nullptr, nullptr, DType::BF16, 4, 8, 4, nullptr); });
  expect_throw("embedding", "i32 gradient", [] { lkc::embedding_backward(nullptr, nullptr, DType::I32, nullptr, 4, 8, 4, nullptr); });
}

void timings() {
  const int64_t N = 16384, V = 128256;
  const int C = 4096;
  Buf table = rand_bf16(V * C, 1), out(N * C * 2), dout = rand_bf16(N * C, 2), grad(V * C * 4);
  std::vector<int32_t> ids(N);
  Rng r(5);
  for (auto& i : ids) i = r.below(int(V));
  Buf did = up(ids);
  double us = time_us([&] { lkc::embedding_forward(out.p, DType::BF16, did.as<int32_t>(), table.p, DType::BF16, N, C, V, nullptr); });
  timing("embedding fwd", dims({N, C}), us, gbps(4.0 * N * C, us));
  us = time_us([&] { lkc::embedding_backward(grad.f(), dout.p, DType::BF16, did.as<int32_t>(), N, C, V, nullptr); });
  timing("embedding bwd", dims({N, C}), us, gbps(10.0 * N * C, us));
  // An f32 table (a trainable embed_tokens copy) into bf16 rows: 32000 rows of the table, zeros.
  const int64_t Vf = 32000;
  Buf table32(size_t(Vf) * C * 4);
  table32.zero();
  for (auto& i : ids) i = r.below(int(Vf));
  Buf did32 = up(ids);
  us = time_us([&] { lkc::embedding_forward(out.p, DType::BF16, did32.as<int32_t>(), table32.p, DType::F32, N, C, Vf, nullptr); });
  timing("embedding fwd f32 table", dims({N, C}), us, gbps(6.0 * N * C, us));
}

}  // namespace

int main() {
  return run("embedding", [] {
    correctness();
    if (!quick()) timings();
  });
}
