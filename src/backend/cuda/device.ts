// The CUDA device for tensors: memory from the addon's caching allocator, copies to and from the host.
import { DTYPE_BYTES } from '../../tensor/dtype.js';
import { registerDeviceBackend, type Storage, type Tensor } from '../../tensor/tensor.js';
import { CUDA_DTYPE, cudaAddon, cudaUnavailableReason, type CudaAddon, type CudaDType } from './addon.js';

class CudaStorage implements Storage {
  readonly device = 'cuda' as const;
  refs = 1;
  constructor(
    private readonly addon: CudaAddon,
    readonly pointer: number,
    readonly bytes: number,
  ) {}
  free(): void {
    this.addon.free(this.pointer);
  }
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
