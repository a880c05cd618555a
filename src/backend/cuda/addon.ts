import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CudaParams } from '../../ops/spec/dsl.js';
import type { CudaBindings } from '../../ops/spec/index.js';

/** Element types as the CUDA addon numbers them (native/cuda/lorakit_cuda.h, lkc::DType). */
export const CUDA_DTYPE = { f32: 0, bf16: 1, i32: 2, u8: 3 } as const;
export type CudaDType = (typeof CUDA_DTYPE)[keyof typeof CUDA_DTYPE];

/**
 * The CUDA addon's kernel entry points, as the op declarations give them (src/ops/spec/; their N-API
 * wrappers are generated from the same declarations into native/cuda/addon_bindings.inc).
 */
export type CudaKernelEntries = {
  [K in keyof CudaBindings]: (
    ...args: CudaParams<CudaBindings[K]['signature'], CudaDType>
  ) => CudaBindings[K]['returns'] extends 'size' ? number : void;
};

/**
 * The CUDA addon (native/cuda/addon.cc): its kernel entry points and its device, memory, copy and
 * timing functions. Device pointers travel as JS numbers: CUDA's
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
export interface CudaAddon extends CudaKernelEntries {
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
