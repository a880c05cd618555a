// Compile-time check that native/cuda/cublaslt_api.h (the declarations gemm.cu uses instead of the
// cuBLAS headers) matches the real cublasLt.h: every enum value, struct size and field offset. Built by
// bench/gpu/run-all.sh wherever cublasLt.h exists (not on CI, which has no cuBLAS headers).
#include <cuda_runtime.h>
#include <library_types.h>

#include <stddef.h>
#include <stdint.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>

#define LKC_ABI_CHECK
namespace mine {
#include "../cublaslt_api.h"
}
#include <cublasLt.h>

#define SAME(x) static_assert(int(mine::x) == int(::x), #x)
SAME(CUBLAS_STATUS_SUCCESS);
SAME(CUBLAS_STATUS_NOT_SUPPORTED);
SAME(CUBLAS_OP_N);
SAME(CUBLAS_OP_T);
SAME(CUBLAS_COMPUTE_32F);
SAME(CUBLAS_COMPUTE_32F_FAST_TF32);
SAME(CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT);
SAME(CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET);
SAME(CUBLASLT_MATMUL_DESC_TRANSA);
SAME(CUBLASLT_MATMUL_DESC_TRANSB);
SAME(CUBLASLT_MATMUL_DESC_EPILOGUE);
SAME(CUBLASLT_MATMUL_DESC_BIAS_POINTER);
SAME(CUBLASLT_EPILOGUE_BIAS);
SAME(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES);
SAME(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES);
SAME(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES);
SAME(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES);
SAME(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES);
static_assert(sizeof(mine::cublasLtMatmulAlgo_t) == sizeof(::cublasLtMatmulAlgo_t), "algo size");
static_assert(sizeof(mine::cublasLtMatmulHeuristicResult_t) == sizeof(::cublasLtMatmulHeuristicResult_t), "heuristic result size");
static_assert(offsetof(mine::cublasLtMatmulHeuristicResult_t, workspaceSize) == offsetof(::cublasLtMatmulHeuristicResult_t, workspaceSize),
              "workspaceSize offset");
static_assert(offsetof(mine::cublasLtMatmulHeuristicResult_t, state) == offsetof(::cublasLtMatmulHeuristicResult_t, state), "state offset");

int main() {
  std::printf("RESULT abi: PASS (cublaslt_api.h matches cublasLt.h %d.%d.%d)\n", CUBLAS_VER_MAJOR, CUBLAS_VER_MINOR, CUBLAS_VER_PATCH);
  return 0;
}
