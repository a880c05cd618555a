// Causal attention on CUDA cores: one warp per query row (forward, dQ) or key row (dK, dV). Serves any
// head dimension up to 256 (tiny models), every f32 call (the tensor-core path is bf16 only) and
// cross-checks the tensor-core path in attention.cu, whose header comment states the semantics. Every
// kernel takes q, k, v, out, dout, dq, dk, dv of one dtype T (f32 or bf16); fp32 math.
#include "attention_generic.cuh"
#include "common.cuh"

namespace lkc {
namespace {

// delta [B, Hq, Tq] = Σ_d dout · out (fp32), one warp per (b, i, h).
template <typename T>
__global__ void attn_delta_kernel(float* delta, const T* dout, const T* out, int B, int Tq, int Hq, int D) {
  const int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (w >= int64_t(B) * Tq * Hq) return;
  const int h = int(w % Hq);
  const int64_t bi = w / Hq;  // b · Tq + i
  const T *a = dout + w * D, *o = out + w * D;
  float s = 0.f;
  for (int d = lane; d < D; d += 32) s += to_f32(a[d]) * to_f32(o[d]);
  s = warp_sum(s);
  if (lane == 0) delta[(bi / Tq * Hq + h) * Tq + bi % Tq] = s;
}

// ---- CUDA-core path (any D ≤ 256) ------------------------------------------------------------------
constexpr int kMaxD = kAttnMaxD, kGW = 4;  // warps per block

// The query row a warp of the forward or dQ kernel owns: warp w = (b · Tq + i) · Hq + h.
struct QueryRow {
  int b, i, h;
  int p;               // its key position, Tk − Tq + i
  int sp;              // its segment id (0: a padded row)
  const int32_t* sb;   // segments of batch row b [Tk]
  int64_t kv_offset;   // element offset of (b, key 0, its kv head) in k and v
};

// acc[t] += Σ over the keys j0 + jj ≤ last of this 32-key step: weight(lane jj) · rows[j0 + jj][lane + 32t].
// Lane jj holds key j0 + jj's weight; last is the same for the whole warp.
template <typename T>
__device__ __forceinline__ void add_weighted_rows(float (&acc)[kMaxD / 32], float weight, const T* rows, int j0, int last,
                                                  int64_t stride, int D, int lane) {
  for (int jj = 0; jj < 32 && j0 + jj <= last; jj++) {
    const float wj = __shfl_sync(0xffffffffu, weight, jj);
    if (wj == 0.f) continue;
    const T* r = rows + int64_t(j0 + jj) * stride;
#pragma unroll
    for (int t = 0; t < kMaxD / 32; t++)
      if (lane + 32 * t < D) acc[t] += wj * to_f32(r[lane + 32 * t]);
  }
}

__device__ __forceinline__ QueryRow query_row(int64_t w, const int32_t* seg, int Tq, int Tk, int Hq, int Hkv, int D) {
  QueryRow r;
  r.h = int(w % Hq), r.i = int((w / Hq) % Tq), r.b = int(w / (int64_t(Hq) * Tq));
  r.p = Tk - Tq + r.i;
  r.sb = seg + int64_t(r.b) * Tk;
  r.sp = r.sb[r.p];
  r.kv_offset = int64_t(r.b) * Tk * Hkv * D + int64_t(r.h / (Hq / Hkv)) * D;
  return r;
}

// out, lse <- q, k, v, segments: one warp per (b, i, h); lanes own keys for scores, dims for outputs.
template <typename T>
__global__ void __launch_bounds__(kGW * 32) attn_fwd_generic(T* out, float* lse, const T* q, const T* k, const T* v, const int32_t* seg,
                                                             int B, int Tq, int Tk, int Hq, int Hkv, int D, float scale) {
  __shared__ float qsm[kGW][kMaxD];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t w = int64_t(blockIdx.x) * kGW + warp;
  if (w >= int64_t(B) * Tq * Hq) return;
  const QueryRow row = query_row(w, seg, Tq, Tk, Hq, Hkv, D);
  const int b = row.b, i = row.i, h = row.h, p = row.p, sp = row.sp;
  const int32_t* sb = row.sb;
  const T* qr = q + w * D;
  for (int d = lane; d < D; d += 32) qsm[warp][d] = to_f32(qr[d]);
  __syncwarp();
  const int64_t ks = int64_t(Hkv) * D;
  const T* kb = k + row.kv_offset;
  const T* vb = v + row.kv_offset;
  float o[kMaxD / 32];
#pragma unroll
  for (int t = 0; t < kMaxD / 32; t++) o[t] = 0.f;
  float m = -INFINITY, l = 0.f;
  for (int j0 = 0; sp != 0 && j0 <= p; j0 += 32) {
    const int j = j0 + lane;
    float s = -INFINITY;
    if (j <= p && sb[j] == sp) {
      float acc = 0.f;
      for (int d = 0; d < D; d++) acc += qsm[warp][d] * to_f32(kb[j * ks + d]);
      s = acc * scale;
    }
    const float mn = fmaxf(m, warp_max(s));
    if (mn == -INFINITY) continue;
    const float alpha = __expf(m - mn), pj = __expf(s - mn);
    l = l * alpha + warp_sum(pj);
    m = mn;
#pragma unroll
    for (int t = 0; t < kMaxD / 32; t++) o[t] *= alpha;
    add_weighted_rows(o, pj, vb, j0, p, ks, D, lane);
  }
  const float inv = l > 0.f ? 1.f / l : 0.f;
  T* orow = out + w * D;
#pragma unroll
  for (int t = 0; t < kMaxD / 32; t++)
    if (lane + 32 * t < D) orow[lane + 32 * t] = from_f32<T>(o[t] * inv);
  if (lane == 0) lse[(int64_t(b) * Hq + h) * Tq + i] = l > 0.f ? m + logf(l) : -INFINITY;
}

// dq <- dout, q, k, v, lse, delta: one warp per (b, i, h).
template <typename T>
__global__ void __launch_bounds__(kGW * 32) attn_bwd_dq_generic(T* dq, const T* dout, const T* q, const T* k, const T* v,
                                                                const float* lse, const float* delta, const int32_t* seg, int B, int Tq,
                                                                int Tk, int Hq, int Hkv, int D, float scale) {
  __shared__ float qsm[kGW][kMaxD], dosm[kGW][kMaxD];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t w = int64_t(blockIdx.x) * kGW + warp;
  if (w >= int64_t(B) * Tq * Hq) return;
  const QueryRow row = query_row(w, seg, Tq, Tk, Hq, Hkv, D);
  const int b = row.b, i = row.i, h = row.h, p = row.p, sp = row.sp;
  const int32_t* sb = row.sb;
  for (int d = lane; d < D; d += 32) qsm[warp][d] = to_f32(q[w * D + d]), dosm[warp][d] = to_f32(dout[w * D + d]);
  __syncwarp();
  const int64_t ks = int64_t(Hkv) * D;
  const T* kb = k + row.kv_offset;
  const T* vb = v + row.kv_offset;
  const float L = lse[(int64_t(b) * Hq + h) * Tq + i], dl = delta[(int64_t(b) * Hq + h) * Tq + i];
  float acc[kMaxD / 32];
#pragma unroll
  for (int t = 0; t < kMaxD / 32; t++) acc[t] = 0.f;
  for (int j0 = 0; sp != 0 && j0 <= p; j0 += 32) {
    const int j = j0 + lane;
    float ds = 0.f;
    if (j <= p && sb[j] == sp) {
      float s = 0.f, dp = 0.f;
      for (int d = 0; d < D; d++) {
        s += qsm[warp][d] * to_f32(kb[j * ks + d]);
        dp += dosm[warp][d] * to_f32(vb[j * ks + d]);
      }
      const float pj = __expf(s * scale - L);
      ds = pj * (dp - dl);
    }
    add_weighted_rows(acc, ds, kb, j0, p, ks, D, lane);
  }
#pragma unroll
  for (int t = 0; t < kMaxD / 32; t++)
    if (lane + 32 * t < D) dq[w * D + lane + 32 * t] = from_f32<T>(acc[t] * scale);
}

// dk, dv <- dout, q, k, v, lse, delta: one warp per (b, j, kv head), over every query head of its group.
template <typename T>
__global__ void __launch_bounds__(kGW * 32) attn_bwd_dkv_generic(T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                                                                 const float* lse, const float* delta, const int32_t* seg, int B, int Tq,
                                                                 int Tk, int Hq, int Hkv, int D, float scale) {
  __shared__ float ksm[kGW][kMaxD], vsm[kGW][kMaxD];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t w = int64_t(blockIdx.x) * kGW + warp;
  if (w >= int64_t(B) * Tk * Hkv) return;
  const int kvh = int(w % Hkv), j = int((w / Hkv) % Tk), b = int(w / (int64_t(Hkv) * Tk));
  const int off = Tk - Tq, group = Hq / Hkv;
  const int32_t* sb = seg + int64_t(b) * Tk;
  const int sj = sb[j];
  for (int d = lane; d < D; d += 32) ksm[warp][d] = to_f32(k[w * D + d]), vsm[warp][d] = to_f32(v[w * D + d]);
  __syncwarp();
  const int64_t qs = int64_t(Hq) * D;
  float ak[kMaxD / 32], av[kMaxD / 32];
#pragma unroll
  for (int t = 0; t < kMaxD / 32; t++) ak[t] = av[t] = 0.f;
  for (int hh = 0; sj != 0 && hh < group; hh++) {
    const int h = kvh * group + hh;
    const T* qb = q + int64_t(b) * Tq * qs + int64_t(h) * D;
    const T* db = dout + int64_t(b) * Tq * qs + int64_t(h) * D;
    const float* lb = lse + (int64_t(b) * Hq + h) * Tq;
    const float* deb = delta + (int64_t(b) * Hq + h) * Tq;
    for (int i0 = max(0, j - off); i0 < Tq; i0 += 32) {
      const int i = i0 + lane;
      float pi = 0.f, ds = 0.f;
      if (i < Tq && sb[off + i] == sj) {
        float s = 0.f, dp = 0.f;
        for (int d = 0; d < D; d++) {
          s += ksm[warp][d] * to_f32(qb[i * qs + d]);
          dp += vsm[warp][d] * to_f32(db[i * qs + d]);
        }
        pi = __expf(s * scale - lb[i]);
        ds = pi * (dp - deb[i]);
      }
      for (int ii = 0; ii < 32 && i0 + ii < Tq; ii++) {
        const float pb = __shfl_sync(0xffffffffu, pi, ii), db_ = __shfl_sync(0xffffffffu, ds, ii);
        if (pb == 0.f && db_ == 0.f) continue;
        const T *qr = qb + int64_t(i0 + ii) * qs, *dr = db + int64_t(i0 + ii) * qs;
#pragma unroll
        for (int t = 0; t < kMaxD / 32; t++)
          if (lane + 32 * t < D) {
            av[t] += pb * to_f32(dr[lane + 32 * t]);
            ak[t] += db_ * to_f32(qr[lane + 32 * t]);
          }
      }
    }
  }
#pragma unroll
  for (int t = 0; t < kMaxD / 32; t++)
    if (lane + 32 * t < D) {
      dk[w * D + lane + 32 * t] = from_f32<T>(ak[t] * scale);
      dv[w * D + lane + 32 * t] = from_f32<T>(av[t]);
    }
}

template <typename T>
void forward_as(T* out, float* lse, const T* q, const T* k, const T* v, const int32_t* segments, int B, int Tq, int Tk, int Hq, int Hkv,
                int D, float scale, cudaStream_t stream) {
  const int64_t rows = int64_t(B) * Tq * Hq;
  attn_fwd_generic<<<ceil_div(rows, kGW), kGW * 32, 0, stream>>>(out, lse, q, k, v, segments, B, Tq, Tk, Hq, Hkv, D, scale);
  LKC_CHECK_LAUNCH("attention_forward");
}

template <typename T>
void backward_as(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const float* lse, const float* delta,
                 const int32_t* segments, int B, int Tq, int Tk, int Hq, int Hkv, int D, float scale, cudaStream_t stream) {
  const int64_t rows = int64_t(B) * Tq * Hq;
  attn_bwd_dq_generic<<<ceil_div(rows, kGW), kGW * 32, 0, stream>>>(dq, dout, q, k, v, lse, delta, segments, B, Tq, Tk, Hq, Hkv, D,
                                                                    scale);
  LKC_CHECK_LAUNCH("attention_backward_dq");
  const int64_t krows = int64_t(B) * Tk * Hkv;
  attn_bwd_dkv_generic<<<ceil_div(krows, kGW), kGW * 32, 0, stream>>>(dk, dv, dout, q, k, v, lse, delta, segments, B, Tq, Tk, Hq, Hkv,
                                                                      D, scale);
  LKC_CHECK_LAUNCH("attention_backward_dkv");
}

}  // namespace

void attention_forward_generic(void* out, float* lse, const void* q, const void* k, const void* v, DType t, const int32_t* segments,
                               int B, int Tq, int Tk, int Hq, int Hkv, int D, float scale, cudaStream_t stream) {
  if (t == DType::F32)
    forward_as(static_cast<float*>(out), lse, static_cast<const float*>(q), static_cast<const float*>(k), static_cast<const float*>(v),
               segments, B, Tq, Tk, Hq, Hkv, D, scale, stream);
  else
    forward_as(static_cast<bf16*>(out), lse, static_cast<const bf16*>(q), static_cast<const bf16*>(k), static_cast<const bf16*>(v),
               segments, B, Tq, Tk, Hq, Hkv, D, scale, stream);
}

void attention_delta(float* delta, const void* dout, const void* out, DType t, int B, int Tq, int Hq, int D, cudaStream_t stream) {
  const int64_t rows = int64_t(B) * Tq * Hq;
  const unsigned grid = ceil_div(rows * 32, 256);
  if (t == DType::F32)
    attn_delta_kernel<<<grid, 256, 0, stream>>>(delta, static_cast<const float*>(dout), static_cast<const float*>(out), B, Tq, Hq, D);
  else
    attn_delta_kernel<<<grid, 256, 0, stream>>>(delta, static_cast<const bf16*>(dout), static_cast<const bf16*>(out), B, Tq, Hq, D);
  LKC_CHECK_LAUNCH("attention_delta");
}

void attention_backward_generic(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k, const void* v, DType t,
                                const float* lse, const float* delta, const int32_t* segments, int B, int Tq, int Tk, int Hq, int Hkv,
                                int D, float scale, cudaStream_t stream) {
  if (t == DType::F32)
    backward_as(static_cast<float*>(dq), static_cast<float*>(dk), static_cast<float*>(dv), static_cast<const float*>(dout),
                static_cast<const float*>(q), static_cast<const float*>(k), static_cast<const float*>(v), lse, delta, segments, B, Tq, Tk,
                Hq, Hkv, D, scale, stream);
  else
    backward_as(static_cast<bf16*>(dq), static_cast<bf16*>(dk), static_cast<bf16*>(dv), static_cast<const bf16*>(dout),
                static_cast<const bf16*>(q), static_cast<const bf16*>(k), static_cast<const bf16*>(v), lse, delta, segments, B, Tq, Tk,
                Hq, Hkv, D, scale, stream);
}

}  // namespace lkc
