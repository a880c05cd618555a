// GEMM through cuBLASLt: bf16 (or f32) operands on tensor cores with fp32 accumulation, any
// transposes, strided batches, optional bias epilogue.
//
// cuBLASLt is loaded with dlopen at first use and declared here (cublaslt_api.h), so the backend
// compiles with nvcc alone (CI has no cuBLAS headers) and links without -lcublasLt; the library comes
// from the CUDA toolkit or from the nvidia-cublas wheel that PyTorch installs.
//
// Row-major ↔ column-major: a row-major C[M, N] is the column-major Cᵀ[N, M] with the same leading
// dimension, and Cᵀ = op(B)ᵀ · op(A)ᵀ. So cuBLASLt gets (m, n, k) = (N, M, K) with B as its first
// operand and A as its second, each transposed exactly when the row-major operand is.
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common.cuh"
#include "cublaslt_api.h"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

struct LtApi {
  void* lib = nullptr;
  std::string error;
  decltype(&cublasLtCreate) create = nullptr;
  decltype(&cublasLtMatmulDescCreate) descCreate = nullptr;
  decltype(&cublasLtMatmulDescDestroy) descDestroy = nullptr;
  decltype(&cublasLtMatmulDescSetAttribute) descSet = nullptr;
  decltype(&cublasLtMatrixLayoutCreate) layoutCreate = nullptr;
  decltype(&cublasLtMatrixLayoutDestroy) layoutDestroy = nullptr;
  decltype(&cublasLtMatrixLayoutSetAttribute) layoutSet = nullptr;
  decltype(&cublasLtMatmulPreferenceCreate) prefCreate = nullptr;
  decltype(&cublasLtMatmulPreferenceDestroy) prefDestroy = nullptr;
  decltype(&cublasLtMatmulPreferenceSetAttribute) prefSet = nullptr;
  decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic = nullptr;
  decltype(&cublasLtMatmul) matmul = nullptr;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_size = size_t(64) << 20;  // Hopper kernels want up to 32 MiB; split-K more
};

template <typename F>
bool sym(void* lib, const char* name, F& out) {
  out = reinterpret_cast<F>(dlsym(lib, name));
  return out != nullptr;
}

LtApi& api() {
  static LtApi a;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("LORAKIT_CUBLASLT");
    const char* names[] = {env, "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"};
    for (const char* n : names) {
      if (n && *n && (a.lib = dlopen(n, RTLD_NOW | RTLD_LOCAL))) break;
    }
    if (!a.lib) {
      a.error = "cuBLASLt was not found (set LORAKIT_CUBLASLT to the path of libcublasLt.so, or add its folder to LD_LIBRARY_PATH)";
      return;
    }
    bool ok = sym(a.lib, "cublasLtCreate", a.create) && sym(a.lib, "cublasLtMatmulDescCreate", a.descCreate) &&
              sym(a.lib, "cublasLtMatmulDescDestroy", a.descDestroy) &&
              sym(a.lib, "cublasLtMatmulDescSetAttribute", a.descSet) &&
              sym(a.lib, "cublasLtMatrixLayoutCreate", a.layoutCreate) &&
              sym(a.lib, "cublasLtMatrixLayoutDestroy", a.layoutDestroy) &&
              sym(a.lib, "cublasLtMatrixLayoutSetAttribute", a.layoutSet) &&
              sym(a.lib, "cublasLtMatmulPreferenceCreate", a.prefCreate) &&
              sym(a.lib, "cublasLtMatmulPreferenceDestroy", a.prefDestroy) &&
              sym(a.lib, "cublasLtMatmulPreferenceSetAttribute", a.prefSet) &&
              sym(a.lib, "cublasLtMatmulAlgoGetHeuristic", a.heuristic) && sym(a.lib, "cublasLtMatmul", a.matmul);
    if (!ok) {
      a.error = "the cuBLASLt library found lacks expected symbols";
      a.lib = nullptr;
      return;
    }
    if (a.create(&a.handle) != CUBLAS_STATUS_SUCCESS) {
      a.error = "cublasLtCreate failed";
      a.lib = nullptr;
      return;
    }
    if (cudaMalloc(&a.workspace, a.workspace_size) != cudaSuccess) {
      (void)cudaGetLastError();
      a.error = "could not allocate the cuBLASLt workspace";
      a.lib = nullptr;
    }
  });
  return a;
}

void lt_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("lorakit: cuBLASLt ") + what + " failed with status " + std::to_string(int(s)) + ".");
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::BF16: return CUDA_R_16BF;
    default: throw std::invalid_argument(std::string("lorakit: gemm does not take ") + dtype_name(t) + " tensors.");
  }
}

// Largest power of two (≤ 256) dividing the address: cuBLASLt picks kernels by operand alignment.
uint32_t alignment(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && (a % al)) al >>= 1;
  return al;
}

struct Key {
  int64_t M, N, K, lda, ldb, ldc, sa, sb, sc;
  int batch, ta, tb, at, bt, ct, bias, tf32;
  uint32_t ala, alb, alc;
  bool operator==(const Key& o) const { return std::memcmp(this, &o, sizeof(Key)) == 0; }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(&k);
    size_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof(Key); i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
  }
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo;
};

std::mutex plans_mu;
std::unordered_map<Key, Plan, KeyHash>& plans() {
  static auto* m = new std::unordered_map<Key, Plan, KeyHash>();
  return *m;
}

cublasLtMatrixLayout_t make_layout(LtApi& L, cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld, int batch, int64_t stride) {
  cublasLtMatrixLayout_t l;
  lt_check(L.layoutCreate(&l, t, uint64_t(rows), uint64_t(cols), ld), "matrix layout");
  if (batch > 1) {
    int32_t bc = batch;
    lt_check(L.layoutSet(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc)), "batch count");
    lt_check(L.layoutSet(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)), "batch stride");
  }
  return l;
}

}  // namespace

bool cublaslt_available() { return api().lib != nullptr; }

void gemm(void* C, DType c_type, const void* A, DType a_type, const void* B, DType b_type, int64_t M, int64_t N, int64_t K,
          const GemmOpts& o, cudaStream_t stream) {
  LtApi& L = api();
  if (!L.lib) throw std::runtime_error("lorakit: " + L.error + ".");
  LKC_REQUIRE(M > 0 && N > 0 && K > 0 && o.batch > 0, "gemm sizes must be positive.");
  LKC_REQUIRE(a_type == b_type, "gemm operands A and B must have the same dtype.");
  LKC_REQUIRE(a_type == DType::BF16 || c_type == DType::F32, "gemm with f32 operands must write an f32 result.");
  LKC_REQUIRE(!o.bias || o.beta == 0.f, "gemm bias needs beta = 0.");
  const int64_t lda = o.lda ? o.lda : (o.trans_a ? M : K);
  const int64_t ldb = o.ldb ? o.ldb : (o.trans_b ? K : N);
  const int64_t ldc = o.ldc ? o.ldc : N;
  LKC_REQUIRE(lda >= (o.trans_a ? M : K) && ldb >= (o.trans_b ? K : N) && ldc >= N, "gemm leading dimensions are too small.");

  Key key{M, N, K, lda, ldb, ldc, o.stride_a, o.stride_b, o.stride_c, o.batch, o.trans_a, o.trans_b, int(a_type), int(b_type),
          int(c_type), o.bias != nullptr, o.tf32 && a_type == DType::F32, alignment(A), alignment(B), alignment(C)};
  Plan plan;
  {
    std::lock_guard<std::mutex> lock(plans_mu);
    auto it = plans().find(key);
    if (it != plans().end()) {
      plan = it->second;
    } else {
      const cudaDataType_t at = cuda_type(a_type), ct = cuda_type(c_type);
      const cublasComputeType_t compute = key.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
      lt_check(L.descCreate(&plan.desc, compute, CUDA_R_32F), "matmul descriptor");
      // cuBLASLt's first operand is row-major B, its second row-major A (see the top of this file).
      int32_t opx = o.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, opy = o.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
      lt_check(L.descSet(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opx, sizeof(opx)), "transa");
      lt_check(L.descSet(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opy, sizeof(opy)), "transb");
      if (o.bias) {
        uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
        lt_check(L.descSet(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)), "epilogue");
      }
      // Column-major shapes as stored: row-major [r, c] with ld is column-major [c, r].
      plan.a = make_layout(L, at, o.trans_b ? K : N, o.trans_b ? N : K, ldb, o.batch, o.stride_b);
      plan.b = make_layout(L, at, o.trans_a ? M : K, o.trans_a ? K : M, lda, o.batch, o.stride_a);
      plan.c = make_layout(L, ct, N, M, ldc, o.batch, o.stride_c);
      if (o.bias) {
        // The bias pointer must be set before the heuristic query (it checks its alignment).
        lt_check(L.descSet(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &o.bias, sizeof(o.bias)), "bias pointer");
      }
      cublasLtMatmulPreference_t pref;
      lt_check(L.prefCreate(&pref), "preference");
      uint64_t ws = L.workspace_size;
      lt_check(L.prefSet(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)), "workspace preference");
      uint32_t al[3] = {key.alb, key.ala, key.alc};  // cuBLASLt's A is our B
      lt_check(L.prefSet(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], 4), "alignment A");
      lt_check(L.prefSet(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], 4), "alignment B");
      lt_check(L.prefSet(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], 4), "alignment C");
      lt_check(L.prefSet(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[2], 4), "alignment D");
      cublasLtMatmulHeuristicResult_t res;
      int found = 0;
      cublasStatus_t s = L.heuristic(L.handle, plan.desc, plan.a, plan.b, plan.c, plan.c, pref, 1, &res, &found);
      L.prefDestroy(pref);
      if (s != CUBLAS_STATUS_SUCCESS || found == 0)
        throw std::runtime_error("lorakit: cuBLASLt has no algorithm for a " + std::to_string(M) + "x" + std::to_string(N) + "x" +
                                 std::to_string(K) + " " + dtype_name(a_type) + " GEMM (status " + std::to_string(int(s)) + ").");
      plan.algo = res.algo;
      plans().emplace(key, plan);
    }
  }
  if (o.bias) lt_check(L.descSet(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &o.bias, sizeof(o.bias)), "bias pointer");
  lt_check(L.matmul(L.handle, plan.desc, &o.alpha, B, plan.a, A, plan.b, &o.beta, C, plan.c, C, plan.c, &plan.algo, L.workspace,
                    L.workspace_size, stream),
           "matmul");
}

}  // namespace lkc
