/// <reference types="@webgpu/types" />
// WebGPU memory for tensors: GPU buffers from a cache of size classes. Creating and destroying
// buffers is slow, and the one queue orders every use, so a freed buffer goes back to its class and
// is handed out again at once (work recorded later runs after the work that used it before).
import type { Storage, Tensor } from '../../tensor/tensor.js';
import { webGpu } from './gpu.js';
import { USAGE } from './queue.js';

const USAGE_TENSOR = USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST;

/** The size class of a request: a multiple of 256 bytes, then of 1/8 of the next power of two. */
export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 256) * 256);
  if (b <= 1 << 16) return b;
  const step = 2 ** (Math.ceil(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

const free = new Map<number, GPUBuffer[]>();
let live = 0;
let peak = 0;

export class GpuStorage implements Storage {
  readonly device = 'webgpu' as const;
  refs = 1;
  constructor(
    readonly gpu: GPUBuffer,
    readonly bytes: number,
  ) {}

  free(): void {
    live -= this.gpu.size;
    const list = free.get(this.gpu.size) ?? [];
    list.push(this.gpu);
    free.set(this.gpu.size, list);
  }
}

export function allocate(bytes: number): GpuStorage {
  const size = sizeClass(bytes);
  let buffer = free.get(size)?.pop();
  if (!buffer) {
    const { device } = webGpu();
    if (size > device.limits.maxStorageBufferBindingSize)
      throw new Error(
        `lorakit: a WebGPU tensor of ${bytes} bytes is larger than this adapter binds (${device.limits.maxStorageBufferBindingSize}).`,
      );
    buffer = device.createBuffer({ size, usage: USAGE_TENSOR });
  }
  live += size;
  peak = Math.max(peak, live);
  return new GpuStorage(buffer, bytes);
}

/** The GPU buffer under a webgpu tensor. */
export function gpuBuffer(t: Tensor): GPUBuffer {
  if (t.disposed) throw new Error(`lorakit: tensor ${t.id} was used after dispose().`);
  if (!(t.storage instanceof GpuStorage))
    throw new Error(`lorakit: expected a webgpu tensor, got one on ${t.device}.`);
  return t.storage.gpu;
}

export function memoryStats(resetPeak: boolean): { liveBytes: number; peakBytes: number } {
  const r = { liveBytes: live, peakBytes: peak };
  if (resetPeak) peak = live;
  return r;
}
