// What this CPU can run, for choosing a kernel path (native/cpu/isa/isas.json) at load time:
//   cpuInfo() -> { arch, vendor, family, model, stepping, flags: string[] }
// x86-64: cpuid, with AVX state enabled by the OS checked through xgetbv (a CPU may have AVX-512 that
// the kernel does not save, in which case using it faults). arm64: the Linux hwcaps; Advanced SIMD
// is architectural on AArch64, so `asimd` is always reported. Flag names follow /proc/cpuinfo.
// This file is built into every path's addon but uses no SIMD itself: the JavaScript loader asks the
// portable addon, which runs anywhere, before it loads any other.
#include <string>
#include <vector>

#include "napi_util.h"

#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace lk {
namespace {

struct CpuInfo {
  std::string arch, vendor;
  int family = 0, model = 0, stepping = 0;
  std::vector<std::string> flags;
};

#if defined(__x86_64__)
uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

CpuInfo detect() {
  CpuInfo info;
  info.arch = "x64";
  unsigned a = 0, b = 0, c = 0, d = 0;
  __get_cpuid(0, &a, &b, &c, &d);
  unsigned max_leaf = a;
  char vendor[13] = {};
  __builtin_memcpy(vendor, &b, 4);
  __builtin_memcpy(vendor + 4, &d, 4);
  __builtin_memcpy(vendor + 8, &c, 4);
  info.vendor = vendor;
  __get_cpuid(1, &a, &b, &c, &d);
  int base_family = (a >> 8) & 0xf, base_model = (a >> 4) & 0xf;
  info.family = base_family == 0xf ? base_family + ((a >> 20) & 0xff) : base_family;
  info.model = base_family == 0x6 || base_family == 0xf ? base_model | (((a >> 16) & 0xf) << 4) : base_model;
  info.stepping = a & 0xf;
  bool osxsave = c & (1u << 27);
  uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  bool os_avx = (xcr0 & 0x6) == 0x6;             // XMM and YMM state
  bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
  auto add = [&](bool has, const char* name) {
    if (has) info.flags.push_back(name);
  };
  add(c & (1u << 20), "sse4_2");
  add(os_avx && (c & (1u << 28)), "avx");
  add(os_avx && (c & (1u << 12)), "fma");
  add(os_avx && (c & (1u << 29)), "f16c");
  if (max_leaf >= 7) {
    __get_cpuid_count(7, 0, &a, &b, &c, &d);
    unsigned b7 = b, c7 = c, d7 = d;
    add(os_avx && (b7 & (1u << 5)), "avx2");
    add(b7 & (1u << 8), "bmi2");
    add(os_avx512 && (b7 & (1u << 16)), "avx512f");
    add(os_avx512 && (b7 & (1u << 17)), "avx512dq");
    add(os_avx512 && (b7 & (1u << 30)), "avx512bw");
    add(os_avx512 && (b7 & (1u << 31)), "avx512vl");
    add(os_avx512 && (c7 & (1u << 11)), "avx512_vnni");
    add(os_avx512 && (d7 & (1u << 23)), "avx512_fp16");
    __get_cpuid_count(7, 1, &a, &b, &c, &d);
    add(os_avx512 && (a & (1u << 5)), "avx512_bf16");
    add(os_avx && (a & (1u << 4)), "avx_vnni");
  }
  return info;
}
#elif defined(__aarch64__)
CpuInfo detect() {
  CpuInfo info;
  info.arch = "arm64";
  info.flags.push_back("asimd");
#if defined(__linux__)
  unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
  auto add = [&](bool has, const char* name) {
    if (has) info.flags.push_back(name);
  };
  add(hw & (1ul << 9), "fphp");
  add(hw & (1ul << 10), "asimdhp");
  add(hw & (1ul << 20), "asimddp");
  add(hw & (1ul << 22), "sve");
  add(hw2 & (1ul << 14), "bf16");
  add(hw2 & (1ul << 13), "i8mm");
  unsigned long midr = 0;
  if (hw & (1ul << 11)) __asm__("mrs %0, MIDR_EL1" : "=r"(midr));  // HWCAP_CPUID: the kernel emulates the read
  info.vendor = midr ? std::to_string((midr >> 24) & 0xff) : "";
  info.family = static_cast<int>((midr >> 16) & 0xf);  // architecture field
  info.model = static_cast<int>((midr >> 4) & 0xfff);  // part number
  info.stepping = static_cast<int>(midr & 0xf);
#endif
  return info;
}
#else
CpuInfo detect() {
  CpuInfo info;
  info.arch = "other";
  return info;
}
#endif

napi_value str(napi_env env, const std::string& s) {
  napi_value v;
  napi_create_string_utf8(env, s.c_str(), s.size(), &v);
  return v;
}

}  // namespace

LK_ENTRY(js_cpu_info, 0, {
  CpuInfo info = detect();
  napi_value obj, flags;
  napi_create_object(env, &obj);
  napi_set_named_property(env, obj, "arch", str(env, info.arch));
  napi_set_named_property(env, obj, "vendor", str(env, info.vendor));
  napi_set_named_property(env, obj, "family", number(env, info.family));
  napi_set_named_property(env, obj, "model", number(env, info.model));
  napi_set_named_property(env, obj, "stepping", number(env, info.stepping));
  napi_create_array_with_length(env, info.flags.size(), &flags);
  for (size_t i = 0; i < info.flags.size(); i++) napi_set_element(env, flags, static_cast<uint32_t>(i), str(env, info.flags[i]));
  napi_set_named_property(env, obj, "flags", flags);
  return obj;
})

// The kernel path this addon was compiled for (scripts/build-native.mjs defines LK_ISA_NAME).
LK_ENTRY(js_isa, 0, { return str(env, LK_ISA_NAME); })

LK_EXPORT("cpuInfo", js_cpu_info);
LK_EXPORT("isa", js_isa);

}  // namespace lk
