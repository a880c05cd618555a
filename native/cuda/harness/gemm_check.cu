// GEMM (cuBLASLt) check-and-time harness: every transpose combination, batches, leading dimensions,
// bias, bf16→bf16 / bf16→f32 / f32→f32, odd sizes, against a float64 CPU reference; then the measured
// ceilings (device copy bandwidth, 8192³ bf16 GEMM) and a TFLOP/s table for the linears of
// Llama-3.2-1B, Qwen2.5-0.5B and Llama-3.1-8B at 2048 tokens (forward, input gradient, weight gradient,
// and the two LoRA r = 16 products).
#include "harness.h"

using namespace hx;
using lkc::DType;

namespace {

// C[b] = alpha op(A[b]) op(B[b]) + beta C0[b] + bias, in double.
std::vector<double> ref_gemm(const std::vector<float>& A, const std::vector<float>& B, const std::vector<float>& C0,
                             const std::vector<float>& bias, int64_t M, int64_t N, int64_t K, const lkc::GemmOpts& o, int64_t lda,
                             int64_t ldb, int64_t ldc) {
  std::vector<double> C(size_t(o.batch - 1) * o.stride_c + size_t(M) * ldc, 0.0);
  for (int bt = 0; bt < o.batch; bt++)
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        double acc = 0;
        for (int64_t k = 0; k < K; k++) {
          const double a = A[bt * o.stride_a + (o.trans_a ? k * lda + m : m * lda + k)];
          const double b = B[bt * o.stride_b + (o.trans_b ? n * ldb + k : k * ldb + n)];
          acc += a * b;
        }
        const size_t ci = bt * o.stride_c + m * ldc + n;
        C[ci] = o.alpha * acc + (o.beta != 0 ? o.beta * double(C0[ci]) : 0.0) + (bias.empty() ? 0.0 : double(bias[n]));
      }
  return C;
}

void correctness(Rng& rng) {
  struct Case {
    int64_t M, N, K;
    bool ta, tb;
    int batch;
    DType io, out;
    float alpha, beta;
    int pad;  // extra leading-dimension elements
    bool bias;
  };
  std::vector<Case> cases = {
      {1, 1, 1, false, false, 1, DType::BF16, DType::BF16, 1.f, 0.f, 0, false},
      {7, 33, 127, false, true, 1, DType::BF16, DType::BF16, 1.f, 0.f, 0, false},
      {33, 7, 127, false, false, 1, DType::BF16, DType::F32, 1.f, 0.f, 0, false},
      {127, 33, 7, true, false, 1, DType::BF16, DType::F32, 0.5f, 1.f, 0, false},
      {33, 127, 65, true, true, 1, DType::BF16, DType::BF16, 1.f, 1.f, 0, false},
      {129, 65, 33, false, true, 3, DType::BF16, DType::F32, 1.f, 0.f, 0, false},
      {64, 72, 40, false, true, 1, DType::BF16, DType::BF16, 1.f, 0.f, 8, false},
      {37, 48, 64, false, true, 1, DType::BF16, DType::BF16, 1.f, 0.f, 0, true},
      {33, 17, 127, false, true, 1, DType::F32, DType::F32, 1.f, 0.f, 0, false},
      {31, 65, 9, true, false, 2, DType::F32, DType::F32, -1.f, 1.f, 0, false},
  };
  for (const Case& c : cases) {
    lkc::GemmOpts o;
    o.trans_a = c.ta, o.trans_b = c.tb, o.alpha = c.alpha, o.beta = c.beta, o.batch = c.batch;
    const int64_t lda = (c.ta ? c.M : c.K) + c.pad, ldb = (c.tb ? c.K : c.N) + c.pad, ldc = c.N + c.pad;
    if (c.pad) o.lda = lda, o.ldb = ldb, o.ldc = ldc;
    const int64_t rowsA = c.ta ? c.K : c.M, rowsB = c.tb ? c.N : c.K;
    o.stride_a = c.batch > 1 ? rowsA * lda : 0;
    o.stride_b = c.batch > 1 ? rowsB * ldb : 0;
    o.stride_c = c.batch > 1 ? c.M * ldc : 0;
    const bool bf = c.io == DType::BF16;
    std::vector<float> A = randn(rng, size_t(c.batch) * rowsA * lda, 1.f, bf), B = randn(rng, size_t(c.batch) * rowsB * ldb, 1.f, bf);
    const bool cbf = c.out == DType::BF16;
    std::vector<float> C0 = randn(rng, size_t(c.batch) * c.M * ldc, 1.f, cbf);
    std::vector<float> bias;
    if (c.bias) bias = randn(rng, c.N, 1.f, cbf);
    Buf dA = bf ? up_bf16(A) : up(A), dB = bf ? up_bf16(B) : up(B), dC = cbf ? up_bf16(C0) : up(C0);
    Buf dbias = c.bias ? (cbf ? up_bf16(bias) : up(bias)) : Buf();
    if (c.beta == 0.f) dC.poison();
    o.bias = c.bias ? dbias.p : nullptr;
    lkc::gemm(dC.p, c.out, dA.p, c.io, dB.p, c.io, c.M, c.N, c.K, o, nullptr);
    std::vector<double> ref = ref_gemm(A, B, C0, bias, c.M, c.N, c.K, o, lda, ldb, ldc);
    std::vector<float> got = cbf ? down_bf16(dC.p, ref.size()) : down<float>(dC.p, ref.size());
    // Compare only the C entries the GEMM owns (padding columns keep C0, which the reference zeroes).
    std::vector<float> g2;
    std::vector<double> r2;
    for (int bt = 0; bt < c.batch; bt++)
      for (int64_t m = 0; m < c.M; m++)
        for (int64_t n = 0; n < c.N; n++) {
          g2.push_back(got[bt * o.stride_c + m * ldc + n]);
          r2.push_back(ref[bt * o.stride_c + m * ldc + n]);
        }
    const double tol = cbf ? 8e-3 : (bf ? 1e-5 : 1e-5);
    std::string name = std::string(dtype_name(c.io)) + "->" + dtype_name(c.out) + (c.ta ? " Aᵀ" : " A") + (c.tb ? "Bᵀ" : "B") +
                       (c.batch > 1 ? " batch" + std::to_string(c.batch) : "") + (c.pad ? " ld+pad" : "") + (c.bias ? " bias" : "") +
                       (c.beta != 0 ? " beta" : "");
    check("gemm " + name, dims({c.M, c.N, c.K}), compare(g2, r2), tol);
  }
  expect_throw("gemm", "mixed operand dtypes", [] {
    lkc::GemmOpts o;
    lkc::gemm(nullptr, DType::F32, nullptr, DType::F32, nullptr, DType::BF16, 4, 4, 4, o, nullptr);
  });
  expect_throw("gemm", "zero size", [] {
    lkc::GemmOpts o;
    lkc::gemm(nullptr, DType::F32, nullptr, DType::BF16, nullptr, DType::BF16, 0, 4, 4, o, nullptr);
  });
}

// Several operand sets in rotation so small shapes are not timed out of L2 alone.
double time_gemm(int64_t M, int64_t N, int64_t K, bool ta, bool tb, DType out, int reps = 20) {
  const int sets = (M * K + K * N) * 2 < (int64_t(64) << 20) ? 4 : 1;
  std::vector<Buf> A, B, C;
  for (int s = 0; s < sets; s++) {
    A.push_back(rand_bf16(M * K, 100 + s));
    B.push_back(rand_bf16(K * N, 200 + s));
    C.emplace_back(size_t(M) * N * lkc::dtype_size(out));
  }
  lkc::GemmOpts o;
  o.trans_a = ta, o.trans_b = tb;
  int it = 0;
  return time_us(
      [&] {
        const int s = it++ % sets;
        lkc::gemm(C[s].p, out, A[s].p, DType::BF16, B[s].p, DType::BF16, M, N, K, o, nullptr);
      },
      3, reps);
}

void ceilings() {
  const size_t bytes = size_t(2) << 30;
  Buf a(bytes), b(bytes);
  a.zero();
  const double us = time_us([&] { HX_CUDA(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice)); }, 2, 10);
  timing("ceiling: device copy", "2 GiB", us, gbps(2.0 * bytes, us) + " (read + write)");
  const int64_t S = 8192;
  const double g = time_gemm(S, S, S, false, true, DType::BF16, 10);
  timing("ceiling: bf16 GEMM", dims({S, S, S}), g, tflops(2.0 * S * S * S, g));
}

void model_table() {
  struct Model {
    const char* name;
    int64_t hidden, inter, q, kv, vocab;
  };
  const Model models[] = {{"Llama-3.2-1B", 2048, 8192, 2048, 512, 128256},
                          {"Qwen2.5-0.5B", 896, 4864, 896, 128, 151936},
                          {"Llama-3.1-8B", 4096, 14336, 4096, 1024, 128256}};
  const int64_t T = 2048, r = 16;
  std::printf("\n| model | linear | out×in | fwd X·Wᵀ TFLOP/s | dX = dY·W TFLOP/s | dW = dYᵀ·X TFLOP/s | LoRA X·Aᵀ µs | LoRA (XAᵀ)·Bᵀ µs |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const Model& m : models) {
    struct Lin {
      const char* name;
      int64_t in, out;
    };
    const Lin lins[] = {{"q_proj", m.hidden, m.q},        {"k_proj/v_proj", m.hidden, m.kv}, {"o_proj", m.q, m.hidden},
                        {"gate/up_proj", m.hidden, m.inter}, {"down_proj", m.inter, m.hidden}, {"lm_head", m.hidden, m.vocab}};
    for (const Lin& l : lins) {
      const double flops = 2.0 * T * l.in * l.out;
      const double f = time_gemm(T, l.out, l.in, false, true, DType::BF16);   // Y [T, out] = X [T, in] · W [out, in]ᵀ
      const double d = time_gemm(T, l.in, l.out, false, false, DType::BF16);  // dX [T, in] = dY [T, out] · W [out, in]
      const double w = time_gemm(l.out, l.in, T, true, false, DType::F32);    // dW [out, in] = dY [T, out]ᵀ · X [T, in]
      const double la = time_gemm(T, r, l.in, false, true, DType::BF16);      // X · Aᵀ [T, r]
      const double lb = time_gemm(T, l.out, r, false, true, DType::BF16);     // (X Aᵀ) · Bᵀ [T, out]
      std::printf("| %s | %s | %lldx%lld | %.0f | %.0f | %.0f | %.1f | %.1f |\n", m.name, l.name, (long long)l.out, (long long)l.in,
                  flops / f / 1e6, flops / d / 1e6, flops / w / 1e6, la, lb);
      std::fflush(stdout);
    }
  }
  std::printf("\n");
}

}  // namespace

int main() {
  return run("gemm", [] {
    if (!lkc::cublaslt_available()) throw std::runtime_error("lorakit: cuBLASLt could not be loaded");
    Rng rng(1);
    correctness(rng);
    if (!quick()) ceilings();
    if (!quick()) model_table();
  });
}
