// NF4 and FP4 code tables for the 4-bit kernels (dequant4.cu, quant_gemv.cu): the CPU backend's
// (native/cpu/quant.cc: bitsandbytes' values as fp32; FP4's index 8 is +0). Each including file gets its
// own constant-memory copy.
#pragma once

namespace lkc {
namespace {

__constant__ float kCodes[2][16] = {
    // NF4
    {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f, -0.18477343022823334f,
     -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
     0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f},
    // FP4
    {0.0f, 0.0052083334885537624f, 0.6666666865348816f, 1.0f, 0.3333333432674408f, 0.5f, 0.1666666716337204f, 0.25f, 0.0f,
     -0.0052083334885537624f, -0.6666666865348816f, -1.0f, -0.3333333432674408f, -0.5f, -0.1666666716337204f, -0.25f},
};

}  // namespace
}  // namespace lkc
