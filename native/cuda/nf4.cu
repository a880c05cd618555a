// NF4 dequantization to bf16 (QLoRA's frozen base weights), bitsandbytes layout: element i sits in byte
// i / 2, high nibble first; blocks of `blocksize` elements share one absmax; value = NF4[code] · absmax,
// computed in fp32 and rounded once to bf16, as bitsandbytes' dequantize_blockwise does. With double
// quantization the absmax are themselves 8-bit codes of a 256-entry table (code2) in blocks of
// blocksize2, plus an offset: absmax[j] = code2[q[j]] · absmax2[j / blocksize2] + offset.
// This is the dequantize-to-bf16 tile kernel of the quantized GEMM path: the linear dequantizes one
// weight into a reused bf16 buffer and runs the bf16 cuBLASLt GEMM on it (about 10% over the GEMM for
// the 8B shapes; see bench/RESULTS.md). Frozen weights: no backward (the input gradient goes through
// the GEMM with the same dequantized tile).
// One thread per 4 packed bytes (8 values) per step: a warp loads 128 contiguous bytes and stores 512.
#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

__constant__ float kNF4[16] = {-1.0f,
                               -0.6961928009986877f,
                               -0.5250730514526367f,
                               -0.39491748809814453f,
                               -0.28444138169288635f,
                               -0.18477343022823334f,
                               -0.09105003625154495f,
                               0.0f,
                               0.07958029955625534f,
                               0.16093020141124725f,
                               0.24611230194568634f,
                               0.33791524171829224f,
                               0.44070982933044434f,
                               0.5626170039176941f,
                               0.7229568362236023f,
                               1.0f};

// out [n] bf16 <- packed [(n+1)/2], absmax [ceil(n / blocksize)] (DQ: absmax_q + absmax2 + code2 + offset)
template <bool DQ>
__global__ void nf4_dequantize_kernel(bf16* out, const uint8_t* packed, const float* absmax, const uint8_t* absmax_q,
                                      const float* absmax2, const float* code2, float offset, int64_t n, int blocksize,
                                      int blocksize2) {
  __shared__ float lut[16];
  __shared__ float code_s[DQ ? 256 : 1];
  if (threadIdx.x < 16) lut[threadIdx.x] = kNF4[threadIdx.x];  // shared: codes differ per lane, constant memory would serialize
  if (DQ)
    for (int i = threadIdx.x; i < 256; i += blockDim.x) code_s[i] = code2[i];
  __syncthreads();
  auto scale_of = [&](int64_t block) -> float {
    // Two roundings, as bitsandbytes dequantizes the absmax first and then adds the offset (no FMA).
    if (DQ) return __fadd_rn(__fmul_rn(code_s[absmax_q[block]], absmax2[block / blocksize2]), offset);
    return absmax[block];
  };
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t n8 = n / 8 * 8;  // blocksize is a power of two ≥ 16: 8 values never straddle two blocks
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
    out[i] = __float2bfloat16_rn(lut[(i & 1) ? (byte & 15) : (byte >> 4)] * scale_of(i / blocksize));
  }
}

void check(bf16* out, const uint8_t* packed, int64_t n, int blocksize) {
  LKC_REQUIRE(blocksize >= 16 && blocksize <= 4096 && (blocksize & (blocksize - 1)) == 0,
              "NF4 block size must be a power of two from 16 to 4096.");
  LKC_REQUIRE(aligned16(out) && (reinterpret_cast<uintptr_t>(packed) & 3) == 0,
              "NF4 dequantize needs a 16-byte aligned output and a 4-byte aligned packed input.");
  (void)n;
}

}  // namespace

void nf4_dequantize(bf16* out, const uint8_t* packed, const float* absmax, int64_t n, int blocksize, cudaStream_t stream) {
  check(out, packed, n, blocksize);
  if (n <= 0) return;
  nf4_dequantize_kernel<false><<<grid_for((n + 7) / 8, 256), 256, 0, stream>>>(out, packed, absmax, nullptr, nullptr, nullptr,
                                                                                  0.f, n, blocksize, 1);
  LKC_CHECK_LAUNCH("nf4_dequantize");
}

void nf4_dequantize_dq(bf16* out, const uint8_t* packed, const uint8_t* absmax_q, const float* absmax2, const float* code2,
                       float offset, int64_t n, int blocksize, int blocksize2, cudaStream_t stream) {
  check(out, packed, n, blocksize);
  LKC_REQUIRE(blocksize2 > 0, "NF4 double-quantization block size must be positive.");
  if (n <= 0) return;
  nf4_dequantize_kernel<true><<<grid_for((n + 7) / 8, 256), 256, 0, stream>>>(out, packed, nullptr, absmax_q, absmax2, code2,
                                                                                 offset, n, blocksize, blocksize2);
  LKC_CHECK_LAUNCH("nf4_dequantize_dq");
}

}  // namespace lkc
