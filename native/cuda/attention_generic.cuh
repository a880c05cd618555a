// The CUDA-core attention path (attention_generic.cu), shared with the dispatch in attention.cu.
// Semantics, layouts and masking as documented in attention.cu; any D ≤ kAttnMaxD.
#pragma once
#include "lorakit_cuda.h"

namespace lkc {

constexpr int kAttnMaxD = 256;

// out, lse <- q, k, v, segments. One warp per (b, query row, head).
void attention_forward_generic(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int32_t* segments,
                               int B, int Tq, int Tk, int Hq, int Hkv, int D, float scale, cudaStream_t stream);
// delta [B, Hq, Tq] = Σ_d dout · out (fp32), needed by both backward paths.
void attention_delta(float* delta, const bf16* dout, const bf16* out, int B, int Tq, int Hq, int D, cudaStream_t stream);
// dq, dk, dv <- dout, q, k, v, lse, delta (from attention_delta).
void attention_backward_generic(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k, const bf16* v,
                                const float* lse, const float* delta, const int32_t* segments, int B, int Tq, int Tk, int Hq,
                                int Hkv, int D, float scale, cudaStream_t stream);

}  // namespace lkc
