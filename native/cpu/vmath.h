// Vector math shared by the NN kernels: an AVX-512 expf (Cephes polynomial, ~1 ulp) and horizontal
// reductions. Softmax, SiLU and sigmoid spend their time in exp; libm's scalar expf does not vectorize
// without -ffast-math, so the AVX-512 path computes 16 lanes at once. Other CPUs use std::exp.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __AVX512F__
// GCC 12 warns falsely about _mm512_undefined_ps() inside the intrinsics once they are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#endif

namespace lk {

#ifdef __AVX512F__
// exp(x) for 16 floats. NaN stays NaN; large x gives inf, very negative x gives 0.
inline __m512 exp16(__m512 x) {
  // max/min return their second operand when either is NaN, so x goes second to keep a NaN.
  x = _mm512_min_ps(_mm512_set1_ps(88.7228394f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
  // x = n ln2 + r, |r| <= ln2/2, with ln2 split in two so n*ln2_hi is exact.
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  __m512 y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
  y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, n);  // y * 2^n, handling overflow to inf and underflow to 0
}

// Mask of the first `rem` lanes (0 < rem <= 16), for loop tails.
inline __mmask16 tail_mask(int64_t rem) { return static_cast<__mmask16>(rem >= 16 ? 0xffff : (1u << rem) - 1u); }
#endif

}  // namespace lk
