// SwiGLU gating of the Llama MLP: out = silu(gate) · up, silu(g) = g·σ(g) = g / (1 + e^−g).
// Backward needs gate and up (saved by the op); σ is recomputed:
//   dup = dy · silu(g),   dgate = dy · up · σ(g) · (1 + g·(1 − σ(g)))
#include "napi_util.h"
#include "parallel.h"
#include "simd.h"

namespace lk {
namespace {
namespace v = simd;
constexpr int64_t kGrain = 1 << 14;

// out [n]  <-  gate [n], up [n]
void swiglu_forward(float* out, const float* g, const float* u, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    const v::F one = v::set1(1.0f);
    for (int64_t i = b; i < e; i += v::kLanes) {
      v::F gv = v::load(g + i, e - i), uv = v::load(u + i, e - i);
      v::F silu = gv / (one + v::exp(-gv));
      v::store(out + i, silu * uv, e - i);
    }
  });
}

// dgate [n] (optional), dup [n] (optional)  <-  dy [n], gate [n], up [n]
void swiglu_backward(float* dg, float* du, const float* dy, const float* g, const float* u, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    const v::F one = v::set1(1.0f);
    for (int64_t i = b; i < e; i += v::kLanes) {
      v::F gv = v::load(g + i, e - i), uv = v::load(u + i, e - i), dv = v::load(dy + i, e - i);
      v::F sig = one / (one + v::exp(-gv));
      if (du) v::store(du + i, dv * (gv * sig), e - i);
      if (dg) v::store(dg + i, dv * uv * (sig * v::fma(gv, one - sig, one)), e - i);
    }
  });
}
}  // namespace

LK_ENTRY(js_swiglu_forward, 4, {
  int64_t n = a.int64(3);
  swiglu_forward(a.f32(0, n), a.f32(1, n), a.f32(2, n), n);
})
// (dgate | null, dup | null, dy, gate, up, n)
LK_ENTRY(js_swiglu_backward, 6, {
  int64_t n = a.int64(5);
  float* dg = a.absent(0) ? nullptr : a.f32(0, n);
  float* du = a.absent(1) ? nullptr : a.f32(1, n);
  swiglu_backward(dg, du, a.f32(2, n), a.f32(3, n), a.f32(4, n), n);
})

LK_EXPORT("swigluForwardF32", js_swiglu_forward);
LK_EXPORT("swigluBackwardF32", js_swiglu_backward);

}  // namespace lk
