// Broadcast binary ops: out[i] = a[i] op b[i mod nb], op = + or ·, for a bias or a per-channel scale
// repeated over rows (nb = the row length) and for same-size tensors (nb = n). fp32 math, one rounding
// to the storage dtype. Grid-stride loops with int64 indices; 8 elements per thread per step with
// 16-byte accesses when every pointer is 16-byte aligned and nb % 8 == 0 (then 8 consecutive i share
// one row of b), else one element per step. Backward of add is the identity to a and a row sum to b
// (sum_rows); of mul, a product and a row sum of a product: no kernels of their own.
#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

constexpr int kBlock = 256;

struct AddOp {
  __device__ __forceinline__ float operator()(float x, float y) const { return x + y; }
};
struct MulOp {
  __device__ __forceinline__ float operator()(float x, float y) const { return x * y; }
};

// out [n] <- a [n], b [nb]
template <typename T, typename Op>
__global__ void broadcast_kernel(T* out, const T* a, const T* b, int64_t n, int64_t nb, bool vec, Op op) {
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  const bool same = nb == n;
  const int64_t n8 = vec ? n / 8 * 8 : 0;
  for (int64_t i = tid * 8; i < n8; i += stride * 8) {
    const int64_t j = same ? i : i % nb;  // nb % 8 == 0: j .. j+7 stay inside one row of b
    float x[8], y[8];
    load8(a + i, x);
    load8(b + j, y);
#pragma unroll
    for (int k = 0; k < 8; k++) x[k] = op(x[k], y[k]);
    store8(out + i, x);
  }
  for (int64_t i = n8 + tid; i < n; i += stride) {
    const int64_t j = same ? i : i % nb;
    out[i] = from_f32<T>(op(to_f32(a[i]), to_f32(b[j])));
  }
}

template <typename Op>
void launch(const char* name, void* out, const void* a, const void* b, DType t, int64_t n, int64_t nb, cudaStream_t stream) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, std::string(name) + " takes f32 or bf16 tensors, not " + dtype_name(t) + ".");
  LKC_REQUIRE(n >= 0, std::string(name) + " needs a non-negative element count.");
  if (n == 0) return;
  LKC_REQUIRE(nb > 0 && n % nb == 0,
              std::string(name) + ": the broadcast operand's " + std::to_string(nb) + " elements must divide the " + std::to_string(n) + ".");
  const bool vec = aligned16(out) && aligned16(a) && aligned16(b) && (nb == n || nb % 8 == 0);
  const unsigned grid = grid_for(vec ? (n + 7) / 8 : n, kBlock);
  if (t == DType::F32)
    broadcast_kernel<<<grid, kBlock, 0, stream>>>(static_cast<float*>(out), static_cast<const float*>(a), static_cast<const float*>(b),
                                                  n, nb, vec, Op{});
  else
    broadcast_kernel<<<grid, kBlock, 0, stream>>>(static_cast<bf16*>(out), static_cast<const bf16*>(a), static_cast<const bf16*>(b), n,
                                                  nb, vec, Op{});
  LKC_CHECK_LAUNCH(name);
}

}  // namespace

void add_broadcast(void* out, const void* a, const void* b, DType t, int64_t n, int64_t nb, cudaStream_t stream) {
  if (n > 0 && nb == n) {
    add(out, a, b, t, n, stream);
    return;
  }
  launch<AddOp>("add_broadcast", out, a, b, t, n, nb, stream);
}

void mul_broadcast(void* out, const void* a, const void* b, DType t, int64_t n, int64_t nb, cudaStream_t stream) {
  launch<MulOp>("mul_broadcast", out, a, b, t, n, nb, stream);
}

}  // namespace lkc
