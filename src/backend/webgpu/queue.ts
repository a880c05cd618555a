/// <reference types="@webgpu/types" />
// Work for the WebGPU device is recorded into one command encoder and submitted in batches: at a read
// back, before a host write (queue.writeBuffer runs at submit order, so it must not overtake kernels
// recorded earlier that read the old values), and when the uniform arena is full: each dispatch's small
// parameter block takes a slot of it, uploaded just before its batch is submitted.
import { webGpu } from './gpu.js';

// GPUBufferUsage / GPUMapMode values (the globals are not defined in Node).
export const USAGE = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const;
const MAP_READ = 0x1;

/** Bytes between two dispatches' parameter blocks (WebGPU's minUniformBufferOffsetAlignment is ≤ 256). */
export const PARAM_STRIDE = 256;
const ARENA_BYTES = 256 * PARAM_STRIDE;

class Queue {
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly arena = new ArrayBuffer(ARENA_BYTES);
  private arenaUsed = 0;
  private uniforms: GPUBuffer | null = null;

  private get device(): GPUDevice {
    return webGpu().device;
  }

  /** The open encoder, outside any compute pass (for copies and clears). */
  commands(): GPUCommandEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  /** The open compute pass (take the dispatch's params() first: a full arena submits the batch). */
  computePass(): GPUComputePassEncoder {
    this.pass ??= this.commands().beginComputePass();
    return this.pass;
  }

  /** Room for one dispatch's parameters: the bytes to fill and where they bind. */
  params(bytes: number): { data: DataView; binding: GPUBufferBinding } {
    if (bytes > PARAM_STRIDE)
      throw new Error(`lorakit: a WebGPU kernel's parameters take ${bytes} bytes, over ${PARAM_STRIDE}.`);
    if (this.arenaUsed + PARAM_STRIDE > ARENA_BYTES) this.flush();
    this.uniforms ??= this.device.createBuffer({ size: ARENA_BYTES, usage: USAGE.UNIFORM | USAGE.COPY_DST });
    const offset = this.arenaUsed;
    this.arenaUsed += PARAM_STRIDE;
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    return { data: new DataView(this.arena, offset, size), binding: { buffer: this.uniforms, offset, size } };
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (!this.encoder) return;
    const enc = this.commands();
    this.encoder = null;
    const q = this.device.queue;
    if (this.arenaUsed > 0 && this.uniforms) q.writeBuffer(this.uniforms, 0, this.arena, 0, this.arenaUsed);
    q.submit([enc.finish()]);
    this.arenaUsed = 0;
  }

  /** Host bytes into a buffer, after everything recorded before. */
  write(buffer: GPUBuffer, offset: number, src: Uint8Array): void {
    this.flush();
    this.device.queue.writeBuffer(buffer, offset, src as Uint8Array<ArrayBuffer>, 0, src.length);
  }

  /** bytes of buffer from offset (both multiples of 4), once everything recorded before has run. */
  async read(buffer: GPUBuffer, offset: number, bytes: number): Promise<Uint8Array> {
    const staging = this.device.createBuffer({
      size: Math.max(4, bytes),
      usage: USAGE.MAP_READ | USAGE.COPY_DST,
    });
    try {
      if (bytes > 0) this.commands().copyBufferToBuffer(buffer, offset, staging, 0, bytes);
      this.flush();
      await staging.mapAsync(MAP_READ);
      return new Uint8Array(staging.getMappedRange().slice(0, bytes));
    } finally {
      staging.destroy();
    }
  }
}

export const queue = new Queue();
