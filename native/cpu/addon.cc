// Module entry point, argument helpers and native memory ownership.
//
// Memory: alloc(bytes) returns an ArrayBuffer over 64-byte-aligned native memory; free(buffer)
// detaches it (every JS view becomes empty, so nothing can touch freed memory) and releases the memory
// at once. The garbage collector's finalizer only frees what was never freed explicitly.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <sys/mman.h>
#include <mutex>
#include <unordered_map>

#include "napi_util.h"
#include "parallel.h"

namespace lk {

std::vector<Export>& exports() {
  static std::vector<Export> table;
  return table;
}

napi_value undefined(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

napi_value number(napi_env env, double x) {
  napi_value v;
  napi_create_double(env, x, &v);
  return v;
}

Args::Args(napi_env e, napi_callback_info info, size_t expected) : env(e) {
  size_t argc = expected;
  argv_.resize(expected);
  napi_get_cb_info(env, info, &argc, argv_.data(), nullptr, nullptr);
  if (argc != expected)
    throw ArgError("expected " + std::to_string(expected) + " arguments, got " + std::to_string(argc));
}

void* Args::typed(size_t i, napi_typedarray_type want, const char* what, size_t min_len) {
  bool is_typed = false;
  napi_is_typedarray(env, argv_[i], &is_typed);
  if (!is_typed) throw ArgError("argument " + std::to_string(i) + " must be a " + what);
  napi_typedarray_type type;
  size_t length;
  void* data;
  napi_get_typedarray_info(env, argv_[i], &type, &length, &data, nullptr, nullptr);
  if (type != want) throw ArgError("argument " + std::to_string(i) + " must be a " + what);
  if (length < min_len)
    throw ArgError("argument " + std::to_string(i) + " has " + std::to_string(length) + " elements, needs " +
                   std::to_string(min_len));
  return data;
}

float* Args::f32(size_t i, size_t n) { return static_cast<float*>(typed(i, napi_float32_array, "Float32Array", n)); }
uint16_t* Args::u16(size_t i, size_t n) { return static_cast<uint16_t*>(typed(i, napi_uint16_array, "Uint16Array", n)); }
int32_t* Args::i32(size_t i, size_t n) { return static_cast<int32_t*>(typed(i, napi_int32_array, "Int32Array", n)); }
uint8_t* Args::u8(size_t i, size_t n) { return static_cast<uint8_t*>(typed(i, napi_uint8_array, "Uint8Array", n)); }

double Args::num(size_t i) {
  double v;
  if (napi_get_value_double(env, argv_[i], &v) != napi_ok) throw ArgError("argument " + std::to_string(i) + " must be a number");
  return v;
}

int64_t Args::int64(size_t i) {
  double v = num(i);
  if (v != static_cast<double>(static_cast<int64_t>(v))) throw ArgError("argument " + std::to_string(i) + " must be an integer");
  return static_cast<int64_t>(v);
}

bool Args::boolean(size_t i) {
  bool v;
  if (napi_get_value_bool(env, argv_[i], &v) != napi_ok) throw ArgError("argument " + std::to_string(i) + " must be a boolean");
  return v;
}

bool Args::absent(size_t i) {
  napi_valuetype t;
  napi_typeof(env, argv_[i], &t);
  return t == napi_null || t == napi_undefined;
}

// ---- native memory -------------------------------------------------------------------------------

namespace {
// Large buffers come from mmap and return to it with munmap: glibc's heap keeps freed multi-megabyte
// chunks resident (its mmap threshold adapts upwards), so a loop that frees what it allocates would
// still grow. Between the two sits a cache of freed large buffers by exact size: a training step
// allocates the same sizes every step, and reusing mapped pages avoids a page fault per 4 KiB.
constexpr size_t kMmapThreshold = 256 * 1024;

// The most bytes ever live at once (memoryStats' peak can be reset; this cannot).
std::atomic<size_t> high_water{0};

// What the cache may hold: LORAKIT_CPU_CACHE_BYTES, else the larger of 2 GiB and the high water mark,
// so that a step whose buffers add up to more than 2 GiB finds all of them cached on the next step
// (SmolLM2-135M LoRA, batch 8 x 256: 3.5 GB live; a 2 GiB cache left 1.5 GB to fault in afresh every
// step, a quarter of the step's time). Freed buffers are reused before new ones are mapped, so the
// cache is mostly drained when live memory peaks: resident memory stays near the peak of live bytes.
size_t cache_limit() {
  static const char* env = std::getenv("LORAKIT_CPU_CACHE_BYTES");
  static const size_t fixed = env ? static_cast<size_t>(std::strtoull(env, nullptr, 10)) : 0;
  return env ? fixed : std::max(size_t(2) << 30, high_water.load(std::memory_order_relaxed));
}

std::mutex cache_mutex;
std::unordered_map<size_t, std::vector<void*>> cache;  // bytes -> free buffers
size_t cached_bytes = 0;

// Large sizes are rounded up to one of four classes per power of two (≤ 25% slack), so that buffers
// whose shapes vary a little from step to step (sequence lengths) still find a cached buffer.
size_t size_class(size_t bytes) {
  if (bytes < kMmapThreshold) return bytes;
  size_t top = size_t(1) << (63 - __builtin_clzll(bytes));  // largest power of two <= bytes
  size_t step = top / 4;
  return (bytes + step - 1) / step * step;
}

void* alloc_pages(size_t bytes) {
  if (bytes < kMmapThreshold) return std::aligned_alloc(64, bytes);
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto it = cache.find(bytes);
    if (it != cache.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cached_bytes -= bytes;
      return p;
    }
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void free_pages(void* p, size_t bytes) {
  if (bytes < kMmapThreshold) {
    std::free(p);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (cached_bytes + bytes <= cache_limit()) {
      cache[bytes].push_back(p);
      cached_bytes += bytes;
      return;
    }
  }
  munmap(p, bytes);
}

// Returns every cached buffer to the system.
void trim_cache() {
  std::lock_guard<std::mutex> lock(cache_mutex);
  for (auto& [bytes, list] : cache)
    for (void* p : list) munmap(p, bytes);
  cache.clear();
  cached_bytes = 0;
}

// One record per allocation, owned by the ArrayBuffer's finalizer. The finalizer may run long after an
// explicit free (Node defers it), when the same address may already belong to a new allocation: so it
// must never free by address, only through its own record.
struct Allocation {
  void* data;
  size_t bytes;
  bool freed;
};

std::mutex mem_mutex;
std::unordered_map<void*, Allocation*> live;  // data pointer -> record, for explicit frees
size_t live_bytes = 0, peak_bytes = 0;

void release(Allocation* a) {
  {
    std::lock_guard<std::mutex> lock(mem_mutex);
    if (a->freed) return;
    a->freed = true;
    live.erase(a->data);
    live_bytes -= a->bytes;
  }
  free_pages(a->data, a->bytes);
}

void finalize(napi_env, void*, void* hint) {
  auto* a = static_cast<Allocation*>(hint);
  release(a);
  delete a;
}
}  // namespace

LK_ENTRY(js_alloc, 1, {
  int64_t bytes = a.int64(0);
  if (bytes < 0) throw ArgError("negative size");
  size_t rounded = size_class((static_cast<size_t>(bytes) + 63) / 64 * 64);
  if (rounded == 0) rounded = 64;
  void* p = alloc_pages(rounded);
  if (!p) throw std::runtime_error("out of memory allocating " + std::to_string(bytes) + " bytes");
  auto* record = new Allocation{p, rounded, false};
  {
    std::lock_guard<std::mutex> lock(mem_mutex);
    live[p] = record;
    live_bytes += rounded;
    if (live_bytes > peak_bytes) peak_bytes = live_bytes;
    if (live_bytes > high_water.load(std::memory_order_relaxed)) high_water.store(live_bytes, std::memory_order_relaxed);
  }
  napi_value buf;
  // Never length 0: an empty external ArrayBuffer reports a null data pointer, and free() could not find it.
  if (napi_create_external_arraybuffer(env, p, std::max<size_t>(static_cast<size_t>(bytes), 1), finalize, record, &buf) != napi_ok) {
    release(record);
    delete record;
    throw std::runtime_error("could not wrap native memory in an ArrayBuffer");
  }
  return buf;
})

LK_ENTRY(js_free_buffer, 1, {
  void* data;
  size_t length;
  if (napi_get_arraybuffer_info(env, a.raw(0), &data, &length) != napi_ok) throw ArgError("argument 0 must be an ArrayBuffer");
  if (data == nullptr) return undefined(env);  // already detached
  Allocation* record = nullptr;
  {
    std::lock_guard<std::mutex> lock(mem_mutex);
    auto it = live.find(data);
    if (it != live.end()) record = it->second;
  }
  napi_detach_arraybuffer(env, a.raw(0));
  if (record) release(record);  // the record itself is deleted by the finalizer, later
})

// [live bytes, peak bytes]; resetPeak sets the peak to the current live size.
LK_ENTRY(js_memory_stats, 1, {
  bool reset = a.boolean(0);
  std::lock_guard<std::mutex> lock(mem_mutex);
  if (reset) peak_bytes = live_bytes;
  napi_value arr;
  napi_create_array_with_length(env, 2, &arr);
  napi_set_element(env, arr, 0, number(env, static_cast<double>(live_bytes)));
  napi_set_element(env, arr, 1, number(env, static_cast<double>(peak_bytes)));
  return arr;
})

// Frees the cache of reusable buffers; returns the bytes it held.
LK_ENTRY(js_trim_cache, 0, {
  size_t held;
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    held = cached_bytes;
  }
  trim_cache();
  return number(env, static_cast<double>(held));
})

LK_ENTRY(js_set_threads, 1, {
  set_num_threads(static_cast<int>(a.int64(0)));
})

LK_ENTRY(js_get_threads, 0, { return number(env, num_threads()); })

LK_EXPORT("alloc", js_alloc);
LK_EXPORT("free", js_free_buffer);
LK_EXPORT("memoryStats", js_memory_stats);
LK_EXPORT("trimCache", js_trim_cache);
LK_EXPORT("setThreads", js_set_threads);
LK_EXPORT("getThreads", js_get_threads);

}  // namespace lk

static napi_value init(napi_env env, napi_value exports_obj) {
  napi_value arities;
  napi_create_object(env, &arities);
  for (const auto& e : lk::exports()) {
    napi_value fn;
    napi_create_function(env, e.name, NAPI_AUTO_LENGTH, e.fn, nullptr, &fn);
    napi_set_named_property(env, exports_obj, e.name, fn);
    napi_set_named_property(env, arities, e.name, lk::number(env, static_cast<double>(e.arity)));
  }
  napi_set_named_property(env, exports_obj, "arities", arities);
  return exports_obj;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
