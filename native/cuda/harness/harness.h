// Check-and-time harness helpers shared by the per-op harness mains (native/cuda/harness/*_check.cu):
// seeded random inputs rounded to bf16 where the kernel reads bf16 (so the float64 CPU reference sees
// exactly the kernel's inputs), outputs poisoned with NaN before each run (an unwritten element fails),
// ‖got − ref‖ / ‖ref‖ and max |got − ref| against a tolerance, and CUDA-event timings (median of
// repeats after warm-up). Each harness prints markdown table rows and exits non-zero on any failure.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "../common.cuh"
#include "../lorakit_cuda.h"

namespace hx {

using lkc::bf16;

#define HX_CUDA(call) LKC_CUDA(call)

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  float uniform(float lo, float hi) { return float(lo + (hi - lo) * uniform()); }
  float normal() {
    double u1 = std::max(uniform(), 1e-12), u2 = uniform();
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  int below(int n) { return int(next() % uint64_t(n)); }
};

// bf16 round to nearest even (NaN kept), on the host.
inline uint16_t f2bf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
inline float bf2f(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float round_bf16(float f) { return bf2f(f2bf(f)); }

// n values ~ N(0, std²) (or uniform in [lo, hi)), already rounded to bf16 when bf16_exact.
inline std::vector<float> randn(Rng& r, size_t n, float std = 1.f, bool bf16_exact = true) {
  std::vector<float> v(n);
  for (auto& x : v) x = bf16_exact ? round_bf16(r.normal() * std) : r.normal() * std;
  return v;
}

// Device buffers for harnesses (plain cudaMalloc: the harness must not depend on the allocator it tests).
struct Buf {
  void* p = nullptr;
  size_t bytes = 0;
  Buf() = default;
  explicit Buf(size_t b) : bytes(b) { HX_CUDA(cudaMalloc(&p, std::max<size_t>(b, 16))); }
  ~Buf() {
    if (p) cudaFree(p);
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  Buf(Buf&& o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; }
  Buf& operator=(Buf&& o) noexcept {
    std::swap(p, o.p);
    std::swap(bytes, o.bytes);
    return *this;
  }
  template <typename T>
  T* as() const { return static_cast<T*>(p); }
  bf16* bf() const { return static_cast<bf16*>(p); }
  float* f() const { return static_cast<float*>(p); }
  void poison() const { HX_CUDA(cudaMemset(p, 0xFF, bytes)); }  // NaN in f32 and bf16
  void zero() const { HX_CUDA(cudaMemset(p, 0, bytes)); }
};

inline Buf up_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); i++) h[i] = f2bf(v[i]);
  Buf b(h.size() * 2);
  HX_CUDA(cudaMemcpy(b.p, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
  return b;
}
template <typename T>
inline Buf up(const std::vector<T>& v) {
  Buf b(v.size() * sizeof(T));
  HX_CUDA(cudaMemcpy(b.p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return b;
}
inline std::vector<float> down_bf16(const void* d, size_t n) {
  std::vector<uint16_t> h(n);
  HX_CUDA(cudaDeviceSynchronize());
  HX_CUDA(cudaMemcpy(h.data(), d, n * 2, cudaMemcpyDeviceToHost));
  std::vector<float> f(n);
  for (size_t i = 0; i < n; i++) f[i] = bf2f(h[i]);
  return f;
}
template <typename T>
inline std::vector<T> down(const void* d, size_t n) {
  std::vector<T> h(n);
  HX_CUDA(cudaDeviceSynchronize());
  HX_CUDA(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

// Device-side random fill for timing inputs (no host copy): uniform in [-a, a), a hash of the index.
__global__ void rand_fill_kernel(bf16* p, int64_t n, uint64_t seed, float a) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t x = (uint64_t(i) + seed) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 31, x *= 0xBF58476D1CE4E5B9ull, x ^= x >> 29;
    p[i] = __float2bfloat16_rn(a * (float(x >> 40) * (2.0f / 16777216.0f) - 1.0f));
  }
}
inline Buf rand_bf16(int64_t n, uint64_t seed, float a = 1.f) {
  Buf b(size_t(n) * 2);
  rand_fill_kernel<<<1024, 256>>>(b.bf(), n, seed, a);
  HX_CUDA(cudaGetLastError());
  return b;
}

struct Err {
  double max_abs = 0, rel = 0;
  bool nan = false;
};
template <typename G>
inline Err compare(const std::vector<G>& got, const std::vector<double>& ref) {
  Err e;
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    const double g = double(got[i]);
    if (std::isnan(g) && !std::isnan(ref[i])) e.nan = true;
    if (std::isinf(ref[i]) && g == ref[i]) continue;  // −inf lse of padded rows
    const double d = std::fabs(g - ref[i]);
    if (!std::isfinite(d)) {
      e.nan = true;
      continue;
    }
    e.max_abs = std::max(e.max_abs, d);
    num += d * d;
    den += ref[i] * ref[i];
  }
  e.rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return e;
}

struct Row {
  std::string op, shape;
  Err err;
  double tol;
  bool pass;
};

inline std::vector<Row>& rows() {
  static std::vector<Row> r;
  return r;
}
inline int& failures() {
  static int f = 0;
  return f;
}

// Records and prints one correctness row: "| check | op | case | max abs | rel | tol | PASS |".
inline bool check(const std::string& op, const std::string& shape, const Err& e, double tol) {
  const bool pass = !e.nan && e.rel <= tol;
  if (!pass) failures()++;
  std::printf("| check | %s | %s | %.3g | %.3g | %.0e | %s |\n", op.c_str(), shape.c_str(), e.max_abs, e.rel, tol,
              pass ? "PASS" : (e.nan ? "FAIL (NaN/unwritten)" : "FAIL"));
  std::fflush(stdout);
  return pass;
}
inline bool expect(const std::string& op, const std::string& what, bool ok) {
  if (!ok) failures()++;
  std::printf("| check | %s | %s | - | - | - | %s |\n", op.c_str(), what.c_str(), ok ? "PASS" : "FAIL");
  std::fflush(stdout);
  return ok;
}
// Expects fn to throw a std::exception whose message starts with "lorakit: ".
inline bool expect_throw(const std::string& op, const std::string& what, const std::function<void()>& fn) {
  bool ok = false;
  std::string msg = "no exception";
  try {
    fn();
  } catch (const std::exception& ex) {
    msg = ex.what();
    ok = msg.rfind("lorakit: ", 0) == 0;
  }
  if (!ok) failures()++;
  std::printf("| check | %s | %s throws (%s) | - | - | - | %s |\n", op.c_str(), what.c_str(), msg.c_str(), ok ? "PASS" : "FAIL");
  std::fflush(stdout);
  return ok;
}

// Median time in microseconds of fn() over `reps` runs after `warmup`, timed with CUDA events.
inline double time_us(const std::function<void()>& fn, int warmup = 3, int reps = 20) {
  for (int i = 0; i < warmup; i++) fn();
  HX_CUDA(cudaDeviceSynchronize());
  cudaEvent_t a, b;
  HX_CUDA(cudaEventCreate(&a));
  HX_CUDA(cudaEventCreate(&b));
  std::vector<float> ms(reps);
  for (int i = 0; i < reps; i++) {
    HX_CUDA(cudaEventRecord(a));
    fn();
    HX_CUDA(cudaEventRecord(b));
    HX_CUDA(cudaEventSynchronize(b));
    HX_CUDA(cudaEventElapsedTime(&ms[i], a, b));
  }
  HX_CUDA(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return double(ms[reps / 2]) * 1000.0;
}

// "| time | op | case | µs | rate |"
inline void timing(const std::string& op, const std::string& shape, double us, const std::string& rate) {
  std::printf("| time | %s | %s | %.1f | %s |\n", op.c_str(), shape.c_str(), us, rate.c_str());
  std::fflush(stdout);
}
inline std::string gbps(double bytes, double us) {
  char b[64];
  std::snprintf(b, sizeof b, "%.0f GB/s", bytes / us / 1e3);
  return b;
}
inline std::string tflops(double flops, double us) {
  char b[64];
  std::snprintf(b, sizeof b, "%.1f TFLOP/s", flops / us / 1e6);
  return b;
}

inline std::string dims(std::initializer_list<int64_t> d) {
  std::string s;
  for (int64_t x : d) s += (s.empty() ? "" : "x") + std::to_string(x);
  return s;
}

inline int finish(const char* name) {
  HX_CUDA(cudaDeviceSynchronize());
  std::printf("RESULT %s: %s (%d failed)\n", name, failures() ? "FAIL" : "PASS", failures());
  return failures() ? 1 : 0;
}

// HX_QUICK=1: correctness checks only (no timings at full size), e.g. under compute-sanitizer.
inline bool quick() {
  const char* q = std::getenv("HX_QUICK");
  return q && *q && *q != '0';
}

// Wraps a harness main so CUDA/argument exceptions are reported as a failure, not a crash.
inline int run(const char* name, const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    std::printf("| check | %s | exception: %s | - | - | - | FAIL |\n", name, e.what());
    failures()++;
  }
  return finish(name);
}

}  // namespace hx
