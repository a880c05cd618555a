// Rotary position embedding, Hugging Face "rotate_half" layout, forward and backward, on f32 or bf16
// activations (fp32 math, f32 tables). Per head, with half the rotary half-width (dims ≥ 2·half pass
// through unrotated, for partial rotary):
//   forward:  out[i] = x[i]·cos[p,i] − x[i+half]·sin[p,i],  out[i+half] = x[i+half]·cos[p,i] + x[i]·sin[p,i]
//   backward: the transpose, a rotation by −θ (sin → −sin). Nothing is saved: backward needs only the
//   tables and positions. Positions come per token, so packed sequences restart at 0 wherever they start.
// One warp per token and group of 4 heads; lanes cover consecutive i, so loads and stores are
// coalesced. In place (out == x) is allowed: each lane reads its pair before writing it.
#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

// Two adjacent elements to/from fp32: one 4-byte access for bf16, one 8-byte access for f32.
__device__ __forceinline__ float2 load2(const bf16* p) { return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p)); }
__device__ __forceinline__ float2 load2(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ void store2(bf16* p, float a, float b) { *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(a, b); }
__device__ __forceinline__ void store2(float* p, float a, float b) { *reinterpret_cast<float2*>(p) = make_float2(a, b); }

// Heads per warp: the lanes' table values are loaded once for that many heads of a token.
constexpr int kHeadsPerWarp = 4;

// out, x [rows, H, D] of T; cos, sin [P, half] f32; pos [rows]. sign = +1 forward, −1 backward.
// One warp per (row, group of kHeadsPerWarp heads): lanes walk the pairs i < half (coalesced), each
// lane's cos/sin read once for the group, then the passed-through dims.
template <typename T, bool PAIRS>
__global__ void rope_kernel(T* out, const T* x, const float* cos, const float* sin, const int32_t* pos, int64_t rows, int H, int D,
                            int half, float sign) {
  const int lane = threadIdx.x & 31;
  const int groups = (H + kHeadsPerWarp - 1) / kHeadsPerWarp;
  const int64_t wg = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;  // row · groups + group
  if (wg >= rows * groups) return;
  const int64_t row = wg / groups, p = pos[row];
  const int h0 = int(wg % groups) * kHeadsPerWarp, nh = min(kHeadsPerWarp, H - h0);
  const float *cr = cos + p * half, *sr = sin + p * half;
  const int64_t base0 = (row * H + h0) * D;
  if (PAIRS) {  // two adjacent i per lane: 2-element and 8-byte table accesses
    for (int i = 2 * lane; i < half; i += 64) {
      const float2 c = *reinterpret_cast<const float2*>(cr + i), s0 = *reinterpret_cast<const float2*>(sr + i);
      const float sx = sign * s0.x, sy = sign * s0.y;
#pragma unroll
      for (int h = 0; h < kHeadsPerWarp; h++) {
        if (h >= nh) break;
        const int64_t base = base0 + int64_t(h) * D;
        const float2 a = load2(x + base + i), b = load2(x + base + i + half);
        store2(out + base + i, a.x * c.x - b.x * sx, a.y * c.y - b.y * sy);
        store2(out + base + i + half, b.x * c.x + a.x * sx, b.y * c.y + a.y * sy);
      }
    }
  } else {
    for (int i = lane; i < half; i += 32) {
      const float c = cr[i], s = sign * sr[i];
      for (int h = 0; h < nh; h++) {
        const int64_t base = base0 + int64_t(h) * D;
        const float x1 = to_f32(x[base + i]), x2 = to_f32(x[base + i + half]);
        out[base + i] = from_f32<T>(x1 * c - x2 * s);
        out[base + i + half] = from_f32<T>(x2 * c + x1 * s);
      }
    }
  }
  if (out != x)
    for (int h = 0; h < nh; h++)
      for (int i = 2 * half + lane; i < D; i += 32) out[base0 + int64_t(h) * D + i] = x[base0 + int64_t(h) * D + i];
}

// cos, sin [P, half] <- inv_freq [half]
__global__ void rope_tables_kernel(float* cos, float* sin, const float* inv_freq, int P, int half, float attn_scale) {
  const int64_t n = int64_t(P) * half;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < n; t += int64_t(gridDim.x) * blockDim.x) {
    const int i = int(t % half), p = int(t / half);
    const float a = float(p) * inv_freq[i];  // fp32 product, as torch forms the angles
    float s, c;
    sincosf(a, &s, &c);
    cos[t] = c * attn_scale;
    sin[t] = s * attn_scale;
  }
}

template <typename T>
void launch(T* out, const T* x, const float* cos, const float* sin, const int32_t* pos, int64_t rows, int H, int D, int half, float sign,
            cudaStream_t stream) {
  // Pairs: element offsets base + i and base + i + half are even, so 2·sizeof(T) alignment of out and x suffices.
  constexpr uintptr_t pair_mask = 2 * sizeof(T) - 1;
  const bool pairs = half % 2 == 0 && D % 2 == 0 && (reinterpret_cast<uintptr_t>(out) & pair_mask) == 0 &&
                     (reinterpret_cast<uintptr_t>(x) & pair_mask) == 0 && (reinterpret_cast<uintptr_t>(cos) & 7) == 0 &&
                     (reinterpret_cast<uintptr_t>(sin) & 7) == 0;
  const unsigned grid = ceil_div(rows * ((H + kHeadsPerWarp - 1) / kHeadsPerWarp), 8);  // 8 warps per block
  if (pairs)
    rope_kernel<T, true><<<grid, 256, 0, stream>>>(out, x, cos, sin, pos, rows, H, D, half, sign);
  else
    rope_kernel<T, false><<<grid, 256, 0, stream>>>(out, x, cos, sin, pos, rows, H, D, half, sign);
  LKC_CHECK_LAUNCH("rope");
}

void dispatch(void* out, const void* x, DType t, const float* cos, const float* sin, const int32_t* pos, int64_t rows, int H, int D,
              int half, float sign, cudaStream_t stream) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, std::string("rope takes f32 or bf16 tensors, not ") + dtype_name(t) + ".");
  LKC_REQUIRE(half > 0 && 2 * half <= D, "rope's rotary half-width must be in [1, head_dim / 2].");
  if (rows <= 0 || H <= 0) return;
  if (t == DType::F32)
    launch(static_cast<float*>(out), static_cast<const float*>(x), cos, sin, pos, rows, H, D, half, sign, stream);
  else
    launch(static_cast<bf16*>(out), static_cast<const bf16*>(x), cos, sin, pos, rows, H, D, half, sign, stream);
}

}  // namespace

void rope_forward(void* out, const void* x, DType t, const float* cos, const float* sin, const int32_t* pos, int64_t rows, int H, int D,
                  int half, cudaStream_t stream) {
  dispatch(out, x, t, cos, sin, pos, rows, H, D, half, 1.f, stream);
}

void rope_backward(void* dx, const void* dy, DType t, const float* cos, const float* sin, const int32_t* pos, int64_t rows, int H, int D,
                   int half, cudaStream_t stream) {
  dispatch(dx, dy, t, cos, sin, pos, rows, H, D, half, -1.f, stream);
}

void rope_tables(float* cos, float* sin, const float* inv_freq, int P, int half, float attn_scale, cudaStream_t stream) {
  if (P <= 0 || half <= 0) return;
  rope_tables_kernel<<<grid_for(int64_t(P) * half, 256), 256, 0, stream>>>(cos, sin, inv_freq, P, half, attn_scale);
  LKC_CHECK_LAUNCH("rope_tables");
}

}  // namespace lkc
