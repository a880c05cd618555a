// 4-bit dequantization to bf16 or f32, NF4 (code 0) or FP4 (code 1): QLoRA's frozen base weights,
// dequantized one weight at a time into a reused buffer of the compute dtype right before its GEMM (see
// bench/gpu/NOTES.md for the versions of this loop). bitsandbytes layout: element i sits in byte i / 2,
// high nibble first; blocks of `blocksize` elements share one absmax; value = table[nibble] · absmax in
// fp32, then rounded once to bf16 (f32 output keeps the product exactly as the CPU backend computes it).
// With double quantization absmax[j] = code2[absmax_q[j]] · absmax2[j / blocksize2] + offset (two
// roundings, no FMA).
// The tables (quant4_codes.cuh) are the CPU backend's. One thread per 4 packed bytes = 8 values per
// step, one 16-byte store (a warp stores 512 contiguous bytes), the table in shared memory; a scalar loop
// covers unaligned pointers and block sizes that are not multiples of 8.
#include "common.cuh"
#include "lorakit_cuda.h"
#include "quant4_codes.cuh"

namespace lkc {
namespace {

// out [n] of T <- packed [(n+1)/2], absmax [ceil(n / blocksize)] (DQ: absmax_q + absmax2 + code2 + offset)
template <typename T, bool DQ>
__global__ void dequant4_kernel(T* out, const uint8_t* packed, const float* absmax, const uint8_t* absmax_q, const float* absmax2,
                                const float* code2, float offset, int code, int64_t n, int blocksize, int blocksize2, bool vec) {
  __shared__ float lut[16];
  __shared__ float code_s[DQ ? 256 : 1];
  if (threadIdx.x < 16) lut[threadIdx.x] = kCodes[code][threadIdx.x];
  if (DQ)
    for (int i = threadIdx.x; i < 256; i += blockDim.x) code_s[i] = code2[i];
  __syncthreads();
  auto scale_of = [&](int64_t block) -> float {
    if (DQ) return __fadd_rn(__fmul_rn(code_s[absmax_q[block]], absmax2[block / blocksize2]), offset);
    return absmax[block];
  };
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t n8 = vec ? n / 8 * 8 : 0;  // vec: blocksize % 8 == 0, so 8 values never straddle two blocks
#pragma unroll 4
  for (int64_t i = tid * 8; i < n8; i += stride * 8) {
    const uint32_t w = *reinterpret_cast<const uint32_t*>(packed + i / 2);
    const float s = scale_of(i / blocksize);
    float f[8];
#pragma unroll
    for (int b = 0; b < 4; b++) {
      const uint32_t byte = (w >> (8 * b)) & 0xff;
      f[2 * b] = lut[byte >> 4] * s;
      f[2 * b + 1] = lut[byte & 15] * s;
    }
    store8(out + i, f);
  }
  for (int64_t i = n8 + tid; i < n; i += stride) {
    const uint8_t byte = packed[i / 2];
    out[i] = from_f32<T>(lut[(i & 1) ? (byte & 15) : (byte >> 4)] * scale_of(i / blocksize));
  }
}

void check(DType t, int code, int blocksize) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, std::string("4-bit dequantize writes f32 or bf16, not ") + dtype_name(t) + ".");
  LKC_REQUIRE(code == 0 || code == 1, "4-bit code must be 0 (NF4) or 1 (FP4).");
  LKC_REQUIRE(blocksize > 0, "4-bit block size must be positive.");
}

// The vector path: 8 values per step stored with 16-byte accesses (out + i, i % 8 == 0, stays 16-byte
// aligned in either dtype), 4-byte packed loads, and 8 values never straddling two blocks.
bool vec_ok(const void* out, const uint8_t* packed, int blocksize) {
  return aligned16(out) && (reinterpret_cast<uintptr_t>(packed) & 3) == 0 && blocksize % 8 == 0;
}

template <typename T, bool DQ>
void launch(T* out, const uint8_t* packed, const float* absmax, const uint8_t* absmax_q, const float* absmax2, const float* code2,
            float offset, int code, int64_t n, int blocksize, int blocksize2, cudaStream_t stream) {
  const bool vec = vec_ok(out, packed, blocksize);
  dequant4_kernel<T, DQ><<<grid_for(vec ? (n + 7) / 8 : n, 256), 256, 0, stream>>>(out, packed, absmax, absmax_q, absmax2, code2, offset,
                                                                                  code, n, blocksize, blocksize2, vec);
}

}  // namespace

void dequantize_4bit(void* out, DType t, const uint8_t* packed, const float* absmax, int code, int64_t n, int blocksize,
                     cudaStream_t stream) {
  check(t, code, blocksize);
  if (n <= 0) return;
  if (t == DType::F32)
    launch<float, false>(static_cast<float*>(out), packed, absmax, nullptr, nullptr, nullptr, 0.f, code, n, blocksize, 1, stream);
  else
    launch<bf16, false>(static_cast<bf16*>(out), packed, absmax, nullptr, nullptr, nullptr, 0.f, code, n, blocksize, 1, stream);
  LKC_CHECK_LAUNCH("dequantize_4bit");
}

void dequantize_4bit_dq(void* out, DType t, const uint8_t* packed, const uint8_t* absmax_q, const float* absmax2, const float* code2,
                        float offset, int code, int64_t n, int blocksize, int blocksize2, cudaStream_t stream) {
  check(t, code, blocksize);
  LKC_REQUIRE(blocksize2 > 0, "4-bit double-quantization block size must be positive.");
  if (n <= 0) return;
  if (t == DType::F32)
    launch<float, true>(static_cast<float*>(out), packed, nullptr, absmax_q, absmax2, code2, offset, code, n, blocksize, blocksize2,
                        stream);
  else
    launch<bf16, true>(static_cast<bf16*>(out), packed, nullptr, absmax_q, absmax2, code2, offset, code, n, blocksize, blocksize2,
                       stream);
  LKC_CHECK_LAUNCH("dequantize_4bit_dq");
}

}  // namespace lkc
