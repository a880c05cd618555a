// Rotary position embedding, HF "rotate_half" layout. Per head, with h = rotary half-width:
//   out[i]   = x[i]·cos[p,i] − x[i+h]·sin[p,i]
//   out[i+h] = x[i+h]·cos[p,i] + x[i]·sin[p,i]        (i < h; dims ≥ 2h pass through unrotated)
// Backward rotates by −θ (sin → −sin). Nothing is saved: backward needs only the tables and positions.
#include <algorithm>
#include <string>

#include "napi_util.h"
#include "parallel.h"
#include "simd.h"

namespace lk {
namespace {
namespace v = simd;

// f(i, k) over [b, e): whole vectors (k = kLanes, a constant once inlined, so the loads and stores
// are unmasked and the one-lane path is a plain loop the compiler vectorizes), then one tail k < kLanes.
template <class Fn>
LK_INLINE void for_lanes(int64_t b, int64_t e, Fn&& f) {
  int64_t i = b;
  for (; i + v::kLanes <= e; i += v::kLanes) f(i, int64_t{v::kLanes});
  if (i < e) f(i, e - i);
}
// out, x [rows, H, Dh]; cos, sin [P, half]; pos [rows] (rows = B·T). sign = +1 forward, −1 backward.
void rope_rotate(float* out, const float* x, const float* cos, const float* sin, const int32_t* pos, int64_t rows, int64_t H,
                 int64_t Dh, int64_t half, float sign) {
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(H * Dh, 1));
  parallel_for(rows, grain, [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; r++) {
      const float* c = cos + static_cast<int64_t>(pos[r]) * half;
      const float* s = sin + static_cast<int64_t>(pos[r]) * half;
      const v::F sg = v::set1(sign);
      for (int64_t h = 0; h < H; h++) {
        const float* xr = x + (r * H + h) * Dh;
        float* o = out + (r * H + h) * Dh;
        for_lanes(0, half, [&](int64_t i, int64_t k) {
          const v::F x1 = v::load(xr + i, k), x2 = v::load(xr + half + i, k);
          const v::F ci = v::load(c + i, k), si = sg * v::load(s + i, k);
          v::store(o + i, x1 * ci - x2 * si, k);
          v::store(o + half + i, x2 * ci + x1 * si, k);
        });
        for_lanes(2 * half, Dh, [&](int64_t i, int64_t k) { v::store(o + i, v::load(xr + i, k), k); });
      }
    }
  });
}

void check_positions(const int32_t* pos, int64_t rows, int64_t P) {
  for (int64_t r = 0; r < rows; r++)
    if (pos[r] < 0 || pos[r] >= P)
      throw ArgError("position " + std::to_string(pos[r]) + " is outside the rope tables [0, " + std::to_string(P) + ")");
}

// (out, x, cos, sin, positions, rows, H, Dh, half, P, sign)
napi_value rope_entry(Args& a, float sign) {
  int64_t rows = a.int64(5), H = a.int64(6), Dh = a.int64(7), half = a.int64(8), P = a.int64(9);
  if (2 * half > Dh) throw ArgError("rotary width exceeds the head dimension");
  const int32_t* pos = a.i32(4, rows);
  check_positions(pos, rows, P);
  rope_rotate(a.f32(0, rows * H * Dh), a.f32(1, rows * H * Dh), a.f32(2, P * half), a.f32(3, P * half), pos, rows, H, Dh, half,
              sign);
  return undefined(a.env);
}
}  // namespace

LK_ENTRY(js_rope_forward, 10, { return rope_entry(a, 1.0f); })
LK_ENTRY(js_rope_backward, 10, { return rope_entry(a, -1.0f); })

LK_EXPORT("ropeForwardF32", js_rope_forward);
LK_EXPORT("ropeBackwardF32", js_rope_backward);

}  // namespace lk
