// Activation offload harness (offload.cu): device blocks to pinned host memory and back on a copy stream
// next to the main stream, as the addon's offloadAsync / reloadAsync / waitEvent use it.
//   - each ordering, made deterministic by delaying one stream with a spin kernel: the offload copy reads
//     what main wrote before the call; a block freed right after offload_async is not handed out again
//     until the copy has read it; a reload into a block the allocator just handed out again on main runs
//     after main's earlier writes to it; main's kernels after wait_event see the reloaded data;
//   - 32 layers × 16 MiB (8 × 1 MiB with HX_QUICK): forward fills each layer's input on main, offloads it,
//     frees it and overwrites fresh blocks of the same size on main; backward reloads layer i−1 while
//     "computing" on layer i; a kernel on main checks every reloaded word, the host checks every
//     offloaded word (bit for bit against the pattern);
//   - argument errors: spent or unknown handles, host ranges outside pinned buffers, interior pointers;
//   - offload and reload bandwidth, and a forward+backward loop with and without offload.
#include "harness.h"

using namespace hx;

namespace {

__host__ __device__ inline uint32_t pattern(uint64_t i, uint32_t tag) {
  uint64_t x = (i + (uint64_t(tag) << 40)) * 0x9E3779B97F4A7C15ull;
  x ^= x >> 31, x *= 0xBF58476D1CE4E5B9ull, x ^= x >> 29;
  return uint32_t(x);
}

__global__ void fill_pattern(uint32_t* p, int64_t n, uint32_t tag) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) p[i] = pattern(i, tag);
}

__global__ void fill_value(uint32_t* p, int64_t n, uint32_t v) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) p[i] = v;
}

// bad[0] += number of words of p that differ from the pattern.
__global__ void count_mismatches(const uint32_t* p, int64_t n, uint32_t tag, unsigned long long* bad) {
  unsigned long long local = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    local += p[i] != pattern(i, tag);
  if (local) atomicAdd(bad, local);
}

__device__ inline uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Keeps a stream busy for `ns` nanoseconds (one thread): a stand-in for compute, or a delay.
__global__ void spin_ns(uint64_t ns) {
  const uint64_t t0 = global_ns();
  while (global_ns() - t0 < ns) {
  }
}

constexpr int kGrid = 1024, kBlock = 256;

void fill(void* p, size_t bytes, uint32_t tag, cudaStream_t s) {
  fill_pattern<<<kGrid, kBlock, 0, s>>>(static_cast<uint32_t*>(p), int64_t(bytes / 4), tag);
  HX_CUDA(cudaGetLastError());
}
void junk(void* p, size_t bytes, cudaStream_t s) {
  fill_value<<<kGrid, kBlock, 0, s>>>(static_cast<uint32_t*>(p), int64_t(bytes / 4), 0xDEADBEEFu);
  HX_CUDA(cudaGetLastError());
}
void spin(double us, cudaStream_t s) {
  spin_ns<<<1, 1, 0, s>>>(uint64_t(us * 1e3));
  HX_CUDA(cudaGetLastError());
}
void count(const void* p, size_t bytes, uint32_t tag, unsigned long long* bad, cudaStream_t s) {
  count_mismatches<<<kGrid, kBlock, 0, s>>>(static_cast<const uint32_t*>(p), int64_t(bytes / 4), tag, bad);
  HX_CUDA(cudaGetLastError());
}

// Words of host[0, bytes) that differ from the pattern (host memory, read after a sync).
size_t host_mismatches(const void* host, size_t bytes, uint32_t tag) {
  const uint32_t* h = static_cast<const uint32_t*>(host);
  size_t bad = 0;
  for (size_t i = 0; i < bytes / 4; i++) bad += h[i] != pattern(i, tag);
  return bad;
}

struct Streams {
  cudaStream_t main = nullptr, copy = nullptr;
  Streams() {
    HX_CUDA(cudaStreamCreateWithFlags(&main, cudaStreamNonBlocking));
    HX_CUDA(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking));
  }
  ~Streams() {
    cudaStreamDestroy(main);
    cudaStreamDestroy(copy);
  }
  void sync() const {
    HX_CUDA(cudaStreamSynchronize(main));
    HX_CUDA(cudaStreamSynchronize(copy));
  }
};

std::string mib(size_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

// Each ordering on one buffer, with the other stream held back so a missing dependency would show.
void orderings(const Streams& st, size_t bytes) {
  const std::string tag = mib(bytes);
  constexpr double kDelayUs = 30000;  // far longer than any copy or fill here
  Buf bad(8 * sizeof(unsigned long long));
  bad.zero();
  auto* bad_p = bad.as<unsigned long long>();
  void* host = lkc::pinned_alloc(bytes);
  std::memset(host, 0, bytes);

  // Offload after main's slow write; the copy stream is held back longer still, so if the block freed
  // right after offload_async were handed out again, main's overwrite would land before the copy read it.
  void* x = lkc::device_alloc(bytes, st.main);
  spin(kDelayUs, st.copy);
  spin(kDelayUs / 2, st.main);
  fill(x, bytes, 1, st.main);
  lkc::offload_async(host, x, bytes, st.main, st.copy);
  lkc::device_free(x);
  void* y = lkc::device_alloc(bytes, st.main);
  junk(y, bytes, st.main);
  expect("offload", "a block freed after offload_async is not handed out while the copy is pending (" + tag + ")", y != x);
  lkc::device_free(y);
  st.sync();
  expect("offload", "the offloaded copy is main's data, bit for bit, with main delayed and reuse attempted (" + tag + ")",
         host_mismatches(host, bytes, 1) == 0);
  void* z1 = lkc::device_alloc(bytes, st.main);
  void* z2 = lkc::device_alloc(bytes, st.main);
  expect("offload", "the block is reused once the copy has read it", z1 == x || z2 == x);
  lkc::device_free(z1);
  lkc::device_free(z2);

  // Reload into a block main is still slowly overwriting (freed on main, handed out again on main).
  void* w = lkc::device_alloc(bytes, st.main);
  spin(kDelayUs, st.main);
  junk(w, bytes, st.main);
  lkc::device_free(w);
  void* r = lkc::device_alloc(bytes, st.main);
  expect("reload", "the reload target is the block main is still writing (same-stream reuse)", r == w);
  int64_t h = lkc::reload_async(r, host, bytes, st.main, st.copy);
  lkc::wait_event(h, st.main);
  count(r, bytes, 1, bad_p + 0, st.main);
  std::vector<uint32_t> back(bytes / 4);
  HX_CUDA(cudaMemcpyAsync(back.data(), r, bytes, cudaMemcpyDeviceToHost, st.main));
  lkc::device_free(r);
  st.sync();
  expect("reload", "the reload lands after main's earlier writes to the block: read back bit for bit (" + tag + ")",
         host_mismatches(back.data(), bytes, 1) == 0);

  // Main's kernel after wait_event sees the reloaded data, with the copy stream held back.
  void* q = lkc::device_alloc(bytes, st.main);
  junk(q, bytes, st.main);
  spin(kDelayUs, st.copy);
  h = lkc::reload_async(q, host, bytes, st.main, st.copy);
  lkc::wait_event(h, st.main);
  count(q, bytes, 1, bad_p + 1, st.main);
  std::fill(back.begin(), back.end(), 0u);
  HX_CUDA(cudaMemcpyAsync(back.data(), q, bytes, cudaMemcpyDeviceToHost, st.main));
  st.sync();
  const auto counts = down<unsigned long long>(bad.p, 2);
  expect("reload", "main waits for the reload (wait_event), copy stream delayed: read back bit for bit (" + tag + ")",
         counts[1] == 0 && host_mismatches(back.data(), bytes, 1) == 0);
  expect("reload", "a kernel on main after wait_event sees every reloaded word", counts[0] == 0 && counts[1] == 0);

  // Argument errors.
  expect_throw("wait_event", "a spent handle", [&] { lkc::wait_event(h, st.main); });
  expect_throw("wait_event", "an unknown handle", [&] { lkc::wait_event(12345, st.main); });
  expect_throw("wait_event", "a negative handle", [&] { lkc::wait_event(-1, st.main); });
  const int64_t h2 = lkc::reload_async(q, host, bytes, st.main, st.copy);
  expect("reload", "handles are positive and a reused slot gets a new handle", h2 > 0 && h2 != h);
  expect("reload", "pending_reloads counts the handle not yet waited on", lkc::pending_reloads() == 1);
  expect_throw("wait_event", "the old handle of a slot pending again", [&] { lkc::wait_event(h, st.main); });
  lkc::wait_event(h2, st.main);
  std::vector<uint32_t> pageable(16);
  expect_throw("offload", "a host pointer that is not from pinned_alloc",
               [&] { lkc::offload_async(pageable.data(), q, 64, st.main, st.copy); });
  expect_throw("offload", "a host range past the end of its pinned buffer",
               [&] { lkc::offload_async(static_cast<char*>(host) + 256, q, bytes, st.main, st.copy); });
  expect_throw("offload", "an interior device pointer",
               [&] { lkc::offload_async(host, static_cast<char*>(q) + 256, 256, st.main, st.copy); });
  expect_throw("reload", "the main stream as the copy stream", [&] { lkc::reload_async(q, host, bytes, st.main, st.main); });
  expect_throw("pinned_free", "a pointer not from pinned_alloc", [&] { lkc::pinned_free(pageable.data(), st.copy); });
  expect_throw("pinned_alloc", "zero bytes", [&] { lkc::pinned_alloc(0); });
  lkc::device_free(q);
  lkc::pinned_free(host, st.copy);
  expect_throw("pinned_free", "a buffer freed already", [&] { lkc::pinned_free(host, st.copy); });
  st.sync();
}

// Forward: layer i's input is written on main, offloaded, freed; fresh blocks of the same size are
// then taken and overwritten on main. Backward, i = L−1 … 0: wait for layer i, start reloading layer
// i−1 (prefetch), "compute" on layer i (check every word on main, spin), free it.
void layers(const Streams& st, int L, size_t bytes, int rounds, double compute_us) {
  const std::string tag = std::to_string(L) + " layers x " + mib(bytes) + ", " + std::to_string(rounds) + " rounds";
  const size_t allocated0 = lkc::allocator_stats().allocated;
  std::vector<void*> host(L);
  for (auto& p : host) p = lkc::pinned_alloc(bytes);
  Buf bad(size_t(L) * rounds * sizeof(unsigned long long));
  bad.zero();
  auto* bad_p = bad.as<unsigned long long>();
  size_t host_bad = 0;
  for (int round = 0; round < rounds; round++) {
    const uint32_t base = 100 + uint32_t(round) * 1000;
    for (int i = 0; i < L; i++) {
      void* x = lkc::device_alloc(bytes, st.main);
      fill(x, bytes, base + i, st.main);
      spin(compute_us, st.main);
      lkc::offload_async(host[i], x, bytes, st.main, st.copy);
      lkc::device_free(x);
      void* j1 = lkc::device_alloc(bytes, st.main);
      void* j2 = lkc::device_alloc(bytes, st.main);
      junk(j1, bytes, st.main);
      junk(j2, bytes, st.main);
      lkc::device_free(j1);
      lkc::device_free(j2);
    }
    std::vector<void*> dev(L, nullptr);
    std::vector<int64_t> ev(L, 0);
    dev[L - 1] = lkc::device_alloc(bytes, st.main);
    ev[L - 1] = lkc::reload_async(dev[L - 1], host[L - 1], bytes, st.main, st.copy);
    for (int i = L - 1; i >= 0; i--) {
      lkc::wait_event(ev[i], st.main);
      if (i > 0) {
        dev[i - 1] = lkc::device_alloc(bytes, st.main);
        ev[i - 1] = lkc::reload_async(dev[i - 1], host[i - 1], bytes, st.main, st.copy);
      }
      count(dev[i], bytes, base + i, bad_p + size_t(round) * L + i, st.main);
      spin(compute_us, st.main);
      void* j = lkc::device_alloc(bytes, st.main);
      junk(j, bytes, st.main);
      lkc::device_free(j);
      lkc::device_free(dev[i]);
    }
    st.sync();
    for (int i = 0; i < L; i++) host_bad += host_mismatches(host[i], bytes, base + i);
  }
  const auto counts = down<unsigned long long>(bad.p, size_t(L) * rounds);
  unsigned long long dev_bad = 0;
  for (auto c : counts) dev_bad += c;
  expect("offload", "every offloaded word in pinned memory, bit for bit (" + tag + ")", host_bad == 0);
  expect("reload", "every reloaded word, checked on main after wait_event, prefetch order (" + tag + ")", dev_bad == 0);
  expect("offload", "no handle left pending, every block back to the allocator",
         lkc::pending_reloads() == 0 && lkc::allocator_stats().allocated == allocated0);
  for (void* p : host) lkc::pinned_free(p, st.copy);
}

// Median over `reps` of the time between events recorded on `first` before fn and on `last` after it.
double time_streams(cudaStream_t first, cudaStream_t last, const std::function<void()>& fn, int reps = 5) {
  cudaEvent_t a, b;
  HX_CUDA(cudaEventCreate(&a));
  HX_CUDA(cudaEventCreate(&b));
  std::vector<float> ms(reps);
  fn();  // warm-up
  HX_CUDA(cudaDeviceSynchronize());
  for (int r = 0; r < reps; r++) {
    HX_CUDA(cudaEventRecord(a, first));
    fn();
    HX_CUDA(cudaEventRecord(b, last));
    HX_CUDA(cudaDeviceSynchronize());
    HX_CUDA(cudaEventElapsedTime(&ms[r], a, b));
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return double(ms[reps / 2]) * 1e3;
}

void timings(const Streams& st, int L, size_t bytes) {
  const std::string shape = std::to_string(L) + " x " + mib(bytes);
  std::vector<void*> host(L), dev(L);
  for (auto& p : host) p = lkc::pinned_alloc(bytes);
  for (auto& p : dev) {
    p = lkc::device_alloc(bytes, st.main);  // kept for the whole timing: no cudaMalloc inside it
    fill(p, bytes, 7, st.main);
  }
  const double total = double(bytes) * L;
  auto offload_all = [&] {
    for (int i = 0; i < L; i++) lkc::offload_async(host[i], dev[i], bytes, st.main, st.copy);
  };
  auto reload_all = [&] {
    for (int i = 0; i < L; i++) lkc::wait_event(lkc::reload_async(dev[i], host[i], bytes, st.main, st.copy), st.main);
  };
  const double off_us = time_streams(st.copy, st.copy, offload_all);
  timing("offload (device to pinned host, copy stream)", shape, off_us, gbps(total, off_us));
  const double re_us = time_streams(st.copy, st.copy, reload_all);
  timing("reload (pinned host to device, copy stream)", shape, re_us, gbps(total, re_us));

  // Forward + backward with a stand-in compute of twice the slower copy per layer: with offload the
  // copies should hide behind it.
  const double compute_us = 2.0 * std::max(off_us, re_us) / L;
  auto loop = [&](bool offload) {
    for (int i = 0; i < L; i++) {
      fill(dev[i], bytes, uint32_t(i), st.main);
      spin(compute_us, st.main);
      if (offload) lkc::offload_async(host[i], dev[i], bytes, st.main, st.copy);
    }
    int64_t next = offload ? lkc::reload_async(dev[L - 1], host[L - 1], bytes, st.main, st.copy) : 0;
    for (int i = L - 1; i >= 0; i--) {
      if (offload) lkc::wait_event(next, st.main);
      if (offload && i > 0) next = lkc::reload_async(dev[i - 1], host[i - 1], bytes, st.main, st.copy);
      spin(compute_us, st.main);
    }
  };
  const double plain = time_streams(st.main, st.main, [&] { loop(false); });
  const double with = time_streams(st.main, st.main, [&] { loop(true); });
  char rate[192];
  std::snprintf(rate, sizeof rate, "%.1f%% over compute alone (%.0f µs); serial copies would add %.0f%%", 100.0 * (with / plain - 1.0),
                plain, 100.0 * (off_us + re_us) / plain);
  timing("fwd+bwd loop with offload + prefetch", shape + ", compute " + std::to_string(int(compute_us)) + " µs/layer", with, rate);
  for (void* p : dev) lkc::device_free(p);
  for (void* p : host) lkc::pinned_free(p, st.copy);
}

}  // namespace

int main() {
  return run("offload", [] {
    Streams st;
    const bool q = quick();
    const int L = q ? 8 : 32;
    const size_t bytes = q ? (size_t(1) << 20) : (size_t(16) << 20);
    orderings(st, bytes);
    layers(st, L, bytes, q ? 1 : 3, 0);   // copies lag far behind main: the most reuse attempts
    layers(st, L, bytes, 1, q ? 50 : 200);  // some compute between copies
    if (!q) timings(st, L, bytes);
  });
}
