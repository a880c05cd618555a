// The range reduction and polynomial of lk::simd::exp, shared by the SIMD paths (each path's simd.h
// includes this after its primitives and applies y * 2^n its own way). Cephes' expf, ~1 ulp:
// x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so n*ln2_hi is exact), e^r ~ 1 + r + r^2 p(r).
#pragma once

namespace lk::simd {

struct ExpParts {
  F y;  // e^r, in [0.7, 1.42]
  F n;  // integral, in [-150, 128]
};

LK_INLINE ExpParts exp_parts(F x) {
  // min/max return their second operand on NaN, so x goes second to keep a NaN.
  x = min(set1(88.7228394f), max(set1(-104.0f), x));
  F n = round(x * set1(1.44269504088896341f));
  F r = fnma(n, set1(0.693359375f), x);
  r = fnma(n, set1(-2.12194440e-4f), r);
  F p = set1(1.9875691500e-4f);
  p = fma(p, r, set1(1.3981999507e-3f));
  p = fma(p, r, set1(8.3334519073e-3f));
  p = fma(p, r, set1(4.1665795894e-2f));
  p = fma(p, r, set1(1.6666665459e-1f));
  p = fma(p, r, set1(5.0000001201e-1f));
  return {fma(p, r * r, r) + set1(1.0f), n};
}

}  // namespace lk::simd
