// N-API glue for the CUDA backend: build/lorakit_cuda.node, the entry points of interface CudaAddon
// (src/backend/cuda/addon.ts) over the kernels of build/liblorakit_cuda.a (lorakit_cuda.h). The kernel
// entry points' wrappers are generated from their declarations (src/ops/spec/) into addon_bindings.inc;
// this file holds the argument checks they use, the device, memory, copy and timing entry points, and
// the glue of entry points that do more than one launch.
//
// Device pointers travel as JS numbers: each is checked to be an integer in [0, 2⁵³) and cast to
// uintptr_t; 0 is null, accepted only where the contract says an argument may be left out. Sizes are
// checked to be non-negative integers (and to fit an int where the kernel takes one), dtypes to be one
// of CUDA_DTYPE (f32 or bf16 where one gives the dtype of activations). Every kernel is enqueued on
// one stream, created at load with cudaStreamNonBlocking, and the call returns at once; copies to and
// from the host and synchronize() wait. A second non-blocking stream, the copy stream, carries only the
// activation offload/reload copies (offload.cu), ordered against the main stream with events. After
// each launch cudaGetLastError() is checked. Any C++ exception (an lkc:: argument check, a CUDA error,
// an allocation failure) becomes a JS Error "lorakit: <entry point>: <what>". deviceCount() never
// throws. Loading never fails for want of a GPU: the stream is only created when a device is visible,
// and the entry points that need it say why it is missing.
#include <cuda_runtime.h>
#include <node_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>
#include <tuple>

#include "lorakit_cuda.h"

namespace {

using lkc::DType;

cudaStream_t g_stream = nullptr;
cudaStream_t g_copy_stream = nullptr;  // offload/reload copies only; set together with g_stream
std::string g_no_stream = "the CUDA addon was not initialised";  // why g_stream is null

[[noreturn]] void fail(const std::string& msg) { throw std::runtime_error("lorakit: " + msg); }

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear a non-sticky error so later calls are not blamed for it
    fail(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
  }
}

cudaStream_t stream() {
  if (!g_stream) fail("CUDA is not available (" + g_no_stream + ").");
  return g_stream;
}

cudaStream_t copy_stream() {
  stream();  // same reason when there is no GPU
  return g_copy_stream;
}

// Creates the stream once per process (several Node environments may load the addon).
void init_cuda() {
  static std::once_flag once;
  std::call_once(once, [] {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      g_no_stream = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
      (void)cudaGetLastError();
      return;
    }
    if (count == 0) {
      g_no_stream = "no CUDA device is visible";
      return;
    }
    cudaStream_t main = nullptr, copy = nullptr;
    e = cudaStreamCreateWithFlags(&main, cudaStreamNonBlocking);
    if (e == cudaSuccess) {
      e = cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking);
      if (e != cudaSuccess) (void)cudaStreamDestroy(main);
    }
    if (e != cudaSuccess) {
      g_no_stream = std::string("cudaStreamCreateWithFlags: ") + cudaGetErrorString(e);
      (void)cudaGetLastError();
      return;
    }
    g_stream = main;
    g_copy_stream = copy;
  });
}

napi_value undefined(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

napi_value number(napi_env env, double x) {
  napi_value v;
  if (napi_create_double(env, x, &v) != napi_ok) fail("could not create a JS number");
  return v;
}

constexpr double kTwo53 = 9007199254740992.0;  // 2⁵³: every integer below it is exact in a double

// After a kernel launch: a bad configuration or an earlier asynchronous fault shows up here.
void check_launch() {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail(std::string("CUDA error after the launch: ") + cudaGetErrorString(e));
}

// Kernels that launch one block per row (or per 8 rows) take the grid size as a 32-bit count.
void check_rows(double rows, double per_block, const char* what) {
  if (std::ceil(rows / per_block) > 2147483647.0) fail(std::string(what) + ": too many rows for one launch.");
}

// A device buffer from the caching allocator for the length of one call (stream-ordered: freeing it
// right after the launches that use it is safe, the next user on the stream runs after them).
class Scratch {
 public:
  Scratch() = default;
  explicit Scratch(size_t bytes) { alloc(bytes); }
  ~Scratch() {
    if (p_) try {
        lkc::device_free(p_);
      } catch (...) {
      }
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void alloc(size_t bytes) { p_ = lkc::device_alloc(bytes, stream()); }  // once
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
};

// The arguments of one call, checked one by one; every message names the argument.
class Args {
 public:
  Args(napi_env e, napi_callback_info info, size_t expected, const char* fn) : env(e), argv_{} {
    if (expected > kMaxArgs) fail(std::string(fn) + ": too many declared arguments");
    size_t argc = kMaxArgs;
    if (napi_get_cb_info(env, info, &argc, argv_, nullptr, nullptr) != napi_ok) fail("could not read the arguments");
    if (argc != expected) fail("expected " + std::to_string(expected) + " arguments, got " + std::to_string(argc));
  }

  napi_env env;

  double num(size_t i, const char* name) const {
    double v;
    if (napi_get_value_double(env, argv_[i], &v) != napi_ok) bad(i, name, "must be a number");
    return v;
  }
  float f32(size_t i, const char* name) const { return static_cast<float>(num(i, name)); }

  // An integer in [lo, hi] (both within ±2⁵³).
  int64_t integer(size_t i, const char* name, double lo, double hi) const {
    const double v = num(i, name);
    if (!(v >= lo && v <= hi) || std::floor(v) != v)
      bad(i, name, "must be an integer in [" + fmt(lo) + ", " + fmt(hi) + "], got " + fmt(v));
    return static_cast<int64_t>(v);
  }
  // A size: an integer in [0, 2⁵³).
  int64_t count(size_t i, const char* name) const { return integer(i, name, 0, kTwo53 - 1); }
  // A size the kernel takes as an int.
  int dim(size_t i, const char* name) const { return static_cast<int>(integer(i, name, 0, 2147483647.0)); }

  bool flag(size_t i, const char* name) const {
    bool v;
    if (napi_get_value_bool(env, argv_[i], &v) != napi_ok) bad(i, name, "must be a boolean");
    return v;
  }

  DType dtype(size_t i, const char* name) const { return static_cast<DType>(integer(i, name, 0, 3)); }
  // The dtype of activations and frozen weights: f32 or bf16.
  DType float_dtype(size_t i, const char* name) const {
    const DType t = dtype(i, name);
    if (t != DType::F32 && t != DType::BF16) bad(i, name, std::string("must be f32 or bf16, not ") + lkc::dtype_name(t));
    return t;
  }

  // A required device pointer (never null).
  template <typename T = void>
  T* ptr(size_t i, const char* name) const {
    const uintptr_t p = address(i, name);
    if (p == 0) bad(i, name, "must not be null (0)");
    return reinterpret_cast<T*>(p);
  }
  // An optional device pointer: 0 gives nullptr.
  template <typename T = void>
  T* opt(size_t i, const char* name) const {
    return reinterpret_cast<T*>(address(i, name));
  }

  // The bytes of a TypedArray, DataView or ArrayBuffer (host memory).
  struct Bytes {
    void* data;
    size_t size;
  };
  Bytes bytes(size_t i, const char* name) const {
    napi_value v = argv_[i];
    bool is = false;
    if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
      napi_typedarray_type type;
      size_t length = 0;
      void* data = nullptr;
      if (napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok) bad(i, name, "is an unreadable typed array");
      return {data, length * element_size(type, i, name)};
    }
    if (napi_is_dataview(env, v, &is) == napi_ok && is) {
      size_t length = 0;
      void* data = nullptr;
      if (napi_get_dataview_info(env, v, &length, &data, nullptr, nullptr) != napi_ok) bad(i, name, "is an unreadable DataView");
      return {data, length};
    }
    if (napi_is_arraybuffer(env, v, &is) == napi_ok && is) {
      size_t length = 0;
      void* data = nullptr;
      if (napi_get_arraybuffer_info(env, v, &data, &length) != napi_ok) bad(i, name, "is an unreadable ArrayBuffer");
      return {data, length};
    }
    bad(i, name, "must be a Uint8Array (or another typed array, DataView or ArrayBuffer)");
  }

  // A probability in [0, 1], as a float.
  float probability(size_t i, const char* name) const {
    const double v = num(i, name);
    if (!(v >= 0.0 && v <= 1.0)) bad(i, name, "must be a probability in [0, 1], got " + fmt(v));
    return static_cast<float>(v);
  }
  // Any integer a JS number holds exactly, cast through int64 as the CPU addon does (dropout seeds).
  uint64_t seed(size_t i, const char* name) const {
    return static_cast<uint64_t>(integer(i, name, -(kTwo53 - 1), kTwo53 - 1));
  }

  // After a kernel launch: a bad configuration or an earlier asynchronous fault shows up here.
  void launched() const { check_launch(); }

 private:
  static constexpr size_t kMaxArgs = 24;

  static std::string fmt(double v) {
    char b[40];
    std::snprintf(b, sizeof b, "%.17g", v);
    return b;
  }

  [[noreturn]] void bad(size_t i, const char* name, const std::string& what) const {
    fail("argument " + std::to_string(i) + " (" + name + ") " + what);
  }

  uintptr_t address(size_t i, const char* name) const {
    const double v = num(i, name);
    if (!(v >= 0 && v < kTwo53) || std::floor(v) != v)
      bad(i, name, "must be a pointer (an integer in [0, 2^53)), got " + fmt(v));
    return static_cast<uintptr_t>(v);
  }

  size_t element_size(napi_typedarray_type t, size_t i, const char* name) const {
    switch (t) {
      case napi_int8_array:
      case napi_uint8_array:
      case napi_uint8_clamped_array:
        return 1;
      case napi_int16_array:
      case napi_uint16_array:
        return 2;
      case napi_int32_array:
      case napi_uint32_array:
      case napi_float32_array:
        return 4;
      case napi_float64_array:
      case napi_bigint64_array:
      case napi_biguint64_array:
        return 8;
      default:
        bad(i, name, "is a typed array of an unknown element type");
    }
  }

  napi_value argv_[kMaxArgs];
};

// "lorakit: <fn>: <message without its own lorakit: prefix>"
void throw_js(napi_env env, const char* fn, const char* what) {
  std::string msg = what ? what : "unknown error";
  if (msg.rfind("lorakit: ", 0) == 0) msg.erase(0, 9);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, nullptr, ("lorakit: " + std::string(fn) + ": " + msg).c_str());
}

// Calls fn with the arguments evaluated left to right (a braced list guarantees the order), so the
// arguments are all checked before stream() says whether there is a GPU at all.
#define LKC_CALL(fn, ...) std::apply(fn, std::tuple{__VA_ARGS__})

// Defines napi_value js_<name>(env, info) taking `nargs` arguments (as `a`) with the body that follows;
// the body may return a value, else the call returns undefined.
#define LKC_JS(name, nargs, ...)                                        \
  napi_value js_##name(napi_env env, napi_callback_info info) {         \
    try {                                                               \
      Args a(env, info, nargs, #name);                                  \
      __VA_ARGS__                                                       \
    } catch (const std::exception& e) {                                 \
      throw_js(env, #name, e.what());                                   \
    } catch (...) {                                                     \
      throw_js(env, #name, "unknown C++ exception");                    \
    }                                                                   \
    return undefined(env);                                              \
  }

// ---- device and memory ---------------------------------------------------------------------------

napi_value js_deviceCount(napi_env env, napi_callback_info) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    count = 0;
  }
  napi_value v;
  if (napi_create_int32(env, count, &v) != napi_ok) return undefined(env);
  return v;
}

LKC_JS(deviceName, 0, {
  (void)a;
  int dev = 0;
  cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaDeviceProp prop;
  cuda_check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  const std::string name = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
  napi_value v;
  if (napi_create_string_utf8(env, name.c_str(), name.size(), &v) != napi_ok) fail("could not create a JS string");
  return v;
})

LKC_JS(alloc, 1, {
  const int64_t bytes = a.count(0, "bytes");
  void* p = lkc::device_alloc(static_cast<size_t>(bytes), stream());
  const uintptr_t u = reinterpret_cast<uintptr_t>(p);
  if (static_cast<double>(u) >= kTwo53) {
    lkc::device_free(p);
    fail("cudaMalloc returned an address a JS number cannot hold");
  }
  return number(env, static_cast<double>(u));
})

LKC_JS(free, 1, { lkc::device_free(a.opt(0, "ptr")); })

// [allocated, reserved, peak allocated, peak reserved]; resetPeak first sets the peaks to the current
// values (as the CPU addon's memoryStats).
LKC_JS(memoryStats, 1, {
  if (a.flag(0, "resetPeak")) lkc::reset_peak();
  const lkc::AllocatorStats s = lkc::allocator_stats();
  const double v[4] = {double(s.allocated), double(s.reserved), double(s.peak_allocated), double(s.peak_reserved)};
  napi_value arr;
  if (napi_create_array_with_length(env, 4, &arr) != napi_ok) fail("could not create a JS array");
  for (uint32_t i = 0; i < 4; i++) napi_set_element(env, arr, i, number(env, v[i]));
  return arr;
})

LKC_JS(emptyCache, 0, {
  (void)a;
  cuda_check(cudaStreamSynchronize(stream()), "cudaStreamSynchronize");  // cached blocks may still be in use by queued work
  lkc::empty_cache();
})

LKC_JS(copyToDevice, 2, {
  void* dst = a.ptr(0, "dst");
  const Args::Bytes src = a.bytes(1, "src");
  if (src.size == 0) return undefined(env);
  cudaStream_t s = stream();
  cuda_check(cudaMemcpyAsync(dst, src.data, src.size, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync (host to device)");
  cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");  // pageable source: src may be reused on return
})

LKC_JS(copyToHost, 2, {
  const Args::Bytes dst = a.bytes(0, "dst");
  const void* src = a.ptr(1, "src");
  if (dst.size == 0) return undefined(env);
  cudaStream_t s = stream();
  cuda_check(cudaMemcpyAsync(dst.data, src, dst.size, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync (device to host)");
  cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
})

LKC_JS(copyDeviceToDevice, 3, {
  void* dst = a.ptr(0, "dst");
  const void* src = a.ptr(1, "src");
  const int64_t bytes = a.count(2, "bytes");
  if (bytes == 0) return undefined(env);
  cuda_check(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice, stream()), "cudaMemcpyAsync (device to device)");
})

LKC_JS(synchronize, 0, {
  (void)a;
  cuda_check(cudaStreamSynchronize(stream()), "cudaStreamSynchronize");
})

// ---- activation offload (offload.cu): pinned host buffers, copies on the copy stream -------------

LKC_JS(pinnedAlloc, 1, {
  const int64_t bytes = a.integer(0, "bytes", 1, kTwo53 - 1);
  copy_stream();  // says why when there is no GPU
  void* p = lkc::pinned_alloc(static_cast<size_t>(bytes));
  const uintptr_t u = reinterpret_cast<uintptr_t>(p);
  if (static_cast<double>(u) >= kTwo53) {
    lkc::pinned_free(p, copy_stream());
    fail("cudaHostAlloc returned an address a JS number cannot hold");
  }
  return number(env, static_cast<double>(u));
})

LKC_JS(pinnedFree, 1, { LKC_CALL(lkc::pinned_free, a.ptr(0, "host"), copy_stream()); })

LKC_JS(offloadAsync, 3, {
  LKC_CALL(lkc::offload_async, a.ptr(0, "host"), a.ptr(1, "dev"), static_cast<size_t>(a.count(2, "bytes")), stream(), copy_stream());
})

LKC_JS(reloadAsync, 3, {
  const int64_t handle = LKC_CALL(lkc::reload_async, a.ptr(0, "dev"), a.ptr<const void>(1, "host"), static_cast<size_t>(a.count(2, "bytes")),
                                  stream(), copy_stream());
  return number(env, static_cast<double>(handle));
})

LKC_JS(waitEvent, 1, { LKC_CALL(lkc::wait_event, a.integer(0, "handle", 0, kTwo53 - 1), stream()); })

// ---- kernel timing (profiling): CUDA events recorded on the main stream --------------------------
// Marks are numbered from 0 since the last timerReset; their events are created once and reused, so a
// profiled step allocates nothing after the first.
std::vector<cudaEvent_t> g_marks;
size_t g_marks_used = 0;

LKC_JS(timerMark, 0, {
  (void)a;
  if (g_marks_used == g_marks.size()) {
    cudaEvent_t e = nullptr;
    cuda_check(cudaEventCreate(&e), "cudaEventCreate");
    g_marks.push_back(e);
  }
  cuda_check(cudaEventRecord(g_marks[g_marks_used], stream()), "cudaEventRecord");
  return number(env, static_cast<double>(g_marks_used++));
})

LKC_JS(timerElapsed, 2, {
  const int64_t from = a.integer(0, "from", 0, kTwo53 - 1), to = a.integer(1, "to", 0, kTwo53 - 1);
  if (static_cast<size_t>(from) >= g_marks_used || static_cast<size_t>(to) >= g_marks_used)
    fail("a mark was not recorded since the last timerReset");
  cuda_check(cudaEventSynchronize(g_marks[to]), "cudaEventSynchronize");
  float ms = 0.f;
  cuda_check(cudaEventElapsedTime(&ms, g_marks[from], g_marks[to]), "cudaEventElapsedTime");
  return number(env, ms);
})

LKC_JS(timerReset, 0, {
  (void)a;
  g_marks_used = 0;
})

// ---- kernel entry points ---------------------------------------------------------------------------
// Their wrappers are generated from the declarations next to the ops (src/ops/spec/) into
// addon_bindings.inc; each calls an lkc:: launcher, or one of these glue functions where an entry point
// does more than one launch.

namespace glue {

// lda, ldb, ldc: leading dimensions in elements (0: packed), for operands that are slices of wider rows.
void gemm(void* c, DType ct, const void* A, DType at, const void* B, DType bt, const void* bias, int64_t m, int64_t n, int64_t k,
          bool trans_a, bool trans_b, float alpha, float beta, int batch, int64_t stride_a, int64_t stride_b, int64_t stride_c,
          int64_t lda, int64_t ldb, int64_t ldc, cudaStream_t s) {
  if (m == 0 || n == 0 || batch == 0) return;  // nothing to write
  // In GemmOpts's member order; f32 inputs keep exact fp32 math (no tf32).
  const lkc::GemmOpts o{trans_a, trans_b, alpha, beta, lda, ldb, ldc, batch, stride_a, stride_b, stride_c, bias, false};
  lkc::gemm(c, ct, A, at, B, bt, m, n, k, o, s);
}

// The kernel always writes dx: without one it gets a scratch.
void rmsnorm_backward(void* dx, float* dw, const void* dy, const void* x, const void* w, DType t, const float* rstd, int64_t rows, int dim,
                      cudaStream_t s) {
  check_rows(static_cast<double>(rows), 8, "rmsnorm");
  if (!dx && !dw) return;
  Scratch tmp;
  if (!dx) {
    tmp.alloc(static_cast<size_t>(rows) * dim * lkc::dtype_size(t));
    dx = tmp.as<void>();
  }
  lkc::rmsnorm_backward(dx, dw, dy, x, w, t, rstd, rows, dim, s);
}

// The kernel writes both dg and du: the one left out goes to a scratch.
void swiglu_backward(void* dg, void* du, const void* dh, const void* g, const void* u, DType t, int64_t n, cudaStream_t s) {
  if ((!dg && !du) || n == 0) return;
  Scratch tmp;
  if (!dg || !du) {
    tmp.alloc(static_cast<size_t>(n) * lkc::dtype_size(t));
    (dg ? du : dg) = tmp.as<void>();
  }
  lkc::swiglu_backward(dg, du, dh, g, u, t, n, s);
}

// lse 0 on ignored rows, as the contract says (the kernel leaves the row's real lse).
void cross_entropy_forward(float* row_loss, float* lse, const void* logits, DType t, const int32_t* targets, int64_t N, int64_t V,
                           cudaStream_t s) {
  check_rows(static_cast<double>(N), 1, "cross-entropy");
  lkc::cross_entropy_forward(row_loss, lse, logits, t, targets, N, V, s);
  check_launch();
  lkc::cross_entropy_zero_ignored(row_loss, lse, targets, N, V, s);
}

// table: a Float64Array of 6 numbers per tensor, [p, m, v, pBf16 (0: none), g, n], all pointers but n.
void adamw_step(const Args::Bytes& table, const float* grad_scale, float lr, float beta1, float beta2, float eps, float weight_decay,
                int step, cudaStream_t s) {
  if (table.size % (6 * sizeof(double)) != 0) fail("argument 0 (table) must be a Float64Array of 6 numbers per tensor");
  const double* t = static_cast<const double*>(table.data);
  const size_t count = table.size / (6 * sizeof(double));
  std::vector<lkc::AdamwTensor> tensors(count);
  const auto pointer = [&](size_t i, size_t field, bool nullable) -> uintptr_t {
    const double v = t[i * 6 + field];
    if (!(v >= 0 && v < kTwo53) || std::floor(v) != v || (!nullable && v == 0))
      fail("table entry " + std::to_string(i) + ", field " + std::to_string(field) + " is not a valid pointer or size");
    return static_cast<uintptr_t>(v);
  };
  for (size_t i = 0; i < count; i++)
    tensors[i] = {reinterpret_cast<float*>(pointer(i, 0, false)), reinterpret_cast<float*>(pointer(i, 1, false)),
                  reinterpret_cast<float*>(pointer(i, 2, false)), reinterpret_cast<lkc::bf16*>(pointer(i, 3, true)),
                  reinterpret_cast<const float*>(pointer(i, 4, false)), static_cast<int64_t>(pointer(i, 5, true))};
  lkc::adamw_step_multi(tensors.data(), static_cast<int>(count), grad_scale, lr, beta1, beta2, eps, weight_decay, step, s);
}

// table: a Float64Array of 6 numbers per segment, [A, B, rank, scale, start, end]; A and B pointers.
void lora_segments(void* y, const void* x, DType t, const Args::Bytes& table, int64_t rows, int64_t in, int64_t out, cudaStream_t s) {
  if (table.size % (6 * sizeof(double)) != 0) fail("argument 3 (table) must be a Float64Array of 6 numbers per segment");
  const double* d = static_cast<const double*>(table.data);
  const size_t count = table.size / (6 * sizeof(double));
  if (count > 2147483647) fail("argument 3 (table) has too many segments");
  const auto integer = [&](size_t i, size_t field, double lo, double hi) -> double {
    const double v = d[i * 6 + field];
    if (!(v >= lo && v <= hi) || std::floor(v) != v)
      fail("table entry " + std::to_string(i) + ", field " + std::to_string(field) + " must be an integer in [" +
           std::to_string(static_cast<long long>(lo)) + ", " + std::to_string(static_cast<long long>(hi)) + "]");
    return v;
  };
  std::vector<lkc::LoraSegment> segments(count);
  for (size_t i = 0; i < count; i++)
    segments[i] = {reinterpret_cast<const void*>(static_cast<uintptr_t>(integer(i, 0, 1, kTwo53 - 1))),
                   reinterpret_cast<const void*>(static_cast<uintptr_t>(integer(i, 1, 1, kTwo53 - 1))), static_cast<float>(d[i * 6 + 3]),
                   static_cast<int>(integer(i, 2, 1, lkc::kLoraSegmentsMaxRank)), static_cast<int>(integer(i, 4, 0, 2147483647.0)),
                   static_cast<int>(integer(i, 5, 0, 2147483647.0))};
  lkc::lora_segments(y, x, t, segments.data(), static_cast<int>(count), rows, in, out, s);
}

}  // namespace glue

#include "addon_bindings.inc"

napi_value init(napi_env env, napi_value exports) {
  init_cuda();
#define LKC_FN(name) {#name, nullptr, js_##name, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  const napi_property_descriptor fns[] = {
      LKC_FN(deviceCount)
      LKC_FN(deviceName)
      LKC_FN(alloc)
      LKC_FN(free)
      LKC_FN(memoryStats)
      LKC_FN(emptyCache)
      LKC_FN(copyToDevice)
      LKC_FN(copyToHost)
      LKC_FN(copyDeviceToDevice)
      LKC_FN(synchronize)
      LKC_FN(pinnedAlloc)
      LKC_FN(pinnedFree)
      LKC_FN(offloadAsync)
      LKC_FN(reloadAsync)
      LKC_FN(waitEvent)
      LKC_FN(timerMark)
      LKC_FN(timerElapsed)
      LKC_FN(timerReset)
      LKC_KERNEL_ENTRIES(LKC_FN)
  };
#undef LKC_FN
  if (napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns) != napi_ok) {
    napi_throw_error(env, nullptr, "lorakit: the CUDA addon could not define its functions");
    return nullptr;
  }
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
