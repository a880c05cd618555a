// SGD step on flat fp32 buffers (LoRA master weights), torch.optim.SGD with dampening 0 and no
// nesterov, the semantics of the CPU backend (native/cpu/optim.cc):
//   d = g + wd·p;  buf = momentum·buf + d, d = buf (when a buffer is given);  p = p − lr·d
// The roundings are torch's, written out so the compiler cannot fuse differently: g.add(p, alpha=wd)
// and p.add_(d, alpha=−lr) are one fma each (torch's add-with-alpha kernels), buf.mul_(momentum)
// .add_(d) is two roundings. First step: the caller passes a zeroed buffer, and 0·momentum + d = d
// is torch's buf = clone(d). Memory-bound: one pass, grid-stride, int64 indices. No backward.
#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

// p [n], buf [n] (nullable) updated <- g [n]
__global__ void sgd_kernel(float* p, float* buf, const float* g, int64_t n, float neg_lr, float wd, float momentum, bool decay) {
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = tid; i < n; i += stride) {
    const float pi = p[i];
    float d = decay ? __fmaf_rn(wd, pi, g[i]) : g[i];
    if (buf) {
      d = __fadd_rn(__fmul_rn(buf[i], momentum), d);
      buf[i] = d;
    }
    p[i] = __fmaf_rn(neg_lr, d, pi);
  }
}

}  // namespace

void sgd_step(float* p, float* buf, const float* g, int64_t n, float lr, float weight_decay, float momentum, cudaStream_t stream) {
  if (n <= 0) return;
  sgd_kernel<<<grid_for(n, 256), 256, 0, stream>>>(p, buf, g, n, -lr, weight_decay, momentum, weight_decay != 0.f);
  LKC_CHECK_LAUNCH("sgd_step");
}

}  // namespace lkc
