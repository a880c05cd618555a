// Quantized GEMV harness (quant_gemv.cu): y = x · Wᵀ (+ bias) for m = 1, 3 and 8 rows of x against a
// float64 CPU reference built from the weights exactly as dequant4.cu / dequant_int8.cu write them (the
// formulas and tables of dequant4_check.cu and dequant_int8_check.cu), NF4 and FP4, plain and
// double-quantized absmax, bf16 and f32, with and without bias, on odd shapes: partial 16-row tiles and
// 128-column steps, blocks that straddle rows (on the tensor-core path too), block sizes that are not
// multiples of 32 or of 8, odd `in` (rows starting mid-byte); each case on the kernel its pointers pick,
// on the CUDA-core kernel forced (bf16), and with x, y and the weights misaligned; int8 the same. Then
// the agreement with dequantize + GEMM, bitwise repeatability, the m > 8 refusal and the empty cases.
// Tolerances: f32 ‖got − ref‖ / ‖ref‖ ≤ 1e-5 (fp32 sums); bf16 ≤ 4e-3 overall and every output not near
// zero (|ref| ≥ 1% of the rms) within 8e-3 (one bf16 rounding is ≤ 2⁻⁹ ≈ 2e-3).
// Timings: the decode shapes of an 8B model, m = 1 and 4, NF4 + double quantization, bf16, against
// dequantize_4bit_dq + GEMM (the QLoRA linear today). Each call reads its own copy of the weights from a
// rotation larger than L2 (as successive layers do), and the calls are captured in a CUDA graph, so that
// neither L2 hits nor the host's launch rate flatter or pace the small kernels.
#include "harness.h"
#include "quant4_codes.h"

using namespace hx;
using lkc::DType;

namespace {

enum class Variant { Default, Generic, Misaligned };  // pointers as allocated; CUDA-core forced; x, y, W shifted

// v [n] uploaded as dtype t after `shift` leading zero elements.
Buf upload(const std::vector<float>& v, DType t, int shift) {
  std::vector<float> h(shift, 0.f);
  h.insert(h.end(), v.begin(), v.end());
  return t == DType::F32 ? up(h) : up_bf16(h);
}
std::vector<double> fetch(const void* p, size_t n, DType t) {
  std::vector<double> d(n);
  if (t == DType::F32) {
    const std::vector<float> f = down<float>(p, n);
    std::copy(f.begin(), f.end(), d.begin());
  } else {
    const std::vector<float> f = down_bf16(p, n);
    std::copy(f.begin(), f.end(), d.begin());
  }
  return d;
}
void* at(const Buf& b, int shift, DType t) { return static_cast<char*>(b.p) + shift * lkc::dtype_size(t); }

// The kernel quant_gemv.cu's dispatch picks (for the row labels).
std::string path(DType t, bool force, bool mma_ok, bool vec_ok) {
  if (t == DType::BF16 && !force && mma_ok) return "tensor-core";
  return vec_ok ? "cuda-core x8" : "cuda-core x1";
}
bool aligned(const void* p, uintptr_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

// One correctness row: ‖got − ref‖ / ‖ref‖ against the dtype's tolerance; for bf16 also every element not
// near zero within 8e-3 (its worst shown in the label; a separate FAIL row when over).
void report(const std::string& op, const std::string& tag, const std::vector<double>& got, const std::vector<double>& ref, DType t) {
  std::string label = tag;
  if (t == DType::BF16) {
    double ss = 0;
    for (double v : ref) ss += v * v;
    const double floor = 1e-2 * std::sqrt(ss / double(std::max<size_t>(1, ref.size())));
    double worst = 0;
    for (size_t i = 0; i < ref.size(); i++)
      if (std::fabs(ref[i]) >= floor) worst = std::max(worst, std::fabs(got[i] - ref[i]) / std::fabs(ref[i]));
    char b[64];
    std::snprintf(b, sizeof b, " (worst element %.1e)", worst);
    label += b;
    if (!(worst <= 8e-3)) expect(op, tag + ": every output not near zero within 8e-3", false);
  }
  check(op, label, compare(got, ref), t == DType::F32 ? 1e-5 : 4e-3);
}

// Appends y_ref [m, out] = w [out, in] · x [m, in]ᵀ (+ bias) in float64.
void reference(std::vector<double>& ref, const std::vector<double>& w, const std::vector<float>& x, const std::vector<float>* bias,
               int64_t m, int64_t out, int64_t in) {
  for (int64_t n = 0; n < m; n++)
    for (int64_t o = 0; o < out; o++) {
      double s = 0;
      for (int64_t c = 0; c < in; c++) s += w[o * in + c] * double(x[n * in + c]);
      ref.push_back(s + (bias ? double((*bias)[o]) : 0.0));
    }
}

struct Shape {
  int64_t out, in;
  int bs, bs2;
};

void check_4bit(Rng& r, DType t, int code, bool dq, const Shape& s, Variant v) {
  const bool f32 = t == DType::F32;
  const int shift = v == Variant::Misaligned ? 1 : 0;
  const int64_t n = s.out * s.in, nb = (n + s.bs - 1) / s.bs;
  // The weights, random as in dequant4_check.cu.
  std::vector<uint8_t> q((n + 1) / 2 + shift);
  for (auto& b : q) b = uint8_t(r.next());
  std::vector<float> absmax(nb);
  for (auto& a : absmax) a = r.uniform(0.01f, 3.f);
  std::vector<uint8_t> q2(nb);
  for (auto& b : q2) b = uint8_t(r.next());
  std::vector<float> code2(256), absmax2((nb + s.bs2 - 1) / s.bs2);
  for (int i = 0; i < 256; i++) code2[i] = -1.f + 2.f * i / 255.f;
  for (auto& a : absmax2) a = r.uniform(0.01f, 1.f);
  const float offset = 0.4375f + r.uniform(0.f, 0.01f);
  // Each weight as dequantize_4bit(_dq) writes it for t: table · absmax in fp32, rounded once for bf16.
  std::vector<double> w(n);
  for (int64_t i = 0; i < n; i++) {
    const int64_t j = i / s.bs;
    float am = absmax[j];
    if (dq) {
      volatile float prod = code2[q2[j]] * absmax2[j / s.bs2];  // volatile: no host FMA either
      am = prod + offset;
    }
    const int nib = (i & 1) ? (q[shift + i / 2] & 15) : (q[shift + i / 2] >> 4);
    const float value = code_value(code, nib) * am;
    w[i] = f32 ? double(value) : double(round_bf16(value));
  }
  Buf dqk = up(q), da = up(absmax), dq2 = up(q2), dc2 = up(code2), da2 = up(absmax2);
  const uint8_t* packed = dqk.as<uint8_t>() + shift;
  std::vector<double> got, ref;
  std::string kernel;
  lkc::quant_gemv_set_force_generic(v == Variant::Generic);
  for (int64_t m : {1, 3, 8})
    for (bool with_bias : {false, true}) {
      const std::vector<float> x = randn(r, m * s.in, 1.f, !f32), bias = randn(r, s.out, 1.f, !f32);
      Buf dx = upload(x, t, shift), db = upload(bias, t, 0), dy((m * s.out + shift) * lkc::dtype_size(t));
      dy.poison();
      void* y = at(dy, shift, t);
      const void* xp = at(dx, shift, t);
      lkc::quant_gemv_4bit(y, t, xp, packed, dq ? nullptr : da.f(), dq ? dq2.as<uint8_t>() : nullptr, dq ? da2.f() : nullptr,
                           dq ? dc2.f() : nullptr, offset, code, with_bias ? db.p : nullptr, m, s.out, s.in, s.bs, s.bs2, nullptr);
      const std::vector<double> g = fetch(y, m * s.out, t);
      got.insert(got.end(), g.begin(), g.end());
      reference(ref, w, x, with_bias ? &bias : nullptr, m, s.out, s.in);
      kernel = path(t, v == Variant::Generic, s.in % 32 == 0 && s.bs % 32 == 0 && aligned(packed, 16) && aligned(xp, 16),
                    s.in % 8 == 0 && s.bs % 8 == 0 && aligned(packed, 4) && aligned(xp, 16));
    }
  lkc::quant_gemv_set_force_generic(false);
  const std::string tag = std::string(lkc::dtype_name(t)) + (code == 0 ? " nf4" : " fp4") + (dq ? "+dq" : "") + " " +
                          dims({s.out, s.in}) + " block=" + std::to_string(s.bs) + (dq ? "/" + std::to_string(s.bs2) : "") +
                          (v == Variant::Misaligned ? " misaligned" : "") + " m=1,3,8 ±bias [" + kernel + "]";
  report("quant_gemv_4bit", tag, got, ref, t);
}

void check_int8(Rng& r, DType t, int64_t out, int64_t in, Variant v) {
  const bool f32 = t == DType::F32;
  const int shift = v == Variant::Misaligned ? 1 : 0;
  std::vector<int8_t> q(out * in + shift);
  for (auto& b : q) b = int8_t(uint8_t(r.next()));
  std::vector<float> scale(out);
  for (auto& sc : scale) sc = r.uniform(0.001f, 4.f);
  const float inv127 = static_cast<float>(7.874015718698502e-3);
  std::vector<double> w(out * in);
  for (int64_t i = 0; i < out * in; i++) {
    volatile float prod = float(q[shift + i]) * scale[i / in];  // volatile: two separate roundings
    const float value = prod * inv127;
    w[i] = f32 ? double(value) : double(round_bf16(value));
  }
  Buf dq = up(q), ds = up(scale);
  const int8_t* qp = dq.as<int8_t>() + shift;
  std::vector<double> got, ref;
  std::string kernel;
  lkc::quant_gemv_set_force_generic(v == Variant::Generic);
  for (int64_t m : {1, 3, 8})
    for (bool with_bias : {false, true}) {
      const std::vector<float> x = randn(r, m * in, 1.f, !f32), bias = randn(r, out, 1.f, !f32);
      Buf dx = upload(x, t, shift), db = upload(bias, t, 0), dy((m * out + shift) * lkc::dtype_size(t));
      dy.poison();
      void* y = at(dy, shift, t);
      const void* xp = at(dx, shift, t);
      lkc::quant_gemv_int8(y, t, xp, qp, ds.f(), with_bias ? db.p : nullptr, m, out, in, nullptr);
      const std::vector<double> g = fetch(y, m * out, t);
      got.insert(got.end(), g.begin(), g.end());
      reference(ref, w, x, with_bias ? &bias : nullptr, m, out, in);
      kernel = path(t, v == Variant::Generic, in % 32 == 0 && aligned(qp, 16) && aligned(xp, 16),
                    in % 8 == 0 && aligned(qp, 8) && aligned(xp, 16));
    }
  lkc::quant_gemv_set_force_generic(false);
  const std::string tag = std::string(lkc::dtype_name(t)) + " " + dims({out, in}) + (v == Variant::Misaligned ? " misaligned" : "") +
                          " m=1,3,8 ±bias [" + kernel + "]";
  report("quant_gemv_int8", tag, got, ref, t);
}

// The tensor-core kernel against what it replaces (dequantize_4bit_dq into bf16, then the cuBLASLt GEMM):
// both bf16, so they may differ by the rounding of nearly equal sums; and two runs bitwise equal.
void check_against_gemm(Rng& r) {
  const int64_t out = 67, in = 4160, m = 3, n = out * in, nb = n / 64;
  std::vector<uint8_t> q(n / 2), q2(nb);
  for (auto& b : q) b = uint8_t(r.next());
  for (auto& b : q2) b = uint8_t(r.next());
  std::vector<float> code2(256), absmax2((nb + 255) / 256);
  for (int i = 0; i < 256; i++) code2[i] = -1.f + 2.f * i / 255.f;
  for (auto& a : absmax2) a = r.uniform(0.01f, 1.f);
  Buf dqk = up(q), dq2 = up(q2), dc2 = up(code2), da2 = up(absmax2), x = up_bf16(randn(r, m * in)), w(n * 2), y1(m * out * 2),
      y2(m * out * 2), yg(m * out * 2);
  auto gemv = [&](void* y) {
    lkc::quant_gemv_4bit(y, DType::BF16, x.p, dqk.as<uint8_t>(), nullptr, dq2.as<uint8_t>(), da2.f(), dc2.f(), 0.44f, 0, nullptr, m, out,
                         in, 64, 256, nullptr);
  };
  gemv(y1.p);
  gemv(y2.p);
  const std::vector<uint16_t> a = down<uint16_t>(y1.p, m * out), b = down<uint16_t>(y2.p, m * out);
  expect("quant_gemv_4bit", "bf16 67x4160 m=3 twice: bitwise equal", a == b);
  if (!lkc::cublaslt_available()) {
    std::printf("| check | quant_gemv_4bit vs dequantize + gemm | skipped: cuBLASLt not found | - | - | - | - |\n");
    return;
  }
  lkc::dequantize_4bit_dq(w.p, DType::BF16, dqk.as<uint8_t>(), dq2.as<uint8_t>(), da2.f(), dc2.f(), 0.44f, 0, n, 64, 256, nullptr);
  lkc::GemmOpts o;
  o.trans_b = true;
  lkc::gemm(yg.p, DType::BF16, x.p, DType::BF16, w.p, DType::BF16, m, out, in, o, nullptr);
  check("quant_gemv_4bit vs dequantize_4bit_dq + gemm", "bf16 nf4+dq 67x4160 m=3",
        compare(down_bf16(y1.p, m * out), fetch(yg.p, m * out, DType::BF16)), 4e-3);
}

// in = 0: y = bias (or zeros), whatever the path; m = 0 and out = 0 write nothing.
void check_empty() {
  for (DType t : {DType::BF16, DType::F32}) {
    const std::string tn = lkc::dtype_name(t);
    const std::vector<float> bias = {1.5f, -2.f, 0.25f};
    Buf db = upload(bias, t, 0), dy(2 * 3 * lkc::dtype_size(t)), dummy(64);
    const std::vector<double> want = {1.5, -2.0, 0.25, 1.5, -2.0, 0.25};
    dy.poison();
    lkc::quant_gemv_4bit(dy.p, t, dummy.p, dummy.as<uint8_t>(), dummy.f(), nullptr, nullptr, nullptr, 0.f, 0, db.p, 2, 3, 0, 64, 256,
                         nullptr);
    check("quant_gemv_4bit", tn + " in=0: y = bias", compare(fetch(dy.p, 6, t), want), 0);
    dy.poison();
    lkc::quant_gemv_int8(dy.p, t, dummy.p, dummy.as<int8_t>(), dummy.f(), nullptr, 2, 3, 0, nullptr);
    check("quant_gemv_int8", tn + " in=0, no bias: y = 0", compare(fetch(dy.p, 6, t), std::vector<double>(6, 0.0)), 0);
    dy.poison();
    lkc::quant_gemv_4bit(dy.p, t, dummy.p, dummy.as<uint8_t>(), dummy.f(), nullptr, nullptr, nullptr, 0.f, 0, nullptr, 0, 3, 64, 64, 256,
                         nullptr);
    lkc::quant_gemv_int8(dy.p, t, dummy.p, dummy.as<int8_t>(), dummy.f(), nullptr, 2, 0, 64, nullptr);
    const std::vector<double> after = fetch(dy.p, 6, t);
    const bool untouched = std::all_of(after.begin(), after.end(), [](double d) { return std::isnan(d); });
    expect("quant_gemv", tn + " m=0 and out=0 write nothing", untouched);
  }
  auto q4 = [](DType t, int code, int64_t m, const float* absmax, const uint8_t* aq, const float* a2) {
    lkc::quant_gemv_4bit(nullptr, t, nullptr, nullptr, absmax, aq, a2, nullptr, 0.f, code, nullptr, m, 16, 64, 64, 256, nullptr);
  };
  const float* some = reinterpret_cast<const float*>(16);
  expect_throw("quant_gemv_4bit", "m = 9", [&] { q4(DType::BF16, 0, 9, some, nullptr, nullptr); });
  expect_throw("quant_gemv_int8", "m = 9",
               [] { lkc::quant_gemv_int8(nullptr, DType::BF16, nullptr, nullptr, nullptr, nullptr, 9, 16, 64, nullptr); });
  expect_throw("quant_gemv_4bit", "code 2", [&] { q4(DType::BF16, 2, 1, some, nullptr, nullptr); });
  expect_throw("quant_gemv_4bit", "i32 activations", [&] { q4(DType::I32, 0, 1, some, nullptr, nullptr); });
  expect_throw("quant_gemv_4bit", "no absmax", [&] { q4(DType::BF16, 0, 1, nullptr, nullptr, nullptr); });
  const uint8_t* some_q = reinterpret_cast<const uint8_t*>(16);
  expect_throw("quant_gemv_4bit", "absmax_q without code2", [&] { q4(DType::BF16, 0, 1, nullptr, some_q, some); });
}

void correctness() {
  Rng r(97);
  const Shape shapes[] = {
      {67, 320, 64, 256},   // tensor cores: a partial tile (67 = 4·16 + 3) and a partial last step (320 = 2.5 · 128)
      {33, 4160, 64, 3},    // tensor cores: 33 steps over 8 or 16 warps, absmax2 blocks of 3
      {40, 96, 64, 256},    // tensor cores: blocks straddle rows (96 % 64 = 32)
      {19, 320, 128, 5},    // tensor cores: blocks straddle rows (320 % 128 = 64)
      {130, 100, 64, 256},  // CUDA cores, one value per lane: blocks straddle rows (100 % 64)
      {9, 40, 16, 256},     // CUDA cores, 8 values per lane: blocks straddle rows (40 % 16)
      {5, 24, 24, 2},       // CUDA cores, 8 values per lane: a block size that is not a multiple of 32
      {3, 7, 64, 256},      // CUDA cores, one value per lane: odd in, rows start mid-byte
  };
  for (DType t : {DType::BF16, DType::F32})
    for (int code : {0, 1})
      for (bool dq : {false, true})
        for (const Shape& s : shapes)
          for (Variant v : {Variant::Default, Variant::Generic, Variant::Misaligned}) {
            if (v == Variant::Generic && t == DType::F32) continue;  // f32 is always on CUDA cores
            check_4bit(r, t, code, dq, s, v);
          }
  const std::pair<int64_t, int64_t> int8_shapes[] = {{67, 320}, {33, 4160}, {130, 100}, {5, 24}, {3, 7}};
  for (DType t : {DType::BF16, DType::F32})
    for (auto [out, in] : int8_shapes)
      for (Variant v : {Variant::Default, Variant::Generic, Variant::Misaligned}) {
        if (v == Variant::Generic && t == DType::F32) continue;
        check_int8(r, t, out, in, v);
      }
  check_against_gemm(r);
  check_empty();
}

// Median µs per call of calls = body(0..calls-1) on one stream, captured once into a CUDA graph (after an
// uncaptured warm-up that also builds the cuBLASLt plans), timed with CUDA events around graph launches.
double graph_us(int calls, const std::function<void(int, cudaStream_t)>& body, int reps = 15) {
  cudaStream_t s;
  HX_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  for (int k = 0; k < calls; k++) body(k, s);
  HX_CUDA(cudaStreamSynchronize(s));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  HX_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int k = 0; k < calls; k++) body(k, s);
  HX_CUDA(cudaStreamEndCapture(s, &graph));
  HX_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t a, b;
  HX_CUDA(cudaEventCreate(&a));
  HX_CUDA(cudaEventCreate(&b));
  HX_CUDA(cudaGraphLaunch(exec, s));  // warm-up
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; i++) {
    HX_CUDA(cudaEventRecord(a, s));
    HX_CUDA(cudaGraphLaunch(exec, s));
    HX_CUDA(cudaEventRecord(b, s));
    HX_CUDA(cudaEventSynchronize(b));
    HX_CUDA(cudaEventElapsedTime(&ms[i], a, b));
  }
  HX_CUDA(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
  std::sort(ms.begin(), ms.end());
  return double(ms[reps / 2]) * 1000.0 / calls;
}

// Enough copies of `bytes` of weights that a rotation through them (≥ 256 MiB) never hits L2.
int copies_for(double bytes) { return int(std::min(256.0, std::max(2.0, std::ceil(256.0 * 1048576.0 / bytes)))); }

// Device-side random bytes (the harness's hash fill, as bytes).
__global__ void rand_bytes_kernel(uint8_t* p, int64_t n, uint64_t seed) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t x = (uint64_t(i) + seed) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 31, x *= 0xBF58476D1CE4E5B9ull, x ^= x >> 29;
    p[i] = uint8_t(x >> 32);
  }
}
void rand_bytes(void* p, int64_t n, uint64_t seed) {
  rand_bytes_kernel<<<1024, 256>>>(static_cast<uint8_t*>(p), n, seed);
  HX_CUDA(cudaGetLastError());
}

std::string fmt_us(double us) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", us);
  return b;
}

void timings() {
  const int bs = 64, bs2 = 256;
  std::vector<float> code2(256);
  for (int i = 0; i < 256; i++) code2[i] = -1.f + 2.f * i / 255.f;
  Buf dc2 = up(code2);
  lkc::GemmOpts o;
  o.trans_b = true;
  const std::pair<int64_t, int64_t> shapes[] = {{4096, 4096}, {1024, 4096}, {14336, 4096}, {4096, 14336}};
  for (const auto& shape : shapes) {
    const int64_t out = shape.first, in = shape.second, n = out * in, bytes = n / 2, nb = n / bs;
    const int copies = copies_for(double(bytes + nb));
    Buf packed(size_t(copies) * bytes), aq(size_t(copies) * nb), a2(((nb + bs2 - 1) / bs2) * 4), w(n * 2), x = rand_bf16(4 * in, 3),
        y(4 * out * 2);
    rand_bytes(packed.p, int64_t(copies) * bytes, 11);
    rand_bytes(aq.p, int64_t(copies) * nb, 12);
    std::vector<float> h2((nb + bs2 - 1) / bs2);
    Rng r(5);
    for (auto& v : h2) v = r.uniform(0.001f, 0.01f);
    HX_CUDA(cudaMemcpy(a2.p, h2.data(), h2.size() * 4, cudaMemcpyHostToDevice));
    HX_CUDA(cudaDeviceSynchronize());  // the fills ran on the legacy stream; the timed graphs run on another
    auto pk = [&](int k) { return packed.as<uint8_t>() + int64_t(k) * bytes; };
    auto qk = [&](int k) { return aq.as<uint8_t>() + int64_t(k) * nb; };
    for (int64_t m : {1, 4}) {
      const double us = graph_us(copies, [&](int k, cudaStream_t s) {
        lkc::quant_gemv_4bit(y.p, DType::BF16, x.p, pk(k), nullptr, qk(k), a2.f(), dc2.f(), 0.44f, 0, nullptr, m, out, in, bs, bs2, s);
      });
      std::string rate = gbps(double(bytes), us) + " of packed weights";
      if (lkc::cublaslt_available()) {
        const double base = graph_us(copies, [&](int k, cudaStream_t s) {
          lkc::dequantize_4bit_dq(w.p, DType::BF16, pk(k), qk(k), a2.f(), dc2.f(), 0.44f, 0, n, bs, bs2, s);
          lkc::gemm(y.p, DType::BF16, x.p, DType::BF16, w.p, DType::BF16, m, out, in, o, s);
        });
        char b[96];
        std::snprintf(b, sizeof b, "; dequantize_4bit_dq + gemm %s µs (%.1f×)", fmt_us(base).c_str(), base / us);
        rate += b;
      }
      timing("quant_gemv_4bit nf4+dq bf16 m=" + std::to_string(m), dims({out, in}), us, rate);
    }
    if (out == 14336) {  // the CUDA-core kernel on the same weights, for the tensor-core path's gain
      lkc::quant_gemv_set_force_generic(true);
      const double us = graph_us(copies, [&](int k, cudaStream_t s) {
        lkc::quant_gemv_4bit(y.p, DType::BF16, x.p, pk(k), nullptr, qk(k), a2.f(), dc2.f(), 0.44f, 0, nullptr, 1, out, in, bs, bs2, s);
      });
      lkc::quant_gemv_set_force_generic(false);
      timing("quant_gemv_4bit nf4+dq bf16 m=1, cuda-core forced", dims({out, in}), us, gbps(double(bytes), us) + " of packed weights");
    }
  }
  // int8 at the 8B MLP shape: 1 byte per weight.
  {
    const int64_t out = 14336, in = 4096, n = out * in;
    const int copies = copies_for(double(n));
    Buf q(size_t(copies) * n), sc(out * 4), w(n * 2), x = rand_bf16(in, 4), y(out * 2);
    rand_bytes(q.p, int64_t(copies) * n, 13);
    std::vector<float> hs(out, 0.01f);
    HX_CUDA(cudaMemcpy(sc.p, hs.data(), out * 4, cudaMemcpyHostToDevice));
    HX_CUDA(cudaDeviceSynchronize());
    auto qk = [&](int k) { return q.as<int8_t>() + int64_t(k) * n; };
    const double us = graph_us(copies, [&](int k, cudaStream_t s) {
      lkc::quant_gemv_int8(y.p, DType::BF16, x.p, qk(k), sc.f(), nullptr, 1, out, in, s);
    });
    std::string rate = gbps(double(n), us) + " of int8 weights";
    if (lkc::cublaslt_available()) {
      const double base = graph_us(copies, [&](int k, cudaStream_t s) {
        lkc::dequantize_int8(w.p, DType::BF16, qk(k), sc.f(), out, in, s);
        lkc::gemm(y.p, DType::BF16, x.p, DType::BF16, w.p, DType::BF16, 1, out, in, o, s);
      });
      char b[96];
      std::snprintf(b, sizeof b, "; dequantize_int8 + gemm %s µs (%.1f×)", fmt_us(base).c_str(), base / us);
      rate += b;
    }
    timing("quant_gemv_int8 bf16 m=1", dims({out, in}), us, rate);
  }
}

}  // namespace

int main() {
  return run("quant_gemv", [] {
    correctness();
    if (!quick()) timings();
  });
}
