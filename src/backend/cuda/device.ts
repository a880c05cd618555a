// The CUDA device for tensors: memory from the addon's caching allocator, copies to and from the host.
import { DTYPE_BYTES } from '../../tensor/dtype.js';
import { registerDeviceBackend, type Storage, type Tensor } from '../../tensor/tensor.js';
import { CUDA_DTYPE, cudaAddon, cudaUnavailableReason, type CudaAddon, type CudaDType } from './addon.js';

/** Pinned host buffers by size, reused: cudaHostAlloc/cudaFreeHost are slow and may synchronize. */
const pinnedPool = new Map<number, number[]>();

/**
 * Device memory that can also sit in pinned host memory for a while (offloaded activation checkpoints).
 * Copies run on the addon's copy stream; `pointer` brings the data back (waiting for it) when a kernel
 * or copy needs it, and `prefetch` starts that early so the copy overlaps compute.
 */
class CudaStorage implements Storage {
  readonly device = 'cuda' as const;
  refs = 1;
  private dev: number;
  private host = 0;
  /** The event of a prefetch the main stream has not waited for yet, or -1. */
  private pending = -1;

  constructor(
    private readonly addon: CudaAddon,
    pointer: number,
    readonly bytes: number,
  ) {
    this.dev = pointer;
  }

  get pointer(): number {
    if (this.dev === 0) this.prefetch();
    if (this.pending >= 0) {
      this.addon.waitEvent(this.pending);
      this.pending = -1;
    }
    return this.dev;
  }

  /** Copies the data to pinned host memory and frees the device block (after the copy has read it). */
  offload(): void {
    if (this.dev === 0 || this.bytes === 0) return;
    void this.pointer; // settle a prefetch in flight
    const pool = pinnedPool.get(this.bytes);
    this.host = pool?.pop() ?? this.addon.pinnedAlloc(this.bytes);
    this.addon.offloadAsync(this.host, this.dev, this.bytes);
    this.addon.free(this.dev);
    this.dev = 0;
  }

  /** Starts copying offloaded data back; the first use waits for it. */
  prefetch(): void {
    if (this.dev !== 0) return;
    this.dev = this.addon.alloc(this.bytes);
    this.pending = this.addon.reloadAsync(this.dev, this.host, this.bytes);
    this.releaseHost(); // later copies into it are ordered after this one on the copy stream
  }

  private releaseHost(): void {
    if (this.host === 0) return;
    const pool = pinnedPool.get(this.bytes) ?? [];
    pool.push(this.host);
    pinnedPool.set(this.bytes, pool);
    this.host = 0;
  }

  free(): void {
    if (this.pending >= 0) this.addon.waitEvent(this.pending); // recycles the event
    this.pending = -1;
    if (this.dev !== 0) this.addon.free(this.dev);
    this.dev = 0;
    this.releaseHost();
  }
}

/** Moves a cuda tensor's memory (and its views') to pinned host memory until it is used or prefetched. */
export function offloadToHost(t: Tensor): void {
  if (t.storage instanceof CudaStorage) t.storage.offload();
}

/** Starts bringing an offloaded tensor back to the GPU. */
export function prefetchToDevice(t: Tensor): void {
  if (t.storage instanceof CudaStorage) t.storage.prefetch();
}

let registered: CudaAddon | null = null;

/** The CUDA addon, registering the cuda device for tensors on first use; throws when there is none. */
export function useCuda(): CudaAddon {
  if (registered) return registered;
  const addon = cudaAddon();
  if (!addon) throw new Error(`lorakit: --device cuda is not available: ${cudaUnavailableReason()}.`);
  registerDeviceBackend('cuda', {
    allocate: (bytes) => new CudaStorage(addon, addon.alloc(bytes), bytes),
    write: (dst, off, src) => addon.copyToDevice(dst.pointer! + off, src),
    read: (dst, src, off) => addon.copyToHost(dst, src.pointer! + off),
    zero: (dst, off, bytes) => {
      if (bytes % 4 === 0) addon.fill(dst.pointer! + off, CUDA_DTYPE.f32, 0, bytes / 4);
      else if (bytes % 2 === 0) addon.fill(dst.pointer! + off, CUDA_DTYPE.bf16, 0, bytes / 2);
      else addon.copyToDevice(dst.pointer! + off, new Uint8Array(bytes));
    },
    copy: (dst, dstOff, src, srcOff, bytes) =>
      addon.copyDeviceToDevice(dst.pointer! + dstOff, src.pointer! + srcOff, bytes),
    memoryStats: (resetPeak) => {
      const [allocated, , peak] = addon.memoryStats(resetPeak);
      return { liveBytes: allocated, peakBytes: peak };
    },
  });
  registered = addon;
  return addon;
}

/** Whether `--device cuda` can run here (addon built and a GPU visible). */
export function cudaAvailable(): boolean {
  return cudaAddon() !== null;
}

/** The device address of t's first element. */
export function ptr(t: Tensor): number {
  if (t.device !== 'cuda') throw new Error(`lorakit: expected a cuda tensor, got one on ${t.device}.`);
  if (t.disposed) throw new Error(`lorakit: tensor ${t.id} was used after dispose().`);
  return t.storage.pointer! + t.offset * DTYPE_BYTES[t.dtype];
}

/** The addon's number for t's dtype (f32, bf16, i32, u8). */
export function dt(t: Tensor): CudaDType {
  const code = (CUDA_DTYPE as Record<string, CudaDType | undefined>)[t.dtype];
  if (code === undefined) throw new Error(`lorakit: the CUDA backend has no ${t.dtype} tensors.`);
  return code;
}
