import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Element types as the CUDA addon numbers them (native/cuda/lorakit_cuda.h, lkc::DType). */
export const CUDA_DTYPE = { f32: 0, bf16: 1, i32: 2, u8: 3 } as const;
export type CudaDType = (typeof CUDA_DTYPE)[keyof typeof CUDA_DTYPE];

/**
 * The CUDA addon's entry points (native/cuda/addon.cc). Device pointers travel as JS numbers: CUDA's
 * virtual addresses on x86-64 stay below 2⁴⁸, which a double holds exactly, and a number costs
 * nothing to pass where a BigInt allocates. A null pointer (0) marks an optional output left out.
 * Every kernel is enqueued on the addon's one (main) stream and returns at once (offloadAsync and
 * reloadAsync copies run on a second, copy stream, ordered against it); only the copies to the
 * host and `synchronize` wait. Convention: outputs first, then inputs, then
 * sizes and attributes. Activations and frozen weights are f32 or bf16: a kernel over them takes a
 * dtype argument `t` right after the tensors it describes (f32 throughout gives exact fp32 math, bf16
 * the tensor-core speed mode). Errors throw an Error whose message starts with "lorakit: " (a dtype
 * a kernel does not take included).
 */
export interface CudaAddon {
  /** Number of CUDA devices visible (0 when there is no driver or no GPU); never throws. */
  deviceCount(): number;
  /** Name and compute capability of the device in use, e.g. "NVIDIA H200 (sm_90)". */
  deviceName(): string;
  alloc(bytes: number): number;
  free(ptr: number): void;
  /** [allocated, reserved, peak allocated, peak reserved] bytes of the caching allocator. */
  memoryStats(resetPeak: boolean): [number, number, number, number];
  emptyCache(): void;
  /** Host -> device; returns when src may be reused. */
  copyToDevice(dst: number, src: Uint8Array): void;
  /** Device -> host; waits for the work queued before it. */
  copyToHost(dst: Uint8Array, src: number): void;
  copyDeviceToDevice(dst: number, src: number, bytes: number): void;
  synchronize(): void;

  /**
   * Pinned (page-locked) host memory of `bytes` (> 0) bytes, by cudaHostAlloc; returns its address.
   * Only offloadAsync/reloadAsync use it. Slow and may synchronize: pool the buffers.
   */
  pinnedAlloc(bytes: number): number;
  /** Frees a pinnedAlloc buffer (cudaFreeHost), first waiting for the copies queued on the copy stream. */
  pinnedFree(host: number): void;
  /**
   * host[0, bytes) = dev[0, bytes) on the addon's copy stream, after all work already queued on the
   * main stream; returns at once. dev must be a pointer from `alloc` (not an interior address) and the
   * host range inside one pinnedAlloc buffer. `free(dev)` right after is safe: the allocator hands the
   * block out again only once the copy has read it. Nothing may write dev after the call (free it).
   */
  offloadAsync(host: number, dev: number, bytes: number): void;
  /**
   * dev[0, bytes) = host[0, bytes) on the copy stream, after all work already queued on the main stream
   * and after earlier offload/reload copies (so the host buffer may be reused for a later offload at
   * once); returns at once. Returns a handle (a positive integer) for `waitEvent`, which must come
   * before any kernel or copy on the main stream touches dev. dev and host as for offloadAsync.
   */
  reloadAsync(dev: number, host: number, bytes: number): number;
  /**
   * Makes the main stream wait (on the GPU; the host does not) for the reload behind `handle`, and
   * spends the handle: a second call, or a handle reloadAsync did not return, throws.
   */
  waitEvent(handle: number): void;

  /**
   * Records a timing mark (a CUDA event) on the main stream after the work queued so far; returns its
   * number, counted from 0 since the last timerReset. Returns at once.
   */
  timerMark(): number;
  /** Milliseconds of GPU time between two marks; waits until the later one is reached. */
  timerElapsed(from: number, to: number): number;
  /** Forgets every mark (their events are reused by the next timerMark calls). */
  timerReset(): void;

  /** C = alpha·op(A)·op(B) + beta·C (+ bias [n], C's dtype, beta 0 only); row-major, batched. */
  gemm(
    c: number,
    cType: CudaDType,
    a: number,
    aType: CudaDType,
    b: number,
    bType: CudaDType,
    bias: number,
    m: number,
    n: number,
    k: number,
    transA: boolean,
    transB: boolean,
    alpha: number,
    beta: number,
    batch: number,
    strideA: number,
    strideB: number,
    strideC: number,
    /** Leading dimensions in elements (0: packed), for operands that are slices of wider rows. */
    lda: number,
    ldb: number,
    ldc: number,
  ): void;
  /** out[i] = a[i] + b[i mod nb] (nb divides n), fp32 math; out, a, b of dtype t. */
  add(out: number, a: number, b: number, t: CudaDType, n: number, nb: number): void;
  /** out[i] = a[i] · b[i mod nb]. */
  mul(out: number, a: number, b: number, t: CudaDType, n: number, nb: number): void;
  scale(out: number, x: number, alpha: number, t: CudaDType, n: number): void;
  axpy(y: number, yType: CudaDType, x: number, xType: CudaDType, alpha: number, n: number): void;
  cast(out: number, outType: CudaDType, x: number, xType: CudaDType, n: number): void;
  fill(out: number, t: CudaDType, value: number, n: number): void;
  /** acc[0] += Σ x² over x [n] of dtype t (fp32 atomics); acc is one f32, zeroed by the caller. */
  sumSquares(acc: number, x: number, t: CudaDType, n: number): void;
  /** out[r] = Σ_c x[r, c] (fp32 accumulation); out of outType, x of xType. */
  sumRows(out: number, outType: CudaDType, x: number, xType: CudaDType, rows: number, cols: number): void;

  /** y, x [rows, dim] and w [dim] of dtype t (f32 or bf16); f32 rstd [rows]. */
  rmsnormForward(
    y: number,
    rstd: number,
    x: number,
    w: number,
    t: CudaDType,
    rows: number,
    dim: number,
    eps: number,
  ): void;
  /** dx (or 0), dy, x [rows, dim] and w [dim] of dtype t; dw f32 [dim] accumulated (+=, or 0). */
  rmsnormBackward(
    dx: number,
    dw: number,
    dy: number,
    x: number,
    w: number,
    t: CudaDType,
    rstd: number,
    rows: number,
    dim: number,
  ): void;
  /** out, x [rows, H, D] of dtype t (f32 or bf16; in place allowed); f32 cos, sin [P, half]; i32 pos [rows]. */
  ropeForward(
    out: number,
    x: number,
    t: CudaDType,
    cos: number,
    sin: number,
    pos: number,
    rows: number,
    H: number,
    D: number,
    half: number,
  ): void;
  /** dx, dy [rows, H, D] of dtype t: the rotation by −θ. */
  ropeBackward(
    dx: number,
    dy: number,
    t: CudaDType,
    cos: number,
    sin: number,
    pos: number,
    rows: number,
    H: number,
    D: number,
    half: number,
  ): void;
  /** h = silu(g) · u over [n], all of dtype t (f32 or bf16). */
  swigluForward(h: number, g: number, u: number, t: CudaDType, n: number): void;
  /** dg, du (either may be 0), dh, g, u [n] of dtype t. */
  swigluBackward(dg: number, du: number, dh: number, g: number, u: number, t: CudaDType, n: number): void;
  /**
   * out [N, C] of outType = table[ids] with table [V, C] of tableType: bf16 -> bf16, f32 -> bf16
   * (rounded) or f32 -> f32 (exact); other pairs throw. Ids outside [0, V) give zero rows.
   */
  embeddingForward(
    out: number,
    outType: CudaDType,
    ids: number,
    table: number,
    tableType: CudaDType,
    N: number,
    C: number,
    V: number,
  ): void;
  /** dtable [V, C] f32 += scatter of dout [N, C] of dtype t (f32 or bf16; zero dtable first for a fresh gradient). */
  embeddingBackward(
    dtable: number,
    dout: number,
    t: CudaDType,
    ids: number,
    N: number,
    C: number,
    V: number,
  ): void;
  /** rowLoss, lse [N] f32 <- logits [N, V] (f32 or bf16), targets [N] i32 (−100: loss 0, lse 0). */
  crossEntropyForward(
    rowLoss: number,
    lse: number,
    logits: number,
    t: CudaDType,
    targets: number,
    N: number,
    V: number,
  ): void;
  /** dlogits [N, V] (logits' dtype, may alias logits) = gradLoss[0]·(softmax − onehot), 0 on ignored rows; gradLoss f32 on the device. */
  crossEntropyBackward(
    dlogits: number,
    logits: number,
    t: CudaDType,
    targets: number,
    lse: number,
    gradLoss: number,
    N: number,
    V: number,
  ): void;
  linearCrossEntropyWorkspace(N: number, chunk: number): number;
  /**
   * rowLoss, lse [N] f32 (lse 0: not wanted) <- h [N, C], W [V, C] both of dtype t (bf16, or f32 for
   * exact f32 GEMMs), targets [N] i32; logits only [N, chunk] at a time.
   */
  linearCrossEntropyForward(
    rowLoss: number,
    lse: number,
    h: number,
    W: number,
    t: CudaDType,
    targets: number,
    N: number,
    C: number,
    V: number,
    chunk: number,
    workspace: number,
  ): void;
  /** The forward, and dhUnit [N, C] f32 = softmax · W − W[target] (0 on ignored rows). */
  linearCrossEntropyForwardGrad(
    rowLoss: number,
    lse: number,
    dhUnit: number,
    h: number,
    W: number,
    t: CudaDType,
    targets: number,
    N: number,
    C: number,
    V: number,
    chunk: number,
    workspace: number,
  ): void;
  /** out [n] of dtype t = scalar[0] · x [n] f32; scalar is a device pointer to one f32. */
  scaleByScalar(out: number, t: CudaDType, x: number, scalar: number, n: number): void;
  /**
   * torch.optim.AdamW on many tensors at once (one launch per 64): `table` holds 6 numbers per tensor,
   * [p, m, v, pBf16, g, n], with p, m, v, g f32 [n] and pBf16 (0: none) a bf16 [n] that receives the
   * updated p; gradScale f32 [1] on the device (a clip coefficient) or 0.
   */
  adamwStep(
    table: Float64Array,
    gradScale: number,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    weightDecay: number,
    step: number,
  ): void;
  /** torch.optim.SGD on f32 p, g [n] with optional momentum buffer (0 = none). */
  sgdStep(
    p: number,
    buf: number,
    g: number,
    n: number,
    lr: number,
    weightDecay: number,
    momentum: number,
  ): void;
  /** The CPU backend's mask exactly (native/cpu/dropout.cc): out, x of dtype t. */
  dropout(out: number, x: number, t: CudaDType, p: number, seed: number, n: number): void;
  /**
   * out [n] of dtype t from bitsandbytes NF4 (code = 0) or FP4 (code = 1) packed nibbles, absmax f32:
   * table[nibble] · absmax in fp32, rounded once for bf16, exact (the CPU backend's value) for f32.
   */
  dequantize4bit(
    out: number,
    t: CudaDType,
    packed: number,
    absmax: number,
    code: number,
    n: number,
    blocksize: number,
  ): void;
  /** Same with double-quantized absmax: absmax[j] = code2[absmaxQ[j]] · absmax2[j / blocksize2] + offset. */
  dequantize4bitDq(
    out: number,
    t: CudaDType,
    packed: number,
    absmaxQ: number,
    absmax2: number,
    code2: number,
    offset: number,
    code: number,
    n: number,
    blocksize: number,
    blocksize2: number,
  ): void;
  /** out [rows, cols] of dtype t = int8 q [rows, cols] · scale[row] / 127 (transformers' per-channel int8). */
  dequantizeInt8(out: number, t: CudaDType, q: number, scale: number, rows: number, cols: number): void;
  /**
   * Generation (m ≤ 8 rows): y [m, out] = x [m, in] · Wᵀ (+ bias [out]; 0: none) with out = outFeatures,
   * in = inFeatures; x, y, bias of dtype t. Reads the 4-bit W [out, in] once (no bf16 copy), laid out as
   * for dequantize4bit (element r·in + c of the flattened weight; blocks of `blocksize` may straddle
   * rows): absmax f32 (0 when double-quantized), or absmaxQ (0: plain) with absmax2, code2, offset and
   * blocksize2 as for dequantize4bitDq. Each weight is the value dequantize4bit(Dq) writes for t; fp32
   * products and sums, bias added in fp32, one rounding: dequantize + gemm up to the order of the sums.
   * m = 0 or out = 0 writes nothing, in = 0 writes y = bias (or zeros); m > 8 throws.
   */
  quantGemv4bit(
    y: number,
    t: CudaDType,
    x: number,
    packed: number,
    absmax: number,
    absmaxQ: number,
    absmax2: number,
    code2: number,
    offset: number,
    code: number,
    bias: number,
    m: number,
    outFeatures: number,
    inFeatures: number,
    blocksize: number,
    blocksize2: number,
  ): void;
  /** The same with W int8 per row, as dequantizeInt8: W[r, c] = q[r, c] · scale[r] / 127. */
  quantGemvInt8(
    y: number,
    t: CudaDType,
    x: number,
    q: number,
    scale: number,
    bias: number,
    m: number,
    outFeatures: number,
    inFeatures: number,
  ): void;
  /**
   * q, out [B, Tq, Hq, D] and k, v [B, Tk, Hkv, D] of dtype t; i32 segments [B, Tk]; f32 lse [B, Hq, Tq].
   * bf16 with D 64 or 128 runs on tensor cores; f32 (exact fp32 math) and other D on CUDA cores.
   */
  attentionForward(
    out: number,
    lse: number,
    q: number,
    k: number,
    v: number,
    t: CudaDType,
    segments: number,
    B: number,
    Tq: number,
    Tk: number,
    Hq: number,
    Hkv: number,
    D: number,
    scale: number,
  ): void;
  attentionBackwardWorkspace(B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number): number;
  /** dq, dk, dv, dout, out, q, k, v of dtype t (as attentionForward); workspace of attentionBackwardWorkspace bytes. */
  attentionBackward(
    dq: number,
    dk: number,
    dv: number,
    dout: number,
    out: number,
    q: number,
    k: number,
    v: number,
    t: CudaDType,
    lse: number,
    segments: number,
    B: number,
    Tq: number,
    Tk: number,
    Hq: number,
    Hkv: number,
    D: number,
    scale: number,
    workspace: number,
  ): void;
}

function findAddon(): string | null {
  if (process.env.LORAKIT_CUDA_ADDON) return process.env.LORAKIT_CUDA_ADDON;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'build', 'lorakit_cuda.node');
    if (existsSync(candidate)) return candidate;
    dir = resolve(dir, '..');
  }
  return null;
}

let loaded: CudaAddon | null | undefined;
let loadError = '';

/** The CUDA addon, or null when it is not built or no GPU is visible (`cudaUnavailableReason` says why). */
export function cudaAddon(): CudaAddon | null {
  if (loaded !== undefined) return loaded;
  const path = findAddon();
  if (!path) {
    loadError = 'the CUDA backend is not built (it needs nvcc: `npm run build:cuda`)';
    return (loaded = null);
  }
  try {
    const addon = createRequire(import.meta.url)(path) as CudaAddon;
    if (addon.deviceCount() === 0) {
      loadError = 'no CUDA GPU is visible';
      return (loaded = null);
    }
    return (loaded = addon);
  } catch (e) {
    loadError = `the CUDA addon at ${path} failed to load (${(e as Error).message})`;
    return (loaded = null);
  }
}

export function cudaUnavailableReason(): string {
  cudaAddon();
  return loadError;
}
