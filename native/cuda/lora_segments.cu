// The LoRA term of many adapters over one batch of rows (serving), as Punica's SGMV and S-LoRA:
//   y[i] += s_g · (x[i]·A_gᵀ)·B_gᵀ   for every row i of segment g,
// in two launches for all segments. The work is cut into tiles of up to kTileRows rows of one segment,
// so each factor row is read once per tile. Shrink: h[i, j] = x[i]·A_g[j] for j < rank_g, one warp per
// (tile, j), the `in` dimension split across the warp's lanes in 8-element chunks (16-byte loads),
// summed in fp32 and rounded to t (the training path's bf16 low-rank activation). Expand: y[i, o] +=
// s_g · h[i]·B_g[o], each thread a few outputs o of every row of its tile (B_g's rows read once per
// tile, h staged in shared memory), fp32 sums and one rounding into y.
//
// The segment descriptors and tiles of a decoding step (up to kInlineSegments segments and
// kInlineTiles tiles: every decode batch of up to 64 rows, and prefills of up to 512 rows in few
// segments) travel by value as a kernel parameter, so a call is two launches and nothing else; a
// larger table is packed on the host into a pinned staging slot and copied to a stream-ordered
// scratch with one asynchronous copy. A decoding step calls this once per linear layer (112 times for
// a 16-layer model), where the copy, its event and the staging bookkeeping cost more than the math.
//
// Row independence: a row's sums run in one fixed order (lane l sums chunks l, l+32, … in order, the
// lanes are combined by one butterfly; the expand sums j = 0 … rank−1) that depends only on `in` and
// the rank, never on the other rows of its tile or batch, nor on whether the 16-byte or the scalar load
// path runs. So a mixed batch gives each request's rows exactly what they would get alone.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "common.cuh"
#include "lorakit_cuda.h"

namespace lkc {
namespace {

constexpr int kTileRows = 8;
constexpr int kShrinkWarps = 4;  // factor rows per shrink block, one warp each
constexpr int kExpandThreads = 256;
constexpr int kExpandOuts = 2;  // outputs per expand thread
constexpr int kChunk = 8;       // elements per lane step of the shrink (one 16-byte bf16 load)

// Rows [row0, row0 + rows) of segment `seg`, rows ≤ kTileRows.
struct Tile {
  int seg, row0, rows, pad;
};
static_assert(sizeof(LoraSegment) % 16 == 0, "the tiles follow the segments in one 16-byte aligned buffer");

// A table small enough to pass as a kernel parameter (4 KiB of the 32 KiB Hopper allows).
constexpr int kInlineSegments = 64, kInlineTiles = 128;
struct InlineTable {
  LoraSegment segs[kInlineSegments];
  Tile tiles[kInlineTiles];
};

// Tile b and its segment: from the inline table when `tiles` is null, else from device memory.
__device__ __forceinline__ void tile_of(const InlineTable& inl, const LoraSegment* segs, const Tile* tiles, int b, Tile& tile,
                                        LoraSegment& seg) {
  if (tiles) {
    tile = tiles[b];
    seg = segs[tile.seg];
  } else {
    tile = inl.tiles[b];
    seg = inl.segs[tile.seg];
  }
}

__device__ __forceinline__ bool aligned16_dev(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// h[row, j] (row stride hs) for the rows of one tile and one j per warp. Grid: (tiles, ⌈max rank / kShrinkWarps⌉).
template <typename T>
__global__ void __launch_bounds__(kShrinkWarps * 32)
    shrink_kernel(T* h, int hs, const T* x, const LoraSegment* segs, const Tile* tiles, int64_t in,
                  const __grid_constant__ InlineTable inl) {
  Tile tile;
  LoraSegment seg;
  tile_of(inl, segs, tiles, blockIdx.x, tile, seg);
  const int lane = threadIdx.x & 31;
  const int j = blockIdx.y * kShrinkWarps + (threadIdx.x >> 5);
  if (j >= seg.rank) return;  // the whole warp: nothing below syncs across warps
  const T* a = static_cast<const T*>(seg.A) + int64_t(j) * in;
  const T* xr = x + int64_t(tile.row0) * in;
  const int rows = tile.rows;
  const int64_t chunks = (in + kChunk - 1) / kChunk;
  float acc[kTileRows];
#pragma unroll
  for (int r = 0; r < kTileRows; r++) acc[r] = 0.f;
  if (in % kChunk == 0 && aligned16_dev(a) && aligned16_dev(xr)) {
#pragma unroll 4
    for (int64_t c = lane; c < chunks; c += 32) {
      float av[kChunk];
      load8(a + c * kChunk, av);
#pragma unroll
      for (int r = 0; r < kTileRows; r++) {
        if (r >= rows) break;
        float xv[kChunk];
        load8(xr + r * in + c * kChunk, xv);
#pragma unroll
        for (int e = 0; e < kChunk; e++) acc[r] = fmaf(xv[e], av[e], acc[r]);
      }
    }
  } else {
    // The same sums in the same order, element by element (odd `in`, unaligned rows).
    for (int64_t c = lane; c < chunks; c += 32) {
      const int64_t k0 = c * kChunk;
      const int n = in - k0 < kChunk ? int(in - k0) : kChunk;
      for (int e = 0; e < n; e++) {
        const float av = to_f32(a[k0 + e]);
#pragma unroll
        for (int r = 0; r < kTileRows; r++) {
          if (r >= rows) break;
          acc[r] = fmaf(to_f32(xr[r * in + k0 + e]), av, acc[r]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kTileRows; r++) {
    if (r >= rows) break;
    const float v = warp_sum(acc[r]);
    if (lane == 0) h[int64_t(tile.row0 + r) * hs + j] = from_f32<T>(v);
  }
}

// y[row, o] += scale · h[row]·B[o] for the rows of one tile and kExpandThreads · kExpandOuts outputs.
// Grid: (tiles, ⌈out / (kExpandThreads · kExpandOuts)⌉).
template <typename T>
__global__ void __launch_bounds__(kExpandThreads)
    expand_kernel(T* y, const T* h, int hs, const LoraSegment* segs, const Tile* tiles, int64_t out,
                  const __grid_constant__ InlineTable inl) {
  __shared__ float hv[kTileRows][kLoraSegmentsMaxRank];
  Tile tile;
  LoraSegment seg;
  tile_of(inl, segs, tiles, blockIdx.x, tile, seg);
  const int rank = seg.rank, rows = tile.rows;
  for (int i = threadIdx.x; i < rows * rank; i += blockDim.x)
    hv[i / rank][i % rank] = to_f32(h[int64_t(tile.row0 + i / rank) * hs + i % rank]);
  __syncthreads();
  const T* B = static_cast<const T*>(seg.B);
  const int64_t o0 = int64_t(blockIdx.y) * (kExpandThreads * kExpandOuts) + threadIdx.x;
  const bool vec = rank % kChunk == 0 && aligned16_dev(B);
  float acc[kExpandOuts][kTileRows];
#pragma unroll
  for (int q = 0; q < kExpandOuts; q++)
#pragma unroll
    for (int r = 0; r < kTileRows; r++) acc[q][r] = 0.f;
  int64_t o[kExpandOuts];
  bool live[kExpandOuts];
#pragma unroll
  for (int q = 0; q < kExpandOuts; q++) {
    o[q] = o0 + q * kExpandThreads;
    live[q] = o[q] < out;
  }
  if (vec) {
    for (int j0 = 0; j0 < rank; j0 += kChunk) {
      float bv[kExpandOuts][kChunk];
#pragma unroll
      for (int q = 0; q < kExpandOuts; q++) {
        if (live[q]) {
          load8(B + o[q] * rank + j0, bv[q]);
        } else {
#pragma unroll
          for (int e = 0; e < kChunk; e++) bv[q][e] = 0.f;
        }
      }
#pragma unroll
      for (int e = 0; e < kChunk; e++)
#pragma unroll
        for (int r = 0; r < kTileRows; r++) {
          if (r >= rows) break;
          const float hj = hv[r][j0 + e];
#pragma unroll
          for (int q = 0; q < kExpandOuts; q++) acc[q][r] = fmaf(hj, bv[q][e], acc[q][r]);
        }
    }
  } else {
    // The same sums in the same order, one element of B at a time (odd ranks, unaligned B).
    for (int j = 0; j < rank; j++) {
      float bv[kExpandOuts];
#pragma unroll
      for (int q = 0; q < kExpandOuts; q++) bv[q] = live[q] ? to_f32(B[o[q] * rank + j]) : 0.f;
#pragma unroll
      for (int r = 0; r < kTileRows; r++) {
        if (r >= rows) break;
        const float hj = hv[r][j];
#pragma unroll
        for (int q = 0; q < kExpandOuts; q++) acc[q][r] = fmaf(hj, bv[q], acc[q][r]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kTileRows; r++) {
    if (r >= rows) break;
    T* yr = y + int64_t(tile.row0 + r) * out;
#pragma unroll
    for (int q = 0; q < kExpandOuts; q++)
      if (live[q]) yr[o[q]] = from_f32<T>(fmaf(seg.scale, acc[q][r], to_f32(yr[o[q]])));
  }
}

// Pinned host slots the descriptors are staged in, used round-robin: a slot is rewritten only after the
// copy that last read it has finished (its event), which kSlots calls later has almost always happened.
struct Staging {
  static constexpr int kSlots = 16;
  struct Slot {
    void* host = nullptr;
    size_t bytes = 0;
    cudaEvent_t copied = nullptr;
  };
  std::mutex mu;
  Slot slots[kSlots];
  int next = 0;
};

// Never destroyed: a slot's event may still be pending during static destruction.
Staging& staging() {
  static Staging* s = new Staging;
  return *s;
}

// dev[0, bytes) = src[0, bytes) on `stream`, through a pinned staging slot; returns at once.
void upload(void* dev, const void* src, size_t bytes, cudaStream_t stream) {
  Staging& s = staging();
  std::lock_guard<std::mutex> lock(s.mu);
  Staging::Slot& slot = s.slots[s.next];
  s.next = (s.next + 1) % Staging::kSlots;
  if (!slot.copied) LKC_CUDA(cudaEventCreateWithFlags(&slot.copied, cudaEventDisableTiming));
  LKC_CUDA(cudaEventSynchronize(slot.copied));  // the copy that last read this slot is done
  if (slot.bytes < bytes) {
    if (slot.host) LKC_CUDA(cudaFreeHost(slot.host));
    slot.host = nullptr;
    slot.bytes = 0;
    const size_t want = std::max<size_t>(4096, bytes * 2);
    LKC_CUDA(cudaHostAlloc(&slot.host, want, cudaHostAllocDefault));
    slot.bytes = want;
  }
  std::memcpy(slot.host, src, bytes);
  LKC_CUDA(cudaMemcpyAsync(dev, slot.host, bytes, cudaMemcpyHostToDevice, stream));
  LKC_CUDA(cudaEventRecord(slot.copied, stream));
}

// segs and tiles in device memory, or both null to read them from `inl`.
template <typename T>
void launch(void* y, const void* x, const LoraSegment* segs, const Tile* tiles, const InlineTable& inl, int n_tiles, T* h, int hs,
            int max_rank, int64_t in, int64_t out, cudaStream_t stream) {
  const dim3 shrink_grid(static_cast<unsigned>(n_tiles), ceil_div(max_rank, kShrinkWarps));
  shrink_kernel<T><<<shrink_grid, kShrinkWarps * 32, 0, stream>>>(h, hs, static_cast<const T*>(x), segs, tiles, in, inl);
  LKC_CHECK_LAUNCH("lora_segments shrink");
  const dim3 expand_grid(static_cast<unsigned>(n_tiles), ceil_div(out, kExpandThreads * kExpandOuts));
  expand_kernel<T><<<expand_grid, kExpandThreads, 0, stream>>>(static_cast<T*>(y), h, hs, segs, tiles, out, inl);
  LKC_CHECK_LAUNCH("lora_segments expand");
}

}  // namespace

void lora_segments(void* y, const void* x, DType t, const LoraSegment* segments, int count, int64_t N, int64_t in, int64_t out,
                   cudaStream_t stream) {
  LKC_REQUIRE(t == DType::F32 || t == DType::BF16, std::string("lora_segments: x and y must be f32 or bf16, not ") + dtype_name(t) + ".");
  LKC_REQUIRE(count >= 0 && N >= 0 && in >= 0 && out >= 0, "lora_segments: sizes must be non-negative.");
  LKC_REQUIRE(N <= 2147483647, "lora_segments: at most 2³¹ − 1 rows.");
  LKC_REQUIRE(out <= int64_t(65535) * kExpandThreads * kExpandOuts, "lora_segments: too many outputs for one launch.");
  std::vector<int> order;
  int max_rank = 0;
  int64_t n_tiles = 0;
  for (int g = 0; g < count; g++) {
    const LoraSegment& s = segments[g];
    const std::string which = "lora_segments: segment " + std::to_string(g);
    LKC_REQUIRE(s.A && s.B, which + " needs both factors (A and B must not be null).");
    LKC_REQUIRE(s.rank >= 1 && s.rank <= kLoraSegmentsMaxRank,
                which + " has rank " + std::to_string(s.rank) + "; ranks must be in [1, " + std::to_string(kLoraSegmentsMaxRank) + "].");
    LKC_REQUIRE(s.start >= 0 && s.start <= s.end && s.end <= N,
                which + " covers rows [" + std::to_string(s.start) + ", " + std::to_string(s.end) + "), outside [0, " +
                    std::to_string(N) + ").");
    LKC_REQUIRE(std::isfinite(s.scale), which + " has a scale that is not finite.");
    if (s.start == s.end) continue;
    order.push_back(g);
    max_rank = std::max(max_rank, s.rank);
    n_tiles += (s.end - s.start + kTileRows - 1) / kTileRows;
  }
  std::sort(order.begin(), order.end(), [&](int a, int b) { return segments[a].start < segments[b].start; });
  for (size_t i = 1; i < order.size(); i++)
    LKC_REQUIRE(segments[order[i]].start >= segments[order[i - 1]].end,
                "lora_segments: segments " + std::to_string(order[i - 1]) + " and " + std::to_string(order[i]) + " overlap.");
  if (n_tiles == 0 || out == 0) return;
  LKC_REQUIRE(n_tiles <= 2147483647, "lora_segments: too many rows for one launch.");

  const size_t h_bytes = static_cast<size_t>(N) * max_rank * dtype_size(t);
  auto fill_tiles = [&](Tile* tiles) {
    for (int g : order)
      for (int r = segments[g].start; r < segments[g].end; r += kTileRows) *tiles++ = {g, r, std::min(kTileRows, segments[g].end - r), 0};
  };
  auto run = [&](const LoraSegment* d_segs, const Tile* d_tiles, const InlineTable& inl, void* h) {
    if (t == DType::BF16)
      launch<bf16>(y, x, d_segs, d_tiles, inl, int(n_tiles), static_cast<bf16*>(h), max_rank, max_rank, in, out, stream);
    else
      launch<float>(y, x, d_segs, d_tiles, inl, int(n_tiles), static_cast<float*>(h), max_rank, max_rank, in, out, stream);
  };
  static_assert(std::is_trivially_copyable<InlineTable>::value, "the inline table is a kernel parameter");
  if (count <= kInlineSegments && n_tiles <= kInlineTiles) {
    InlineTable inl{};  // zeroed: the whole struct is the kernels' parameter, entries past count and n_tiles too
    std::copy(segments, segments + count, inl.segs);
    fill_tiles(inl.tiles);
    Tensor h({static_cast<int64_t>(h_bytes)}, DType::U8, stream);  // freed stream-ordered after the launches
    run(nullptr, nullptr, inl, h.ptr<unsigned char>());
    return;
  }
  // One buffer: the segments, then the tiles, both copied at once; then h [N, max_rank] of dtype t.
  const size_t seg_bytes = sizeof(LoraSegment) * count, table_bytes = seg_bytes + sizeof(Tile) * n_tiles;
  std::vector<unsigned char> table(table_bytes);
  std::memcpy(table.data(), segments, seg_bytes);
  fill_tiles(reinterpret_cast<Tile*>(table.data() + seg_bytes));
  const size_t h_offset = (table_bytes + 255) / 256 * 256;
  Tensor scratch({static_cast<int64_t>(h_offset + h_bytes)}, DType::U8, stream);  // freed stream-ordered after the launches
  unsigned char* base = scratch.ptr<unsigned char>();
  upload(base, table.data(), table_bytes, stream);
  static const InlineTable unused{};  // not read: the kernels take the device table
  run(reinterpret_cast<const LoraSegment*>(base), reinterpret_cast<const Tile*>(base + seg_bytes), unused, base + h_offset);
}

}  // namespace lkc
