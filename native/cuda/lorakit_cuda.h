// lorakit CUDA backend: the host API the N-API CUDA addon links against (build/liblorakit_cuda.a).
//
// Conventions (as the CPU backend and llm.c): outputs first, then inputs, then sizes and attributes;
// raw device pointers; row-major; every launcher takes the stream it enqueues on and returns at once.
// Activations and frozen weights in bf16 (the speed mode) or f32 (the exactness mode), selected per call
// by a DType argument that follows the tensors it describes, with fp32 math and accumulation either way;
// fp32 LoRA master weights, gradients of trainable tensors and optimizer state. Errors are
// std::runtime_error / std::invalid_argument whose message starts with "lorakit: " (a dtype a kernel
// does not take included).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lkc {

using bf16 = __nv_bfloat16;

// ---- memory (memory.cu) --------------------------------------------------------------------------

enum class DType : int { F32 = 0, BF16 = 1, I32 = 2, U8 = 3 };
size_t dtype_size(DType t);
const char* dtype_name(DType t);

struct AllocatorStats {
  size_t allocated = 0;       // bytes handed out and not yet freed (rounded to size classes)
  size_t reserved = 0;        // bytes held from cudaMalloc (allocated + cached)
  size_t peak_allocated = 0;  // high-water mark of `allocated` since the last reset_peak()
  size_t peak_reserved = 0;
  uint64_t cuda_mallocs = 0;  // cudaMalloc calls made
  uint64_t cache_hits = 0;    // allocations served from the cache
};

// Caching allocator: size-class free lists per stream, stream-ordered reuse. A block freed on stream S
// is immediately reusable by later work on S (the stream orders the reuse after every use); a block
// that was used on other streams too (record_stream) waits for those streams' events before reuse.
// When cudaMalloc fails, the cache is emptied and the allocation retried once. Thread-safe.
void* device_alloc(size_t bytes, cudaStream_t stream);
void device_free(void* p);
void record_stream(void* p, cudaStream_t stream);  // p is also used on `stream`: its reuse waits for it
void empty_cache();                                // cudaFree every cached (free) block
AllocatorStats allocator_stats();
void reset_peak();
size_t size_class(size_t bytes);  // the rounded size a request of `bytes` gets

// An owning device tensor (move-only); its memory comes from and returns to the caching allocator.
class Tensor {
 public:
  Tensor() = default;
  Tensor(std::vector<int64_t> shape, DType dtype, cudaStream_t stream = nullptr);
  ~Tensor();
  Tensor(Tensor&& o) noexcept;
  Tensor& operator=(Tensor&& o) noexcept;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  void* data() const { return data_; }
  template <typename T>
  T* ptr() const { return static_cast<T*>(data_); }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  cudaStream_t stream() const { return stream_; }
  void reset();  // frees now (stream-ordered)

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::F32;
  std::vector<int64_t> shape_;
  cudaStream_t stream_ = nullptr;
};

// ---- activation offload to pinned host memory (offload.cu) ---------------------------------------
// Copies between device blocks and pinned host buffers run on a second ("copy") stream so that they
// overlap the kernels of the main stream. `main` and `copy` are two different non-blocking streams.
// Pinned buffers come from pinned_alloc; every host range a copy touches must lie inside one of them.
// Device blocks must be pointers device_alloc handed out (the block's own address, not an interior one).
// Thread-safe.
void* pinned_alloc(size_t bytes);  // cudaHostAlloc (default flags); bytes > 0
// Waits for the copy stream (the only stream that touches pinned buffers), then cudaFreeHost.
void pinned_free(void* host, cudaStream_t copy);
// host[0, bytes) = dev[0, bytes) on `copy`, after all work enqueued on `main` before the call. dev is
// record_stream'ed on `copy`, so device_free(dev) right after the call is safe: the allocator hands the
// block out again only once the copy has read it. Nothing may write dev on `main` after the call (free
// it instead). Returns at once.
void offload_async(void* host, void* dev, size_t bytes, cudaStream_t main, cudaStream_t copy);
// dev[0, bytes) = host[0, bytes) on `copy`, after all work enqueued on `main` before the call (earlier
// users of a block the allocator just handed out) and after earlier copies (same stream); dev is
// record_stream'ed on `copy`. Returns a handle (> 0) to an event recorded on `copy` after the copy:
// wait_event(handle, main) must come before `main` touches dev. Returns at once.
int64_t reload_async(void* dev, const void* host, size_t bytes, cudaStream_t main, cudaStream_t copy);
// `stream` waits (on the device; the host does not) for the reload behind `handle`; the handle is then
// spent and its event recycled. A spent, unknown or malformed handle throws std::invalid_argument.
void wait_event(int64_t handle, cudaStream_t stream);
size_t pending_reloads();  // handles returned by reload_async and not yet waited on

// ---- GEMM through cuBLASLt (gemm.cu) -------------------------------------------------------------

// Row-major C[b] (M×N) = alpha · op(A[b]) · op(B[b]) + beta · C[b] (+ bias[N] broadcast over rows).
// op(A) is M×K: A is stored [M, K] (lda ≥ K), or [K, M] when trans_a (lda ≥ M); op(B) is K×N: B is
// stored [K, N] (ldb ≥ N), or [N, K] when trans_b (ldb ≥ K). ld* = 0 means packed. A and B are both
// bf16 (fp32 accumulation, C bf16 or f32) or both f32 (C f32, exact fp32 math unless tf32 is set).
// bias: same dtype as C, only with beta = 0. The cuBLASLt library is loaded at first use (dlopen of
// $LORAKIT_CUBLASLT, else libcublasLt.so.13/.12/.so); descriptors and the chosen algorithm are cached
// per shape. One workspace per process: calls on different streams must not overlap in time.
struct GemmOpts {
  bool trans_a = false, trans_b = false;
  float alpha = 1.f, beta = 0.f;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // elements between batch entries
  const void* bias = nullptr;
  bool tf32 = false;  // f32 inputs: allow tf32 tensor cores
};
void gemm(void* C, DType c_type, const void* A, DType a_type, const void* B, DType b_type, int64_t M, int64_t N, int64_t K,
          const GemmOpts& opts, cudaStream_t stream);
bool cublaslt_available();  // loads the library if needed; false when it cannot be found

// ---- elementwise (elementwise.cu) ----------------------------------------------------------------
// dtypes: F32 or BF16 for every float tensor; math in fp32.

void add(void* out, const void* a, const void* b, DType t, int64_t n, cudaStream_t stream);     // out = a + b
void scale(void* out, const void* x, float alpha, DType t, int64_t n, cudaStream_t stream);     // out = alpha·x
void axpy(void* y, DType y_type, const void* x, DType x_type, float alpha, int64_t n, cudaStream_t stream);  // y += alpha·x
void cast(void* out, DType out_type, const void* in, DType in_type, int64_t n, cudaStream_t stream);
void fill(void* out, DType t, float value, int64_t n, cudaStream_t stream);
// acc[0] += Σ x² (fp32 atomics into a caller-zeroed accumulator; call once per gradient tensor).
void sum_squares(float* acc, const void* x, DType t, int64_t n, cudaStream_t stream);
// coef[0] = min(1, max_norm / (sqrt(sumsq[0]) + 1e-6)) as torch.nn.utils.clip_grad_norm_; norm[0] (nullable)
// = sqrt(sumsq[0]). Stays on the device so the optimizer step needs no host sync.
void clip_coef(float* coef, float* norm, const float* sumsq, float max_norm, cudaStream_t stream);

// ---- broadcast binary ops (broadcast.cu) ---------------------------------------------------------
// out[i] = a[i] op b[i mod nb] for i < n (nb > 0 divides n), out, a, b all of dtype t (F32 or BF16), fp32
// math and one rounding. out may alias a (and b when nb == n). add_broadcast with nb == n is lkc::add.
void add_broadcast(void* out, const void* a, const void* b, DType t, int64_t n, int64_t nb, cudaStream_t stream);
void mul_broadcast(void* out, const void* a, const void* b, DType t, int64_t n, int64_t nb, cudaStream_t stream);

// ---- row sums (sum_rows.cu) ----------------------------------------------------------------------
// out[r] = Σ_c x[r, c] over x [rows, cols] (row-major), fp32 accumulation; x and out F32 or BF16 each.
// cols = 0 gives zeros.
void sum_rows(void* out, DType out_type, const void* x, DType x_type, int64_t rows, int64_t cols, cudaStream_t stream);

// ---- greedy pick (argmax.cu) ----------------------------------------------------------------------
// out [rows] i32 = the first index of each row's largest value, x [rows, cols] f32 or bf16; NaN is never
// picked except that a row starting with NaN gives 0 (the host's `if (x[i] > x[best])` scan). cols ≥ 1.
void argmax_rows(int32_t* out, const void* x, DType t, int64_t rows, int64_t cols, cudaStream_t stream);

// ---- DoRA weight norm (weight_norm.cu) -----------------------------------------------------------
// out [rows] f32 = ‖w[r] + s·delta[r]‖ per row (1/‖…‖ when inverse), w [rows, cols] of w_type (F32 or
// BF16), delta [rows, cols] f32; fp32 terms and sums. rows = 0 writes nothing; cols = 0 gives 0 (inf).
void weight_norm(float* out, const void* w, DType w_type, const float* delta, float s, bool inverse, int64_t rows, int64_t cols,
                 cudaStream_t stream);

// ---- RMSNorm (rmsnorm.cu) ------------------------------------------------------------------------
// out, x [N, C] and w [C] of dtype t (F32 or BF16); rstd [N] f32 (saved for backward).
// y = w · T(x · rstd), rstd = 1/sqrt(mean(x²)+eps) (the inner rounding T(·) only for bf16, as HF).
void rmsnorm_forward(void* out, float* rstd, const void* x, const void* w, DType t, int64_t N, int C, float eps, cudaStream_t stream);
// dx, dy, x [N, C] and w [C] of dtype t; dw [C] f32 accumulated (+=) when not null (frozen norms pass null).
void rmsnorm_backward(void* dx, float* dw, const void* dy, const void* x, const void* w, DType t, const float* rstd, int64_t N, int C,
                      cudaStream_t stream);

// ---- RoPE, rotate-half (rope.cu) -----------------------------------------------------------------
// out, x [rows, H, D] of dtype t, F32 or BF16 (in place allowed); cos, sin [P, half] f32; pos [rows] i32
// in [0, P). out[i] = x[i]·cos − x[i+half]·sin, out[i+half] = x[i+half]·cos + x[i]·sin for i < half;
// dims ≥ 2·half pass. Backward: dx, dy of dtype t, the rotation by −θ.
void rope_forward(void* out, const void* x, DType t, const float* cos, const float* sin, const int32_t* pos, int64_t rows, int H, int D,
                  int half, cudaStream_t stream);
void rope_backward(void* dx, const void* dy, DType t, const float* cos, const float* sin, const int32_t* pos, int64_t rows, int H, int D,
                   int half, cudaStream_t stream);
// cos, sin [P, half] = cos/sin(p · inv_freq[i]) · attn_scale (inv_freq carries any llama3/yarn scaling).
void rope_tables(float* cos, float* sin, const float* inv_freq, int P, int half, float attn_scale, cudaStream_t stream);

// ---- SwiGLU (swiglu.cu) --------------------------------------------------------------------------
// h = silu(g) · u over [n], h, g, u of dtype t (F32 or BF16). Backward needs g and u (no saved state);
// dg, du, dh of dtype t too.
void swiglu_forward(void* h, const void* g, const void* u, DType t, int64_t n, cudaStream_t stream);
void swiglu_backward(void* dg, void* du, const void* dh, const void* g, const void* u, DType t, int64_t n, cudaStream_t stream);

// ---- embedding (embedding.cu) --------------------------------------------------------------------
// out [N, C] of out_t = table[ids[n], :] with table [V, C] of table_t: a bf16 table into bf16 rows, or an
// f32 table into f32 rows (exact) or bf16 rows (round to nearest even: a trainable f32 embed_tokens copy
// feeding bf16 activations); other pairs throw. Ids outside [0, V) give zero rows (the caller validates
// ids on the host; the kernel never reads out of bounds).
void embedding_forward(void* out, DType out_t, const int32_t* ids, const void* table, DType table_t, int64_t N, int C, int64_t V,
                       cudaStream_t stream);
// dtable [V, C] f32 += scatter of dout [N, C] of dtype t (F32 or BF16) by ids (fp32 atomics).
void embedding_backward(float* dtable, const void* dout, DType t, const int32_t* ids, int64_t N, int C, int64_t V, cudaStream_t stream);

// ---- fused linear + cross-entropy over vocabulary chunks (cross_entropy.cu) ----------------------
// logits = h · Wᵀ are only ever materialized [N, chunk] at a time, in f32: h [N, C] and W [V, C] both of
// dtype t, BF16 (tensor-core GEMMs) or F32 (exact f32 GEMMs). targets [N] i32, −100 = ignored.
// Forward: loss [N] f32 = lse − logit[target] (0 for ignored rows), and lse [N] f32 unless lse is null.
// Forward_grad (training): the same, and dh_unit [N, C] f32 = softmax · W − W[target] (0 on ignored
// rows), the head's input gradient for a unit loss gradient; backward is then scale_by_scalar.
// The workspace size does not depend on t or C.
size_t linear_cross_entropy_workspace(int64_t N, int chunk);
void linear_cross_entropy_forward(float* loss, float* lse, const void* h, const void* W, DType t, const int32_t* targets, int64_t N,
                                  int C, int64_t V, int chunk, void* workspace, cudaStream_t stream);
void linear_cross_entropy_forward_grad(float* loss, float* lse, float* dh_unit, const void* h, const void* W, DType t,
                                       const int32_t* targets, int64_t N, int C, int64_t V, int chunk, void* workspace,
                                       cudaStream_t stream);
// out [n] of dtype t (f32 or bf16) = scalar[0] · x [n] f32, the scalar read on the device.
void scale_by_scalar(void* out, DType t, const float* x, const float* scalar, int64_t n, cudaStream_t stream);
// Plain cross-entropy over given logits [N, V] (bf16 or f32), one pass per row: loss, lse [N] f32.
void cross_entropy_forward(float* loss, float* lse, const void* logits, DType t, const int32_t* targets, int64_t N, int64_t V,
                           cudaStream_t stream);

// ---- cross-entropy backward over given logits (cross_entropy_backward.cu) ------------------------
// dlogits [N, V] = grad_loss[0] · (softmax(logits) − onehot(target)) with softmax = exp(logit − lse[n]),
// lse [N] f32 from cross_entropy_forward; rows whose target is −100 (or outside [0, V)) get zeros.
// logits and dlogits of dtype t (F32 or BF16); dlogits may alias logits. grad_loss: one f32 on the device.
void cross_entropy_backward(void* dlogits, const void* logits, DType t, const int32_t* targets, const float* lse,
                            const float* grad_loss, int64_t N, int64_t V, cudaStream_t stream);
// After cross_entropy_forward: loss and lse (either nullable) = 0 on rows whose target is −100 or outside
// [0, V), the CPU backend's convention (cross_entropy_forward itself leaves the row's real lse).
void cross_entropy_zero_ignored(float* loss, float* lse, const int32_t* targets, int64_t N, int64_t V, cudaStream_t stream);

// ---- AdamW (adamw.cu) ----------------------------------------------------------------------------
// torch.optim.AdamW on flat f32 buffers, step ≥ 1: p *= 1 − lr·wd; m = m + (1−β1)(g·s − m);
// v = β2·v + (1−β2)(g·s)²; p −= lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + eps), where s = grad_scale[0]
// (clip coefficient on the device) or 1 when null. p_bf16 (nullable) receives the updated p in bf16.
void adamw_step(float* p, float* m, float* v, bf16* p_bf16, const float* g, const float* grad_scale, int64_t n, float lr,
                float beta1, float beta2, float eps, float weight_decay, int step, cudaStream_t stream);
// The same update over many tensors with shared hyperparameters, kAdamwBatch tensors per launch.
struct AdamwTensor {
  float *p, *m, *v;
  bf16* p_bf16;  // nullable
  const float* g;
  int64_t n;
};
constexpr int kAdamwBatch = 64;  // 64 × 48 bytes of kernel parameters, under the 4 KB every GPU takes
void adamw_step_multi(const AdamwTensor* tensors, int count, const float* grad_scale, float lr, float beta1, float beta2,
                      float eps, float weight_decay, int step, cudaStream_t stream);

// ---- SGD (sgd.cu) --------------------------------------------------------------------------------
// torch.optim.SGD (dampening 0, no nesterov) on flat f32 buffers, the CPU backend's semantics (native/cpu/optim.cc):
//   d = g + wd·p (fma, as torch's add with alpha; skipped when wd = 0);
//   with buf: buf = momentum·buf + d (two roundings, as torch's mul_ then add_), d = buf;
//   p = p − lr·d (fma, as torch's add_ with alpha = −lr).
// buf (nullable) must be zeroed before the first step: 0·momentum + d gives torch's first-step buf = d.
void sgd_step(float* p, float* buf, const float* g, int64_t n, float lr, float weight_decay, float momentum,
              cudaStream_t stream);

// ---- dropout (dropout.cu) ------------------------------------------------------------------------
// Inverted dropout with the CPU backend's mask bit for bit (native/cpu/dropout.cc): element i (over the
// flat tensor) is kept when the top 24 bits of splitmix64(key + i·φ) are ≥ llround(p·2²⁴), key =
// splitmix64(seed ^ 0x6a09e667f3bcc909); out[i] = x[i] · (kept ? 1/(1 − p) : 0) in fp32 (x·0: inf gives NaN).
// out, x [n] of dtype t (F32 or BF16); out may alias x. p in [0, 1]. Backward: the same call on dy.
void dropout(void* out, const void* x, DType t, float p, uint64_t seed, int64_t n, cudaStream_t stream);

// ---- 4-bit dequantize, NF4 or FP4 (dequant4.cu) --------------------------------------------------
// bitsandbytes layout: element i sits in byte i/2, high nibble first; blocks of `blocksize` elements
// share absmax[i / blocksize]; value = table[nibble] · absmax in fp32, out [n] of dtype t: BF16 (one
// rounding) or F32 (the CPU backend's value bit for bit). code 0 = NF4, 1 = FP4 (bitsandbytes' tables as
// the CPU backend holds them, native/cpu/quant.cc). Any blocksize > 0 and any alignment (16-byte vector
// path when out is 16-byte aligned, packed 4-byte aligned and blocksize % 8 == 0). Double quantization:
// absmax[j] = code2[absmax_q[j]] · absmax2[j / blocksize2] + offset.
void dequantize_4bit(void* out, DType t, const uint8_t* packed, const float* absmax, int code, int64_t n, int blocksize,
                     cudaStream_t stream);
void dequantize_4bit_dq(void* out, DType t, const uint8_t* packed, const uint8_t* absmax_q, const float* absmax2, const float* code2,
                        float offset, int code, int64_t n, int blocksize, int blocksize2, cudaStream_t stream);

// ---- int8 row dequantize (dequant_int8.cu) -------------------------------------------------------
// out [rows, cols] of dtype t = (float(q[r, c]) · scale[r]) · (1/127 as f32), as bitsandbytes'
// int8_vectorwise_dequant and the CPU backend (two fp32 roundings, then one to bf16 for BF16; F32 keeps
// the CPU backend's value bit for bit). q holds int8.
void dequantize_int8(void* out, DType t, const int8_t* q, const float* scale, int64_t rows, int64_t cols, cudaStream_t stream);

// ---- quantized matrix-vector products for a few rows (quant_gemv.cu) -----------------------------
// Generation, token by token: y [m, out] = x [m, in] · Wᵀ (+ bias [out]) reading the quantized W [out, in]
// once, no bf16 copy of it. x, y and bias (nullable) of dtype t (F32 or BF16). Each weight is exactly the
// value dequantize_4bit(_dq) / dequantize_int8 write for t; products and sums in fp32 (bf16: exact bf16
// products on tensor cores with fp32 accumulation, as the cuBLASLt GEMM it replaces; f32: fp32 FMAs),
// bias added in fp32, one rounding to t: dequantize + GEMM up to the order of the fp32 sums. 0 ≤ m ≤
// kQuantGemvMaxRows (more throws); m = 0 or out = 0 writes nothing, in = 0 writes y = bias (or zeros).
// Any alignment and sizes below 2³¹ (tensor cores for bf16 with in % 32 == 0 and 16-byte aligned x and
// weights, 4-bit also blocksize % 32 == 0; CUDA cores otherwise).
constexpr int kQuantGemvMaxRows = 8;
// 4-bit in dequantize_4bit's layout (element r·in + c of the flattened W, so a block may straddle two
// rows): absmax [ceil(out·in / blocksize)] f32, or, when absmax_q is not null, dequantize_4bit_dq's
// double quantization (absmax ignored). code 0 = NF4, 1 = FP4.
void quant_gemv_4bit(void* y, DType t, const void* x, const uint8_t* packed, const float* absmax, const uint8_t* absmax_q,
                     const float* absmax2, const float* code2, float offset, int code, const void* bias, int64_t m, int64_t out,
                     int64_t in, int blocksize, int blocksize2, cudaStream_t stream);
// int8 per row: W[r, c] = (float(q[r, c]) · scale[r]) · (1/127 as f32), as dequantize_int8.
void quant_gemv_int8(void* y, DType t, const void* x, const int8_t* q, const float* scale, const void* bias, int64_t m, int64_t out,
                     int64_t in, cudaStream_t stream);
// Forces the CUDA-core kernels for bf16 too (tests compare the two paths).
void quant_gemv_set_force_generic(bool on);

// ---- causal attention, GQA, packed sequences (attention.cu) --------------------------------------
// q, out, dout, dq [B, Tq, Hq, D]; k, v, dk, dv [B, Tk, Hkv, D], all of dtype t (F32 or BF16);
// segments [B, Tk] i32; lse [B, Hq, Tq] f32.
// Query row i sits at key position p = Tk − Tq + i and attends to key j iff j ≤ p and
// segments[b, j] == segments[b, p] != 0 (0 marks padding). Query head h reads kv head h / (Hq / Hkv).
// A padded query row outputs zeros, has lse = −inf and gets zero gradient. Never materializes T×T:
// flash-attention tiles on tensor cores for bf16 with D ∈ {64, 128} (16-byte aligned tensors), a
// CUDA-core path (fp32 math) for every other D ≤ 256 and for every f32 call. The workspace size does not
// depend on t.
void attention_forward(void* out, float* lse, const void* q, const void* k, const void* v, DType t, const int32_t* segments, int B,
                       int Tq, int Tk, int Hq, int Hkv, int D, float scale, cudaStream_t stream);
size_t attention_backward_workspace(int B, int Tq, int Tk, int Hq, int Hkv, int D);
void attention_backward(void* dq, void* dk, void* dv, const void* dout, const void* out, const void* q, const void* k, const void* v,
                        DType t, const float* lse, const int32_t* segments, int B, int Tq, int Tk, int Hq, int Hkv, int D, float scale,
                        void* workspace, cudaStream_t stream);
// Forces the CUDA-core path (tests compare the two paths).
void attention_set_force_generic(bool on);

// ---- the LoRA term of many adapters over one batch (lora_segments.cu) ----------------------------
// Serving (Punica's SGMV, S-LoRA): y [N, out] += s_g · (x[i]·A_gᵀ)·B_gᵀ for every row i of each segment
// g, in place, x [N, in] and y of dtype t (F32 or BF16), every A_g [rank_g, in] and B_g [out, rank_g] of
// dtype t too. h = x·A_gᵀ is summed in fp32 and rounded to t (the training path's low-rank activation),
// then y gets s_g · h·B_gᵀ summed in fp32 with one rounding. Rows in no segment are left unchanged.
// `segments` is host memory (count entries, any order, disjoint, empty ones allowed); the call copies
// them to the device with one asynchronous copy from a pinned staging buffer and launches twice (shrink,
// expand) for all segments. Each row's result depends only on that row and its segment's adapter:
// nothing is summed across rows, and the sums run in one order whatever the batch, alignment or N.
constexpr int kLoraSegmentsMaxRank = 256;
struct LoraSegment {
  const void* A;  // [rank, in], dtype t
  const void* B;  // [out, rank], dtype t
  float scale;
  int rank;        // 1 ≤ rank ≤ kLoraSegmentsMaxRank
  int start, end;  // rows [start, end) of x and y, 0 ≤ start ≤ end ≤ N
};
void lora_segments(void* y, const void* x, DType t, const LoraSegment* segments, int count, int64_t N, int64_t in, int64_t out,
                   cudaStream_t stream);

// ---- paged KV cache for serving, inference only (paged_attention.cu) -----------------------------
// Pools k_pool, v_pool [numSlots, Hkv, D] (numSlots = numBlocks · blockSize, a block's slots
// consecutive); k, v, q, out of dtype t (F32 or BF16), fp32 math. Indices live on the device and are
// not checked: slots must lie in [0, numSlots), rowSeq in [0, S), rowPos in [0, maxBlocks · blockSize)
// and every block id a row reaches in [0, numBlocks) (src/ops/paged-attention.ts checks host tensors).
// k_pool[slots[i]] = k[i], v_pool[slots[i]] = v[i] for k, v [rows, Hkv, D], slots [rows] i32.
void paged_kv_write(void* k_pool, void* v_pool, const void* k, const void* v, DType t, const int32_t* slots, int64_t rows, int Hkv,
                    int D, cudaStream_t stream);
// Bytes of the workspace paged_attention needs for these sizes: 0 when it does not split the positions.
size_t paged_attention_workspace(int N, int Hq, int Hkv, int D, int block_size, int max_blocks);
// out [N, Hq, D] = softmax(q·Kᵀ·scale)·V of q [N, Hq, D] over positions 0..row_pos[i] of sequence
// row_seq[i], position p at slot block_tables[row_seq[i] · max_blocks + p / block_size] · block_size
// + p % block_size; query head h reads kv head h / (Hq / Hkv). D ≤ 256 (16-byte loads when D is a
// multiple of 16 bytes' elements and q and the pools are 16-byte aligned). workspace: at least
// paged_attention_workspace bytes (null when that is 0); a row with row_pos < 0 outputs zeros.
void paged_attention(void* out, const void* q, const void* k_pool, const void* v_pool, DType t, const int32_t* block_tables,
                     const int32_t* row_seq, const int32_t* row_pos, int N, int Hq, int Hkv, int D, int block_size, int max_blocks,
                     float scale, void* workspace, cudaStream_t stream);

}  // namespace lkc
