// Paged KV cache for serving (inference only), on f32 or bf16 activations with fp32 math:
//   paged_kv_write:  kPool[slots[i]] = k[i], vPool[slots[i]] = v[i]; pools [numSlots, Hkv, D], k, v [N, Hkv, D]
//   paged_attention: out[i, h] = softmax(q[i, h]·Kᵀ·scale)·V over positions 0..rowPos[i] of sequence
//                    rowSeq[i]; position p at slot blockTables[rowSeq[i], p / blockSize]·blockSize + p % blockSize;
//                    rowPos[i] = −1: no positions, the row is zeros (a prefill row answered by flash attention)
//
// Decode rows dominate serving and each reads its whole context once, so attention is paced by how
// fast K and V stream from memory. One block per (row, kv head) serves the group of query heads that
// share the kv head (up to kMaxGroup; a larger group is split over blocks), so each K/V vector is read
// once per group. A block's threads form key groups of LK lanes (LK = D / VEC rounded up to a power
// of two, at most 32); each key group takes one position at a time, its lanes reading consecutive
// 16-byte pieces of that position's K and V rows, and keeps its own online softmax (running max, sum
// and unnormalized output per query head); the key groups are merged in shared memory at the end.
// When rows × kv heads are too few to fill the GPU and the table is long, the positions are split over
// several blocks as well (flash-decoding): each split leaves its max, sum and unnormalized output in
// the workspace and a second kernel merges them. Indices are not checked (they live on the device).
#include <algorithm>

#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxGroup = 8;     // query heads per block: their q and output live in registers
constexpr int kMinSplit = 256;   // positions per split at least: below that the merge costs more than it gains
constexpr int kBlocksPerSm = 4;  // blocks per SM that keep enough loads in flight

// VEC elements to fp32: one 16-byte load (8 bf16 or 4 f32), or one element.
template <int VEC>
__device__ __forceinline__ void loadv(const bf16* p, float (&f)[VEC]) {
  if constexpr (VEC == 8)
    load8(p, f);
  else
    f[0] = __bfloat162float(*p);
}
template <int VEC>
__device__ __forceinline__ void loadv(const float* p, float (&f)[VEC]) {
  if constexpr (VEC == 4) {
    const float4 a = *reinterpret_cast<const float4*>(p);
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w;
  } else {
    f[0] = *p;
  }
}

// Lanes per key group: D / VEC vectors per row, rounded up to a power of two, at most a warp.
__host__ __device__ __forceinline__ int lanes_per_key(int nv) {
  int lk = 1;
  while (lk < nv && lk < 32) lk <<= 1;
  return lk;
}

// How a call is cut into blocks; the workspace size and the launch both follow from it.
struct Plan {
  int gc;       // query heads per block (the template's GC: 1, 2, 4 or 8)
  int chunks;   // blocks over one kv head's group of query heads
  int splits;   // blocks over the positions (1: no merge kernel)
  int64_t split_len;
};

Plan plan(int N, int Hq, int Hkv, int block_size, int max_blocks) {
  Plan p;
  const int G = Hq / Hkv;
  p.gc = G <= 1 ? 1 : G <= 2 ? 2 : G <= 4 ? 4 : kMaxGroup;
  p.chunks = (G + p.gc - 1) / p.gc;
  const int64_t blocks = int64_t(N) * Hkv * p.chunks, target = int64_t(kBlocksPerSm) * num_sms();
  // Contexts are bounded by the table's width: the host does not know the rows' positions.
  const int64_t max_ctx = int64_t(max_blocks) * block_size;
  int64_t splits = 1;
  // Split only a grid that fills less than half the GPU: a fuller one gains little and pays the merge.
  if (2 * blocks < target) splits = std::min((target + blocks - 1) / blocks, (max_ctx + kMinSplit - 1) / kMinSplit);
  splits = std::max<int64_t>(1, std::min<int64_t>(splits, 65535));
  p.split_len = (max_ctx + splits - 1) / splits;
  p.split_len = (p.split_len + 63) / 64 * 64;
  p.splits = int((max_ctx + p.split_len - 1) / p.split_len);
  return p;
}

// One block per (row, kv head, chunk of its query heads) and split of the positions; see the top.
// q, out [N, Hq, D]; kp, vp [slots, Hkv, D]; part_o [N, Hq, splits, D], part_ml [N, Hq, splits, 2]
// (max, sum) when splits > 1.
template <typename T, int VEC, int GC>
__global__ void __launch_bounds__(kThreads) paged_attention_kernel(T* out, float* part_o, float* part_ml, const T* q, const T* kp,
                                                                   const T* vp, const int32_t* tables, const int32_t* row_seq,
                                                                   const int32_t* row_pos, int Hq, int Hkv, int D, int block_size,
                                                                   int max_blocks, int chunks, int splits, int64_t split_len,
                                                                   float scale) {
  constexpr int MAXPER = 8 / VEC;  // vectors per lane: 8 values, enough for D ≤ 256
  __shared__ float sm_m[kThreads][GC], sm_l[kThreads][GC];
  __shared__ float sm_acc[kThreads * 8 * GC];  // [key group][GC][D]: groups × D ≤ kThreads × 8
  __shared__ float sm_max[GC], sm_sum[GC];

  const int64_t bx = blockIdx.x;
  const int chunk = int(bx % chunks), kvh = int((bx / chunks) % Hkv);
  const int64_t row = bx / chunks / Hkv;
  const int G = Hq / Hkv, h0 = kvh * G + chunk * GC, ng = min(GC, G - chunk * GC);
  const int split = blockIdx.y;
  const int64_t L = int64_t(row_pos[row]) + 1, start = int64_t(split) * split_len, end = min(L, start + split_len);
  if (split > 0 && start >= end) return;  // the merge reads only splits that hold positions

  const int nv = D / VEC, lk = lanes_per_key(nv), li = threadIdx.x & (lk - 1), group = threadIdx.x / lk;
  const int ngroups = kThreads / lk;

  float qr[GC][MAXPER][VEC];
#pragma unroll
  for (int g = 0; g < GC; g++)
#pragma unroll
    for (int j = 0; j < MAXPER; j++) {
      const int vi = li + j * lk;
      if (g < ng && vi < nv) {
        loadv<VEC>(q + (row * Hq + h0 + g) * D + vi * VEC, qr[g][j]);
#pragma unroll
        for (int e = 0; e < VEC; e++) qr[g][j][e] *= scale;
      } else {
#pragma unroll
        for (int e = 0; e < VEC; e++) qr[g][j][e] = 0.f;
      }
    }
  float m[GC], l[GC], acc[GC][MAXPER][VEC];
#pragma unroll
  for (int g = 0; g < GC; g++) {
    m[g] = -INFINITY, l[g] = 0.f;
#pragma unroll
    for (int j = 0; j < MAXPER; j++)
#pragma unroll
      for (int e = 0; e < VEC; e++) acc[g][j][e] = 0.f;
  }

  const int32_t* table = tables + int64_t(row_seq[row]) * max_blocks;
  const int64_t slot_stride = int64_t(Hkv) * D;
  // Every thread runs the same iterations (the shuffles need the whole warp); a key group past the
  // end loads nothing and changes nothing.
  for (int64_t base = start; base < end; base += ngroups) {
    const int64_t pos = base + group;
    const bool valid = pos < end;
    float kf[MAXPER][VEC], vf[MAXPER][VEC];
    if (valid) {
      // Positions are below 2³¹ (rowPos is an i32): 32-bit division, several times cheaper than 64-bit.
      const unsigned up = unsigned(pos), bs = unsigned(block_size);
      const int64_t slot = int64_t(table[up / bs]) * block_size + up % bs;
      const T* kr = kp + slot * slot_stride + int64_t(kvh) * D;
      const T* vr = vp + slot * slot_stride + int64_t(kvh) * D;
#pragma unroll
      for (int j = 0; j < MAXPER; j++) {
        const int vi = li + j * lk;
        if (vi < nv) {
          loadv<VEC>(kr + vi * VEC, kf[j]);
          loadv<VEC>(vr + vi * VEC, vf[j]);
        } else {
#pragma unroll
          for (int e = 0; e < VEC; e++) kf[j][e] = vf[j][e] = 0.f;
        }
      }
    } else {
#pragma unroll
      for (int j = 0; j < MAXPER; j++)
#pragma unroll
        for (int e = 0; e < VEC; e++) kf[j][e] = vf[j][e] = 0.f;
    }
#pragma unroll
    for (int g = 0; g < GC; g++) {
      float s = 0.f;
#pragma unroll
      for (int j = 0; j < MAXPER; j++)
#pragma unroll
        for (int e = 0; e < VEC; e++) s = fmaf(qr[g][j][e], kf[j][e], s);
      // Butterfly within the key group: every lane of it ends with the whole dot product.
      for (int o = lk >> 1; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      if (valid && g < ng) {
        if (s > m[g]) {  // a new max: rescale what was summed so far (exp(−inf) = 0 the first time)
          const float a = __expf(m[g] - s);
          l[g] *= a;
#pragma unroll
          for (int j = 0; j < MAXPER; j++)
#pragma unroll
            for (int e = 0; e < VEC; e++) acc[g][j][e] *= a;
          m[g] = s;
        }
        const float pr = __expf(s - m[g]);
        l[g] += pr;
#pragma unroll
        for (int j = 0; j < MAXPER; j++)
#pragma unroll
          for (int e = 0; e < VEC; e++) acc[g][j][e] = fmaf(pr, vf[j][e], acc[g][j][e]);
      }
    }
  }

  // Merge the key groups: the block's max and sum per head, then each group's output rescaled to it.
  if (li == 0)
#pragma unroll
    for (int g = 0; g < GC; g++) sm_m[group][g] = m[g], sm_l[group][g] = l[g];
  __syncthreads();
  if (threadIdx.x < GC) {
    const int g = threadIdx.x;
    float mx = -INFINITY, sum = 0.f;
    for (int i = 0; i < ngroups; i++) mx = fmaxf(mx, sm_m[i][g]);
    for (int i = 0; i < ngroups; i++)
      if (sm_m[i][g] != -INFINITY) sum += sm_l[i][g] * __expf(sm_m[i][g] - mx);
    sm_max[g] = mx, sm_sum[g] = sum;
  }
  __syncthreads();
#pragma unroll
  for (int g = 0; g < GC; g++) {
    const float f = m[g] == -INFINITY ? 0.f : __expf(m[g] - sm_max[g]);
#pragma unroll
    for (int j = 0; j < MAXPER; j++) {
      const int vi = li + j * lk;
      if (vi < nv)
#pragma unroll
        for (int e = 0; e < VEC; e++) sm_acc[(group * GC + g) * D + vi * VEC + e] = acc[g][j][e] * f;
    }
  }
  __syncthreads();
  for (int t = threadIdx.x; t < ng * D; t += kThreads) {
    const int g = t / D, d = t % D;
    float o = 0.f;
    for (int i = 0; i < ngroups; i++) o += sm_acc[(i * GC + g) * D + d];
    const int64_t rh = row * Hq + h0 + g;
    if (splits == 1)
      out[rh * D + d] = from_f32<T>(sm_sum[g] > 0.f ? o / sm_sum[g] : 0.f);
    else
      part_o[(rh * splits + split) * D + d] = o;
  }
  if (splits > 1 && threadIdx.x < ng) {
    const int64_t at = ((row * Hq + h0 + threadIdx.x) * splits + split) * 2;
    part_ml[at] = sm_max[threadIdx.x];
    part_ml[at + 1] = sm_sum[threadIdx.x];
  }
}

// out [N, Hq, D] from the splits' partials: one block per (row, head), threads over D.
template <typename T>
__global__ void paged_merge_kernel(T* out, const float* part_o, const float* part_ml, const int32_t* row_pos, int Hq, int D, int splits,
                                   int64_t split_len) {
  const int64_t rh = blockIdx.x, row = rh / Hq;
  const int64_t L = int64_t(row_pos[row]) + 1;
  const int64_t used = (L + split_len - 1) / split_len;  // splits that hold positions
  const int ns = L <= 0 ? 1 : int(used < splits ? used : splits);
  const float* ml = part_ml + rh * splits * 2;
  float mx = -INFINITY, sum = 0.f;
  for (int s = 0; s < ns; s++) mx = fmaxf(mx, ml[2 * s]);
  for (int s = 0; s < ns; s++)
    if (ml[2 * s] != -INFINITY) sum += ml[2 * s + 1] * __expf(ml[2 * s] - mx);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float o = 0.f;
    for (int s = 0; s < ns; s++)
      if (ml[2 * s] != -INFINITY) o += part_o[(rh * splits + s) * D + d] * __expf(ml[2 * s] - mx);
    out[rh * D + d] = from_f32<T>(sum > 0.f ? o / sum : 0.f);
  }
}

template <typename T, int VEC, int GC>
void launch_gc(T* out, const T* q, const T* kp, const T* vp, const int32_t* tables, const int32_t* row_seq, const int32_t* row_pos,
               int N, int Hq, int Hkv, int D, int block_size, int max_blocks, float scale, const Plan& p, void* workspace,
               cudaStream_t stream) {
  float* part_o = static_cast<float*>(workspace);
  float* part_ml = part_o ? part_o + int64_t(N) * Hq * p.splits * D : nullptr;
  const dim3 grid(unsigned(int64_t(N) * Hkv * p.chunks), unsigned(p.splits));
  paged_attention_kernel<T, VEC, GC><<<grid, kThreads, 0, stream>>>(out, part_o, part_ml, q, kp, vp, tables, row_seq, row_pos, Hq, Hkv,
                                                                     D, block_size, max_blocks, p.chunks, p.splits, p.split_len, scale);
  LKC_CHECK_LAUNCH("paged_attention");
  if (p.splits == 1) return;
  const int threads = std::min(256, (D + 31) / 32 * 32);
  paged_merge_kernel<T><<<unsigned(int64_t(N) * Hq), threads, 0, stream>>>(out, part_o, part_ml, row_pos, Hq, D, p.splits, p.split_len);
  LKC_CHECK_LAUNCH("paged_attention merge");
}

template <typename T, int VEC>
void launch_vec(T* out, const T* q, const T* kp, const T* vp, const int32_t* tables, const int32_t* row_seq, const int32_t* row_pos,
                int N, int Hq, int Hkv, int D, int block_size, int max_blocks, float scale, const Plan& p, void* ws,
                cudaStream_t stream) {
  switch (p.gc) {
    case 1:
      return launch_gc<T, VEC, 1>(out, q, kp, vp, tables, row_seq, row_pos, N, Hq, Hkv, D, block_size, max_blocks, scale, p, ws, stream);
    case 2:
      return launch_gc<T, VEC, 2>(out, q, kp, vp, tables, row_seq, row_pos, N, Hq, Hkv, D, block_size, max_blocks, scale, p, ws, stream);
    case 4:
      return launch_gc<T, VEC, 4>(out, q, kp, vp, tables, row_seq, row_pos, N, Hq, Hkv, D, block_size, max_blocks, scale, p, ws, stream);
    default:
      return launch_gc<T, VEC, kMaxGroup>(out, q, kp, vp, tables, row_seq, row_pos, N, Hq, Hkv, D, block_size, max_blocks, scale, p, ws,
                                          stream);
  }
}

template <typename T>
void launch(void* out, const void* q, const void* kp, const void* vp, const int32_t* tables, const int32_t* row_seq,
            const int32_t* row_pos, int N, int Hq, int Hkv, int D, int block_size, int max_blocks, float scale, const Plan& p, void* ws,
            cudaStream_t stream) {
  constexpr int VEC = 16 / sizeof(T);
  T* o = static_cast<T*>(out);
  const T *qq = static_cast<const T*>(q), *k = static_cast<const T*>(kp), *v = static_cast<const T*>(vp);
  if (D % VEC == 0 && aligned16(q) && aligned16(kp) && aligned16(vp))
    launch_vec<T, VEC>(o, qq, k, v, tables, row_seq, row_pos, N, Hq, Hkv, D, block_size, max_blocks, scale, p, ws, stream);
  else
    launch_vec<T, 1>(o, qq, k, v, tables, row_seq, row_pos, N, Hq, Hkv, D, block_size, max_blocks, scale, p, ws, stream);
}

void check_sizes(int Hq, int Hkv, int D, int block_size, int max_blocks) {
  LKC_REQUIRE(Hkv > 0 && Hq > 0 && Hq % Hkv == 0, "paged attention's query heads must be a positive multiple of its kv heads.");
  LKC_REQUIRE(D >= 1 && D <= 256, "paged attention takes head sizes from 1 to 256.");
  LKC_REQUIRE(block_size >= 1 && max_blocks >= 1, "paged attention's block size and block-table width must be at least 1.");
}

// Rows of `units` U (16-byte pieces, or elements) from k, v [rows, units] to the pools at slots [rows].
template <typename U>
__global__ void paged_kv_write_kernel(U* kp, U* vp, const U* k, const U* v, const int32_t* slots, int64_t rows, int64_t units) {
  const int64_t n = rows * units;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / units, c = i % units, at = int64_t(slots[r]) * units + c;
    kp[at] = k[i];
    vp[at] = v[i];
  }
}

template <typename U>
void launch_write(void* kp, void* vp, const void* k, const void* v, const int32_t* slots, int64_t rows, int64_t row_bytes,
                  cudaStream_t stream) {
  const int64_t units = row_bytes / int64_t(sizeof(U));
  paged_kv_write_kernel<U><<<grid_for(rows * units, 256), 256, 0, stream>>>(static_cast<U*>(kp), static_cast<U*>(vp),
                                                                             static_cast<const U*>(k), static_cast<const U*>(v), slots,
                                                                             rows, units);
  LKC_CHECK_LAUNCH("paged_kv_write");
}

}  // namespace

void paged_kv_write(void* k_pool, void* v_pool, const void* k, const void* v, DType t, const int32_t* slots, int64_t rows, int Hkv,
                    int D, cudaStream_t stream) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, std::string("paged_kv_write takes f32 or bf16 tensors, not ") + dtype_name(t) + ".");
  if (rows <= 0 || Hkv <= 0 || D <= 0) return;
  const int64_t row_bytes = int64_t(Hkv) * D * int64_t(dtype_size(t));
  if (row_bytes % 16 == 0 && aligned16(k_pool) && aligned16(v_pool) && aligned16(k) && aligned16(v))
    launch_write<uint4>(k_pool, v_pool, k, v, slots, rows, row_bytes, stream);
  else if (t == DType::F32)
    launch_write<float>(k_pool, v_pool, k, v, slots, rows, row_bytes, stream);
  else
    launch_write<uint16_t>(k_pool, v_pool, k, v, slots, rows, row_bytes, stream);
}

size_t paged_attention_workspace(int N, int Hq, int Hkv, int D, int block_size, int max_blocks) {
  check_sizes(Hq, Hkv, D, block_size, max_blocks);
  if (N <= 0) return 0;
  const Plan p = plan(N, Hq, Hkv, block_size, max_blocks);
  if (p.splits == 1) return 0;
  return size_t(int64_t(N) * Hq * p.splits * (D + 2)) * sizeof(float);
}

void paged_attention(void* out, const void* q, const void* k_pool, const void* v_pool, DType t, const int32_t* block_tables,
                     const int32_t* row_seq, const int32_t* row_pos, int N, int Hq, int Hkv, int D, int block_size, int max_blocks,
                     float scale, void* workspace, cudaStream_t stream) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, std::string("paged_attention takes f32 or bf16 tensors, not ") + dtype_name(t) + ".");
  check_sizes(Hq, Hkv, D, block_size, max_blocks);
  if (N <= 0) return;
  const Plan p = plan(N, Hq, Hkv, block_size, max_blocks);
  LKC_REQUIRE(p.splits == 1 || workspace, "paged_attention needs the workspace paged_attention_workspace sizes for these sizes.");
  if (t == DType::F32)
    launch<float>(out, q, k_pool, v_pool, block_tables, row_seq, row_pos, N, Hq, Hkv, D, block_size, max_blocks, scale, p, workspace, stream);
  else
    launch<bf16>(out, q, k_pool, v_pool, block_tables, row_seq, row_pos, N, Hq, Hkv, D, block_size, max_blocks, scale, p, workspace, stream);
}

}  // namespace lkc
