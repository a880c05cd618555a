// Device memory: a caching allocator with size-class free lists per stream, and an owning Tensor.
//
// Why: cudaMalloc/cudaFree synchronize the device and cost tens of microseconds; a training step
// allocates and frees thousands of activations of the same few sizes. Freed blocks go to a free list
// keyed by (stream, size class) and are handed out again without touching the driver.
// Stream ordering: work on one stream runs in order, so a block freed on stream S can be reused by the
// next allocation on S at once, even while earlier kernels on S still use it. A block that was also
// used on other streams (record_stream) is parked until an event recorded on each of those streams at
// free time has completed, then joins its stream's free list.
#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::U8: return 1;
  }
  return 1;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
    case DType::U8: return "u8";
  }
  return "?";
}

// Up to 32 MiB: four classes per power of two (at most 25% rounding waste), at least 512 bytes. Above:
// multiples of 2 MiB. Every block is its own cudaMalloc, so 256-byte aligned (cuBLASLt, 16-byte vectors).
size_t size_class(size_t bytes) {
  constexpr size_t kMin = 512, kLarge = size_t(32) << 20, kLargeStep = size_t(2) << 20;
  if (bytes <= kMin) return kMin;
  if (bytes > kLarge) return (bytes + kLargeStep - 1) / kLargeStep * kLargeStep;
  size_t pow2 = kMin;
  while (pow2 * 2 < bytes) pow2 *= 2;  // pow2 < bytes <= 2·pow2
  size_t step = pow2 / 4;
  return (bytes + step - 1) / step * step;
}

namespace {

struct Block {
  void* ptr = nullptr;
  size_t size = 0;
  cudaStream_t stream = nullptr;
  std::vector<cudaStream_t> used_on;  // other streams that touched it since allocation
  std::vector<cudaEvent_t> events;    // pending: recorded at free time on used_on
};

class Allocator {
 public:
  void* alloc(size_t bytes, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t cls = size_class(bytes);
    process_pending();
    auto it = free_.find({stream, cls});
    Block* b = nullptr;
    if (it != free_.end() && !it->second.empty()) {
      b = it->second.back();
      it->second.pop_back();
      cached_ -= cls;
      stats_.cache_hits++;
    } else {
      void* p = nullptr;
      cudaError_t e = cudaMalloc(&p, cls);
      if (e != cudaSuccess) {
        (void)cudaGetLastError();  // clear the sticky-free error state of the failed call
        release_cached(/*sync=*/true);
        e = cudaMalloc(&p, cls);
      }
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        throw std::runtime_error("lorakit: out of GPU memory: asked for " + mib(cls) + " with " + mib(stats_.allocated) +
                                 " in use and " + mib(stats_.reserved) + " reserved.");
      }
      stats_.cuda_mallocs++;
      stats_.reserved += cls;
      stats_.peak_reserved = std::max(stats_.peak_reserved, stats_.reserved);
      b = new Block();
      b->ptr = p;
      b->size = cls;
    }
    b->stream = stream;
    b->used_on.clear();
    live_[b->ptr] = b;
    stats_.allocated += cls;
    stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
    return b->ptr;
  }

  void free(void* p) {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) throw std::invalid_argument("lorakit: device_free of a pointer this allocator did not hand out.");
    Block* b = it->second;
    live_.erase(it);
    stats_.allocated -= b->size;
    if (b->used_on.empty()) {
      free_[{b->stream, b->size}].push_back(b);
      cached_ += b->size;
      return;
    }
    for (cudaStream_t s : b->used_on) {
      cudaEvent_t ev = take_event();
      LKC_CUDA(cudaEventRecord(ev, s));
      b->events.push_back(ev);
    }
    pending_.push_back(b);
  }

  void record_stream(void* p, cudaStream_t s) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) throw std::invalid_argument("lorakit: record_stream on a pointer this allocator did not hand out.");
    Block* b = it->second;
    if (s != b->stream && std::find(b->used_on.begin(), b->used_on.end(), s) == b->used_on.end()) b->used_on.push_back(s);
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    release_cached(/*sync=*/false);
  }

  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_allocated = stats_.allocated;
    stats_.peak_reserved = stats_.reserved;
  }

 private:
  static std::string mib(size_t b) { return std::to_string(b >> 20) + " MiB"; }

  cudaEvent_t take_event() {
    if (!event_pool_.empty()) {
      cudaEvent_t e = event_pool_.back();
      event_pool_.pop_back();
      return e;
    }
    cudaEvent_t e;
    LKC_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    return e;
  }

  // Moves parked blocks whose cross-stream uses have all finished onto their stream's free list.
  void process_pending() {
    for (size_t i = 0; i < pending_.size();) {
      Block* b = pending_[i];
      bool done = true;
      for (cudaEvent_t e : b->events) {
        cudaError_t q = cudaEventQuery(e);
        if (q == cudaErrorNotReady) {
          done = false;
          break;
        }
        if (q != cudaSuccess) cuda_fail(q, "cudaEventQuery", __FILE__, __LINE__);
      }
      if (!done) {
        i++;
        continue;
      }
      for (cudaEvent_t e : b->events) event_pool_.push_back(e);
      b->events.clear();
      b->used_on.clear();
      free_[{b->stream, b->size}].push_back(b);
      cached_ += b->size;
      pending_[i] = pending_.back();
      pending_.pop_back();
    }
  }

  void release_cached(bool sync) {
    if (sync) {
      (void)cudaDeviceSynchronize();
      process_pending();
    }
    for (auto& kv : free_) {
      for (Block* b : kv.second) {
        (void)cudaFree(b->ptr);
        stats_.reserved -= b->size;
        cached_ -= b->size;
        delete b;
      }
      kv.second.clear();
    }
    free_.clear();
  }

  std::mutex mu_;
  std::map<std::pair<cudaStream_t, size_t>, std::vector<Block*>> free_;
  std::unordered_map<void*, Block*> live_;
  std::vector<Block*> pending_;
  std::vector<cudaEvent_t> event_pool_;
  size_t cached_ = 0;
  AllocatorStats stats_;
};

// Never destroyed: tensors freed during static destruction must still find it (the driver reclaims
// device memory at exit anyway).
Allocator& allocator() {
  static Allocator* a = new Allocator();
  return *a;
}

}  // namespace

void* device_alloc(size_t bytes, cudaStream_t stream) { return allocator().alloc(bytes, stream); }
void device_free(void* p) { allocator().free(p); }
void record_stream(void* p, cudaStream_t stream) { allocator().record_stream(p, stream); }
void empty_cache() { allocator().empty_cache(); }
AllocatorStats allocator_stats() { return allocator().stats(); }
void reset_peak() { allocator().reset_peak(); }

// ---- Tensor ------------------------------------------------------------------------------------------

Tensor::Tensor(std::vector<int64_t> shape, DType dtype, cudaStream_t stream)
    : dtype_(dtype), shape_(std::move(shape)), stream_(stream) {
  for (int64_t d : shape_) LKC_REQUIRE(d >= 0, "tensor dimensions must be non-negative.");
  data_ = device_alloc(nbytes(), stream_);
}

Tensor::~Tensor() { reset(); }

Tensor::Tensor(Tensor&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), dtype_(o.dtype_), shape_(std::move(o.shape_)), stream_(o.stream_) {}

Tensor& Tensor::operator=(Tensor&& o) noexcept {
  if (this != &o) {
    reset();
    data_ = std::exchange(o.data_, nullptr);
    dtype_ = o.dtype_;
    shape_ = std::move(o.shape_);
    stream_ = o.stream_;
  }
  return *this;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

void Tensor::reset() {
  if (data_) {
    device_free(data_);
    data_ = nullptr;
  }
}

}  // namespace lkc
