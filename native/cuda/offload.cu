// Activation offload: device blocks to pinned host buffers and back on a second ("copy") stream, so the
// copies overlap the kernels of the main stream.
//
// Ordering, all on the device (the host never waits here, except pinned_free):
//   - each copy first waits for an event recorded on `main` at the call, so it sees every write the
//     main stream had been given before (offload: the data; reload: earlier users of a block the
//     allocator just handed out again on `main`);
//   - copies run one after another on `copy`, so a pinned buffer can be reused for the next offload
//     right after a reload from it was enqueued;
//   - the device block is record_stream'ed on `copy` before the copy is enqueued: when it is freed, the
//     allocator records an event on `copy` (behind this copy) and parks the block until that event has
//     completed (memory.cu), so freeing right after offload_async is safe;
//   - reload_async records an event on `copy` after the copy; wait_event makes `main` wait for it.
// Reload events live in a table of slots; a handle is slot + 2^20 · generation, so a handle that was
// already waited on stays invalid after its slot is reused. Slot events are created once
// (cudaEventDisableTiming) and recorded again on reuse: once cudaStreamWaitEvent has returned, a new
// record does not affect the wait already enqueued.
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {

namespace {

constexpr int kSlotBits = 20;  // at most 2^20 reloads pending at once
constexpr int64_t kSlotMask = (int64_t(1) << kSlotBits) - 1;

struct Slot {
  cudaEvent_t event = nullptr;
  uint32_t generation = 0;  // of the live handle; 0 never names a live one
  bool live = false;
};

struct State {
  std::mutex mu;
  std::map<uintptr_t, size_t> pinned;  // pinned_alloc'ed buffers: host address → bytes
  cudaEvent_t order = nullptr;         // recorded on `main`, waited on by `copy`, at each copy
  std::vector<Slot> slots;
  std::vector<uint32_t> free_slots;
  size_t live = 0;
};

// Never destroyed (as the allocator): pinned buffers may be freed during static destruction.
State& state() {
  static State* s = new State();
  return *s;
}

cudaEvent_t new_event() {
  cudaEvent_t e = nullptr;
  LKC_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return e;
}

// host[0, bytes) must lie inside one pinned_alloc'ed buffer (caller holds the lock).
void check_pinned(State& s, const void* host, size_t bytes, const char* fn) {
  LKC_REQUIRE(host != nullptr, std::string(fn) + ": the host pointer is null.");
  const uintptr_t h = reinterpret_cast<uintptr_t>(host);
  auto it = s.pinned.upper_bound(h);  // first buffer starting after h
  bool ok = it != s.pinned.begin();
  if (ok) {
    --it;  // the last buffer starting at or before h
    ok = h - it->first <= it->second && bytes <= it->second - (h - it->first);
  }
  LKC_REQUIRE(ok, std::string(fn) + ": host range [" + std::to_string(h) + ", +" + std::to_string(bytes) +
                      ") is not inside a buffer from pinned_alloc.");
}

// The copy stream waits for everything enqueued on main so far (caller holds the lock).
void copy_after_main(State& s, cudaStream_t main, cudaStream_t copy) {
  if (!s.order) s.order = new_event();
  LKC_CUDA(cudaEventRecord(s.order, main));
  LKC_CUDA(cudaStreamWaitEvent(copy, s.order, 0));
}

}  // namespace

void* pinned_alloc(size_t bytes) {
  LKC_REQUIRE(bytes > 0, "pinned_alloc: bytes must be positive.");
  void* p = nullptr;
  const cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw std::runtime_error("lorakit: pinned_alloc: cudaHostAlloc of " + std::to_string(bytes) +
                             " bytes failed: " + cudaGetErrorString(e));
  }
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.pinned[reinterpret_cast<uintptr_t>(p)] = bytes;
  return p;
}

void pinned_free(void* host, cudaStream_t copy) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.pinned.find(reinterpret_cast<uintptr_t>(host));
  LKC_REQUIRE(it != s.pinned.end(), "pinned_free: not a buffer from pinned_alloc (or freed already).");
  LKC_CUDA(cudaStreamSynchronize(copy));  // the copies that read or write it have finished
  LKC_CUDA(cudaFreeHost(host));
  s.pinned.erase(it);
}

void offload_async(void* host, void* dev, size_t bytes, cudaStream_t main, cudaStream_t copy) {
  LKC_REQUIRE(main != copy, "offload_async: the copy stream must differ from the main stream.");
  LKC_REQUIRE(dev != nullptr, "offload_async: the device pointer is null.");
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  check_pinned(s, host, bytes, "offload_async");
  record_stream(dev, copy);  // first: it also checks that dev is a block of the allocator
  copy_after_main(s, main, copy);
  if (bytes > 0) LKC_CUDA(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, copy));
}

int64_t reload_async(void* dev, const void* host, size_t bytes, cudaStream_t main, cudaStream_t copy) {
  LKC_REQUIRE(main != copy, "reload_async: the copy stream must differ from the main stream.");
  LKC_REQUIRE(dev != nullptr, "reload_async: the device pointer is null.");
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  check_pinned(s, host, bytes, "reload_async");
  record_stream(dev, copy);
  // A slot for the event (before any copy is enqueued, so a failure here leaves nothing in flight).
  uint32_t slot;
  if (!s.free_slots.empty()) {
    slot = s.free_slots.back();
    s.free_slots.pop_back();
  } else {
    LKC_REQUIRE(s.slots.size() <= size_t(kSlotMask), "reload_async: too many reloads pending (wait_event spends them).");
    Slot fresh;
    fresh.event = new_event();
    s.slots.push_back(fresh);
    slot = uint32_t(s.slots.size() - 1);
  }
  Slot& sl = s.slots[slot];
  try {
    copy_after_main(s, main, copy);
    if (bytes > 0) LKC_CUDA(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, copy));
    LKC_CUDA(cudaEventRecord(sl.event, copy));
  } catch (...) {
    s.free_slots.push_back(slot);
    throw;
  }
  sl.generation = sl.generation == 0xFFFFFFFFu ? 1 : sl.generation + 1;  // never 0
  sl.live = true;
  s.live++;
  return (int64_t(sl.generation) << kSlotBits) | int64_t(slot);  // < 2^52, > 0
}

void wait_event(int64_t handle, cudaStream_t stream) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  const int64_t slot = handle & kSlotMask;
  const int64_t generation = handle >> kSlotBits;
  const bool ok = handle > 0 && slot < int64_t(s.slots.size()) && s.slots[slot].live &&
                  int64_t(s.slots[slot].generation) == generation;
  LKC_REQUIRE(ok, "wait_event: handle " + std::to_string(handle) +
                      " is not a pending reload (already waited on, or not returned by reload_async).");
  Slot& sl = s.slots[slot];
  LKC_CUDA(cudaStreamWaitEvent(stream, sl.event, 0));
  sl.live = false;
  s.free_slots.push_back(uint32_t(slot));
  s.live--;
}

size_t pending_reloads() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.live;
}

}  // namespace lkc
