// The CUDA-core attention path (attention_generic.cu), shared with the dispatch in attention.cu.
// Semantics, layouts and masking as documented in attention.cu; any D ≤ kAttnMaxD. Every tensor but
// lse, delta (f32) and segments (i32) is of dtype t: F32, or else BF16 (attention.cu checks t and the sizes).
#pragma once
#include "lorakit_cuda.h"

namespace lkc {

constexpr int kAttnMaxD = 256;

// out, lse <- q, k, v, segments. One warp per (b, query row, head).
void attention_forward_generic(void* out, float* lse, const void* q, const void* k, const void* v, DType t, const int32_t* segments,
                               int B, int Tq, int Tk, int Hq, int Hkv, int D, float scale, cudaStream_t stream);
// delta [B, Hq, Tq] = Σ_d dout · out (fp32), needed by both backward paths.
void attention_delta(float* delta, const void* dout, const void* out, DType t, int B, int Tq, int Hq, int D, cudaStream_t stream);
// dq, dk, dv <- dout, q, k, v, lse, delta (from attention_delta).
void attention_backward_generic(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k, const void* v, DType t,
                                const float* lse, const float* delta, const int32_t* segments, int B, int Tq, int Tk, int Hq, int Hkv,
                                int D, float scale, cudaStream_t stream);

}  // namespace lkc
