// int8 per-row dequantization to bf16 or f32 (transformers' load_in_8bit weights, bitsandbytes'
// Int8Params):
//   out[r, c] = T((float(q[r, c]) · scale[r]) · float(7.874015718698502e-3))
// exactly as bitsandbytes' int8_vectorwise_dequant and the CPU backend (native/cpu/quant.cc) compute it:
// two fp32 roundings (the multiplier is 1/127 rounded to fp32), then one to bf16 for a bf16 output (f32
// keeps the CPU backend's value bit for bit). Frozen weights: no backward. Grid-stride over the flat
// [rows, cols] with int64 indices, one element per step.
#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

// out [rows, cols] of T <- q [rows, cols], scale [rows]
template <typename T>
__global__ void dequant_int8_kernel(T* out, const int8_t* q, const float* scale, int64_t n, int64_t cols) {
  const float inv127 = static_cast<float>(7.874015718698502e-3);  // the CPU backend's expression
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = tid; i < n; i += stride)
    out[i] = from_f32<T>(__fmul_rn(__fmul_rn(float(q[i]), scale[i / cols]), inv127));
}

}  // namespace

void dequantize_int8(void* out, DType t, const int8_t* q, const float* scale, int64_t rows, int64_t cols, cudaStream_t stream) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, std::string("int8 dequantize writes f32 or bf16, not ") + dtype_name(t) + ".");
  LKC_REQUIRE(rows >= 0 && cols >= 0, "int8 dequantize needs non-negative sizes.");
  if (rows == 0 || cols == 0) return;
  const int64_t n = rows * cols;
  const unsigned grid = grid_for(n, 256);
  if (t == DType::F32)
    dequant_int8_kernel<<<grid, 256, 0, stream>>>(static_cast<float*>(out), q, scale, n, cols);
  else
    dequant_int8_kernel<<<grid, 256, 0, stream>>>(static_cast<bf16*>(out), q, scale, n, cols);
  LKC_CHECK_LAUNCH("dequantize_int8");
}

}  // namespace lkc
