// Caching allocator and Tensor harness: size classes, same-stream reuse, stream-ordered cross-stream
// reuse (a block used on another stream is not handed out until that stream's work is done), stats,
// out-of-memory message, and the cost of an alloc/free pair against cudaMalloc/cudaFree.
#include <chrono>

#include "harness.h"

using namespace hx;

namespace {

// Spins ~`cycles` clock cycles, then writes `value` to p[0..n): keeps a stream busy.
__global__ void spin_write(int* p, int n, long long cycles, int value) {
  const long long t0 = clock64();
  while (clock64() - t0 < cycles) {
  }
  for (int i = threadIdx.x; i < n; i += blockDim.x) p[i] = value;
}

void classes() {
  bool ok = true;
  size_t prev = 0;
  for (size_t b = 1; b < (size_t(80) << 20); b = b * 5 / 4 + 1) {
    const size_t c = lkc::size_class(b);
    ok &= c >= b && c >= 512 && c % 128 == 0 && c >= prev;
    if (b > 512 && b <= (size_t(32) << 20)) ok &= double(c) <= 1.25 * double(b) + 1;
    prev = c;
  }
  expect("allocator", "size classes: ≥ request, ≥ 512 bytes, monotone, ≤ 25% waste up to 32 MiB", ok);
}

void reuse() {
  cudaStream_t s1, s2;
  HX_CUDA(cudaStreamCreate(&s1));
  HX_CUDA(cudaStreamCreate(&s2));
  const auto st0 = lkc::allocator_stats();
  void* a = lkc::device_alloc(1000000, s1);
  lkc::device_free(a);
  void* b = lkc::device_alloc(999000, s1);  // same class
  const auto st1 = lkc::allocator_stats();
  expect("allocator", "a freed block is reused on its stream", a == b && st1.cache_hits == st0.cache_hits + 1);
  lkc::device_free(b);
  void* c = lkc::device_alloc(1000000, s2);
  expect("allocator", "a block freed on one stream is not handed to another", c != a);
  lkc::device_free(c);

  // Cross-stream: x allocated on s1, used by a long kernel on s2, freed at once.
  int* x = static_cast<int*>(lkc::device_alloc(4096, s1));
  lkc::record_stream(x, s2);
  spin_write<<<1, 256, 0, s2>>>(x, 1024, 200000000LL, 7);  // ~0.1 s
  HX_CUDA(cudaGetLastError());
  lkc::device_free(x);
  int* y = static_cast<int*>(lkc::device_alloc(4096, s1));
  expect("allocator", "a block still in use on another stream is not reused", y != x);
  HX_CUDA(cudaStreamSynchronize(s2));
  lkc::device_free(y);
  int* z = static_cast<int*>(lkc::device_alloc(4096, s1));
  int* w = static_cast<int*>(lkc::device_alloc(4096, s1));
  expect("allocator", "it is reused once that stream's work has finished", z == x || w == x);
  lkc::device_free(z);
  lkc::device_free(w);

  // Stream order on one stream: write 1 (slow), free, reallocate, write 2: the result must be 2.
  int* p = static_cast<int*>(lkc::device_alloc(4096, s1));
  spin_write<<<1, 256, 0, s1>>>(p, 1024, 50000000LL, 1);
  lkc::device_free(p);
  int* q = static_cast<int*>(lkc::device_alloc(4096, s1));
  spin_write<<<1, 256, 0, s1>>>(q, 1024, 0, 2);
  std::vector<int> h(1024);
  HX_CUDA(cudaMemcpyAsync(h.data(), q, 4096, cudaMemcpyDeviceToHost, s1));
  HX_CUDA(cudaStreamSynchronize(s1));
  expect("allocator", "same-stream reuse is ordered after the earlier use", q == p && std::all_of(h.begin(), h.end(), [](int v) { return v == 2; }));
  lkc::device_free(q);
  HX_CUDA(cudaStreamDestroy(s1));
  HX_CUDA(cudaStreamDestroy(s2));
}

void tensors() {
  const auto before = lkc::allocator_stats();
  {
    lkc::Tensor t({33, 127}, lkc::DType::BF16);
    lkc::Tensor u = std::move(t);
    expect("tensor", "shape, numel, bytes, move", u.numel() == 33 * 127 && u.nbytes() == 33 * 127 * 2 && t.data() == nullptr &&
                                                        u.data() != nullptr);
    lkc::fill(u.data(), lkc::DType::BF16, 1.5f, u.numel(), nullptr);
    auto h = down_bf16(u.data(), u.numel());
    expect("tensor", "usable by kernels", std::all_of(h.begin(), h.end(), [](float v) { return v == 1.5f; }));
    expect("tensor", "counted as allocated", lkc::allocator_stats().allocated > before.allocated);
  }
  expect("tensor", "freed when it goes out of scope", lkc::allocator_stats().allocated == before.allocated);
  expect_throw("allocator", "freeing a foreign pointer", [] {
    int local = 0;
    lkc::device_free(&local);
  });
  expect_throw("allocator", "an impossible allocation", [] { lkc::device_alloc(size_t(1) << 50, nullptr); });
  lkc::empty_cache();
  const auto after = lkc::allocator_stats();
  expect("allocator", "empty_cache returns cached blocks", after.reserved == after.allocated);
}

void timings() {
  Rng r(3);
  std::vector<size_t> sizes(256);
  for (auto& s : sizes) s = size_t(1) << (10 + r.below(16));  // 1 KiB … 32 MiB
  for (size_t s : sizes) lkc::device_free(lkc::device_alloc(s, nullptr));  // warm the cache
  const int n = 20000;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; i++) lkc::device_free(lkc::device_alloc(sizes[i % sizes.size()], nullptr));
  auto t1 = std::chrono::steady_clock::now();
  const double cached = std::chrono::duration<double, std::micro>(t1 - t0).count() / n;
  const int m = 500;
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < m; i++) {
    void* p;
    HX_CUDA(cudaMalloc(&p, sizes[i % sizes.size()]));
    HX_CUDA(cudaFree(p));
  }
  t1 = std::chrono::steady_clock::now();
  const double raw = std::chrono::duration<double, std::micro>(t1 - t0).count() / m;
  timing("allocator alloc+free (cached)", "1 KiB-32 MiB", cached, "host µs per pair");
  timing("cudaMalloc+cudaFree", "1 KiB-32 MiB", raw, "host µs per pair");
}

}  // namespace

int main() {
  return run("memory", [] {
    classes();
    reuse();
    tensors();
    if (!quick()) timings();
  });
}
