// N-API glue shared by every CPU kernel file.
//
// Each kernel file registers its entry points with LK_EXPORT("name", fn); addon.cc exports everything
// registered, so adding a kernel means adding a file, never editing a central table. Each entry point's
// TypeScript signature is declared with its op (src/ops/spec/); the addon's `arities` (name -> argument
// count) lets test/bindings.test.ts check the two agree.
// Calling convention (as llm.c): outputs first, then inputs, then sizes and attributes. Tensors arrive
// as typed arrays over native memory; the TypeScript side has already checked shapes and dtypes, and
// Args re-checks kinds and lengths so a wrong call throws instead of reading out of bounds.
#pragma once
#include <node_api.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace lk {

struct Export {
  const char* name;
  napi_callback fn;
  size_t arity;  // arguments it takes (LK_ENTRY's nargs)
};
std::vector<Export>& exports();

struct Registrar {
  Registrar(const char* name, napi_callback fn, size_t arity) { exports().push_back({name, fn, arity}); }
};

#define LK_CONCAT2(a, b) a##b
#define LK_CONCAT(a, b) LK_CONCAT2(a, b)
#define LK_EXPORT(name, fn) [[maybe_unused]] static ::lk::Registrar LK_CONCAT(lk_registrar_, __LINE__)(name, fn, fn##_arity)

// Thrown inside a kernel entry point; LK_ENTRY turns it into a JS exception.
struct ArgError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Args {
 public:
  Args(napi_env env, napi_callback_info info, size_t expected);
  napi_env env;
  float* f32(size_t i, size_t min_len = 0);
  uint16_t* u16(size_t i, size_t min_len = 0);  // bf16 or f16 bits
  int32_t* i32(size_t i, size_t min_len = 0);
  uint8_t* u8(size_t i, size_t min_len = 0);
  double num(size_t i);
  int64_t int64(size_t i);
  bool boolean(size_t i);
  // True when argument i is null or undefined (optional tensors such as a bias).
  bool absent(size_t i);
  napi_value raw(size_t i) { return argv_[i]; }

 private:
  void* typed(size_t i, napi_typedarray_type want, const char* what, size_t min_len);
  std::vector<napi_value> argv_;
};

napi_value undefined(napi_env env);
napi_value number(napi_env env, double v);

}  // namespace lk

// Defines a JS entry point `fname` taking `nargs` arguments (available as `a`, an Args) with the body
// that follows; ArgError/std::exception become a JS Error naming the entry point.
#define LK_ENTRY(fname, nargs, ...)                                                  \
  [[maybe_unused]] static constexpr size_t fname##_arity = nargs;                    \
  static napi_value fname(napi_env env, napi_callback_info info) {                   \
    try {                                                                            \
      ::lk::Args a(env, info, nargs);                                                \
      __VA_ARGS__                                                                    \
    } catch (const std::exception& e) {                                              \
      napi_throw_error(env, nullptr, (std::string(#fname ": ") + e.what()).c_str()); \
    }                                                                                \
    return ::lk::undefined(env);                                                     \
  }
