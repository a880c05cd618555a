// SwiGLU gating of the Llama MLP: out = silu(gate) · up, silu(g) = g·σ(g) = g / (1 + e^−g).
// Backward needs gate and up (saved by the op); σ is recomputed:
//   dup = dy · silu(g),   dgate = dy · up · σ(g) · (1 + g·(1 − σ(g)))
#include "napi_util.h"
#include "parallel.h"
#include "vmath.h"

namespace lk {
namespace {
constexpr int64_t kGrain = 1 << 14;

// out [n]  <-  gate [n], up [n]
void swiglu_forward(float* out, const float* g, const float* u, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    int64_t i = b;
#ifdef __AVX512F__
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i < e; i += 16) {
      __mmask16 m = tail_mask(e - i);
      __m512 gv = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i);
      __m512 silu = _mm512_div_ps(gv, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
      _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(silu, uv));
    }
#endif
    for (; i < e; i++) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  });
}

// dgate [n] (optional), dup [n] (optional)  <-  dy [n], gate [n], up [n]
void swiglu_backward(float* dg, float* du, const float* dy, const float* g, const float* u, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    int64_t i = b;
#ifdef __AVX512F__
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i < e; i += 16) {
      __mmask16 m = tail_mask(e - i);
      __m512 gv = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i), dv = _mm512_maskz_loadu_ps(m, dy + i);
      __m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
      if (du) _mm512_mask_storeu_ps(du + i, m, _mm512_mul_ps(dv, _mm512_mul_ps(gv, sig)));
      if (dg) {
        __m512 dsilu = _mm512_mul_ps(sig, _mm512_fmadd_ps(gv, _mm512_sub_ps(one, sig), one));
        _mm512_mask_storeu_ps(dg + i, m, _mm512_mul_ps(_mm512_mul_ps(dv, uv), dsilu));
      }
    }
#endif
    for (; i < e; i++) {
      const float sig = 1.0f / (1.0f + std::exp(-g[i]));
      if (du) du[i] = dy[i] * (g[i] * sig);
      if (dg) dg[i] = dy[i] * u[i] * (sig * (1.0f + g[i] * (1.0f - sig)));
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
