import { cpu } from '../backend/cpu/addon.js';
import {
  DTYPE_BYTES,
  bf16ArrayToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  typedView,
  type DType,
  type DTypeArray,
} from './dtype.js';

export type Device = 'cpu' | 'cuda' | 'webgpu';

/** The device whose memory is host memory: tensors are made there from JS values and read back there. */
const HOST: Device = 'cpu';

/**
 * Device memory shared by a tensor and its views. Freed when the last holder releases it; the
 * finalizer of the underlying ArrayBuffer is only a backstop for memory nobody disposed.
 */
export interface Storage {
  readonly device: Device;
  readonly bytes: number;
  /** CPU: the ArrayBuffer over native memory. */
  readonly buffer?: ArrayBuffer;
  /** Other devices: the device address (below 2⁵³, so a number holds it exactly). */
  readonly pointer?: number;
  refs: number;
  free(): void;
}

/** What a device gives tensors: memory, copies to and from the host, and its memory counters. */
export interface DeviceBackend {
  allocate(bytes: number): Storage;
  /** Copies host bytes into storage at byteOffset. */
  write(dst: Storage, byteOffset: number, src: Uint8Array): void;
  /**
   * Copies dst.length bytes of storage from byteOffset to the host (waits for queued work). A device
   * that cannot wait (WebGPU) throws one sentence pointing at readAsync.
   */
  read(dst: Uint8Array, src: Storage, byteOffset: number): void;
  /** The same copy without blocking the thread; absent where read itself never blocks for long. */
  readAsync?(dst: Uint8Array, src: Storage, byteOffset: number): Promise<void>;
  /** Sets bytes of storage to zero. */
  zero(dst: Storage, byteOffset: number, bytes: number): void;
  /** Copies bytes between two storages of this device. */
  copy(dst: Storage, dstByteOffset: number, src: Storage, srcByteOffset: number, bytes: number): void;
  memoryStats(resetPeak: boolean): { liveBytes: number; peakBytes: number };
}

class CpuStorage implements Storage {
  readonly device = 'cpu' as const;
  refs = 1;
  constructor(
    readonly buffer: ArrayBuffer,
    readonly bytes: number,
  ) {}
  free(): void {
    cpu.free(this.buffer);
  }
}

const hostBytes = (s: Storage, byteOffset: number, bytes: number): Uint8Array =>
  new Uint8Array(s.buffer!, byteOffset, bytes);

const backends: Partial<Record<Device, DeviceBackend>> = {
  cpu: {
    allocate: (bytes) => new CpuStorage(cpu.alloc(bytes), bytes),
    write: (dst, off, src) => hostBytes(dst, off, src.length).set(src),
    read: (dst, src, off) => dst.set(hostBytes(src, off, dst.length)),
    zero: (dst, off, bytes) => hostBytes(dst, off, bytes).fill(0),
    copy: (dst, dstOff, src, srcOff, bytes) =>
      hostBytes(dst, dstOff, bytes).set(hostBytes(src, srcOff, bytes)),
    memoryStats: (resetPeak) => {
      const [liveBytes, peakBytes] = cpu.memoryStats(resetPeak);
      return { liveBytes, peakBytes };
    },
  },
};

/** Lets a device backend (CUDA) provide its memory and copies. */
export function registerDeviceBackend(device: Device, backend: DeviceBackend): void {
  backends[device] = backend;
}

function backendOf(device: Device): DeviceBackend {
  const b = backends[device];
  if (!b) throw new Error(`lorakit: the ${device} backend is not available in this build.`);
  return b;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeString(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

// ---- scopes -----------------------------------------------------------------------------------------

const scopes: Set<Tensor>[] = [];

/**
 * Runs fn and disposes every tensor created inside it, except those it returns (a tensor, or an
 * array/object of tensors one level deep) and those marked with keep().
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  const survivors = new Set<Tensor>();
  const collect = (v: unknown): void => {
    if (v instanceof Tensor) survivors.add(v);
  };
  if (Array.isArray(result)) result.forEach(collect);
  else if (result instanceof Tensor) collect(result);
  else if (result !== null && typeof result === 'object') Object.values(result).forEach(collect);
  for (const t of scope) {
    if (survivors.has(t)) scopes.at(-1)?.add(t);
    else t.dispose();
  }
  return result;
}

/** Removes t from the enclosing scopes: it lives until disposed explicitly. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

let nextId = 1;

/**
 * Called for every reshape view; the tape sets it so that a view of a tensor that requires grad passes
 * its gradient back to the source (tensor.ts cannot import the tape itself).
 */
let onView: ((source: Tensor, view: Tensor) => void) | null = null;
export function setViewHook(hook: (source: Tensor, view: Tensor) => void): void {
  onView = hook;
}

export class Tensor {
  readonly id = nextId++;
  /** True for trainable leaves and for results computed from them while the tape records. */
  requiresGrad = false;
  /** Accumulated gradient of a leaf that requires grad. */
  grad: Tensor | null = null;
  /**
   * A lower-precision copy of this tensor for compute (a LoRA factor's bf16 copy on a GPU), made at
   * first use and kept while the values stay: the optimizer rewrites it in the kernel that updates
   * the tensor, and copyFrom / copyElements into the tensor drop it. It is the tensor's own: dispose
   * frees it.
   */
  computeCopy: Tensor | null = null;
  private refs = 1;

  constructor(
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly storage: Storage,
    /** Element offset into storage (views). */
    readonly offset = 0,
  ) {
    scopes.at(-1)?.add(this);
  }

  static empty(shape: readonly number[], dtype: DType = 'f32', device: Device = 'cpu'): Tensor {
    const backend = backendOf(device);
    for (const d of shape)
      if (!Number.isInteger(d) || d < 0)
        throw new Error(`lorakit: invalid tensor shape ${shapeString(shape)}.`);
    return new Tensor([...shape], dtype, backend.allocate(numel(shape) * DTYPE_BYTES[dtype]));
  }

  static zeros(shape: readonly number[], dtype: DType = 'f32', device: Device = 'cpu'): Tensor {
    const t = Tensor.empty(shape, dtype, device);
    backendOf(device).zero(t.storage, 0, t.byteLength);
    return t;
  }

  /** A tensor from numbers (made on the host, then copied to `device`); f32 values are converted to bf16/f16 bits when dtype asks for them. */
  static from(
    values: ArrayLike<number>,
    shape: readonly number[],
    dtype: DType = 'f32',
    device: Device = 'cpu',
  ): Tensor {
    if (device !== HOST) {
      const host = Tensor.from(values, shape, dtype);
      const t = host.toDevice(device);
      host.dispose();
      return t;
    }
    if (values.length !== numel(shape))
      throw new Error(`lorakit: ${values.length} values do not fill shape ${shapeString(shape)}.`);
    const t = Tensor.empty(shape, dtype);
    const d = t.data();
    if (dtype === 'bf16') for (let i = 0; i < values.length; i++) d[i] = f32ToBf16(values[i]);
    else if (dtype === 'f16') for (let i = 0; i < values.length; i++) d[i] = f32ToF16(values[i]);
    else d.set(values);
    return t;
  }

  static scalar(value: number): Tensor {
    return Tensor.from([value], []);
  }

  get size(): number {
    return numel(this.shape);
  }

  get device(): Device {
    return this.storage.device;
  }

  /** Whether the elements are in host memory, readable with data() and as() (checks that read values run only there). */
  get onHost(): boolean {
    return this.storage.buffer !== undefined;
  }

  get byteLength(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }

  /** A copy of this tensor on another device (or a fresh copy on the same one). Not differentiable. */
  toDevice(device: Device): Tensor {
    if (this.disposed) throw new Error(`lorakit: tensor ${this.id} was used after dispose().`);
    const out = Tensor.empty(this.shape, this.dtype, device);
    const byteOffset = this.offset * DTYPE_BYTES[this.dtype];
    if (this.device === HOST)
      backendOf(device).write(out.storage, 0, hostBytes(this.storage, byteOffset, this.byteLength));
    else if (device === HOST)
      backendOf(this.device).read(hostBytes(out.storage, 0, out.byteLength), this.storage, byteOffset);
    else {
      const host = this.toDevice(HOST);
      backendOf(device).write(out.storage, 0, hostBytes(host.storage, 0, host.byteLength));
      host.dispose();
    }
    return out;
  }

  get disposed(): boolean {
    return this.refs <= 0;
  }

  /**
   * Whether this tensor has more than one holder (it was retained), so that writing into it in place
   * would change another holder's values too. A view is a tensor of its own: code that hands out a
   * view of a tensor someone else may write into must check this first (see the tape's reshape).
   */
  get shared(): boolean {
    return this.refs > 1;
  }

  /** The raw typed view of this tensor's elements (CPU only; bf16/f16 as bit patterns). */
  data(): DTypeArray[DType] {
    return this.typed(this.dtype);
  }

  /** Typed view, checking the dtype: `t.as('f32')` is a Float32Array. */
  as<D extends DType>(dtype: D): DTypeArray[D] {
    if (this.dtype !== dtype) throw new Error(`lorakit: expected a ${dtype} tensor, got ${this.dtype}.`);
    return this.typed(dtype);
  }

  // The typed view is made once: creating one costs about a microsecond, several per kernel call.
  private view_: DTypeArray[DType] | null = null;

  private typed<D extends DType>(dtype: D): DTypeArray[D] {
    if (this.disposed)
      throw new Error(`lorakit: tensor ${this.id} ${shapeString(this.shape)} was used after dispose().`);
    if (dtype !== this.dtype) throw new Error(`lorakit: expected a ${dtype} tensor, got ${this.dtype}.`);
    if (this.view_) return this.view_ as DTypeArray[D];
    const buffer = this.storage.buffer;
    if (!buffer) throw new Error(`lorakit: tensor data on ${this.device} must be copied to the CPU first.`);
    const v = typedView(dtype, buffer, this.offset * DTYPE_BYTES[dtype], this.size);
    this.view_ = v;
    return v;
  }

  /** Copies count elements from src (starting at element srcIndex) into dst at dstIndex; same device and dtype. */
  static copyElements(dst: Tensor, dstIndex: number, src: Tensor, srcIndex: number, count: number): void {
    if (dst.device !== src.device || dst.dtype !== src.dtype)
      throw new Error(`lorakit: copyElements needs tensors of one device and dtype.`);
    if (dstIndex + count > dst.size || srcIndex + count > src.size)
      throw new Error(`lorakit: copyElements: ${count} elements do not fit.`);
    const b = DTYPE_BYTES[dst.dtype];
    dst.dropComputeCopy();
    backendOf(dst.device).copy(
      dst.storage,
      (dst.offset + dstIndex) * b,
      src.storage,
      (src.offset + srcIndex) * b,
      count * b,
    );
  }

  /** Overwrites this tensor's elements with src's (same dtype and size, any devices). */
  copyFrom(src: Tensor): void {
    if (src.dtype !== this.dtype || src.size !== this.size)
      throw new Error(
        `lorakit: cannot copy a ${src.dtype} ${shapeString(src.shape)} tensor into a ${this.dtype} ${shapeString(this.shape)} one.`,
      );
    this.dropComputeCopy();
    const host = src.device === HOST ? src : src.toDevice(HOST);
    const bytes = hostBytes(host.storage, host.offset * DTYPE_BYTES[host.dtype], host.byteLength);
    backendOf(this.device).write(this.storage, this.offset * DTYPE_BYTES[this.dtype], bytes);
    if (host !== src) host.dispose();
  }

  /** Frees the compute copy (the values changed, or it is no longer wanted). */
  dropComputeCopy(): void {
    this.computeCopy?.dispose();
    this.computeCopy = null;
  }

  /** A Float32Array copy of the values, whatever the dtype and device (a device tensor is copied over). */
  toFloat32(): Float32Array {
    if (this.device !== HOST) {
      const host = this.toDevice(HOST);
      try {
        return host.toFloat32();
      } finally {
        host.dispose();
      }
    }
    const d = this.data();
    if (this.dtype === 'bf16') return bf16ArrayToF32(this.as('bf16'));
    if (this.dtype === 'f16') return Float32Array.from(d, f16ToF32);
    return Float32Array.from(d);
  }

  /**
   * toFloat32 for every device, WebGPU included (whose reads cannot block): the one way a loop that
   * runs anywhere reads values back.
   */
  async toFloat32Async(): Promise<Float32Array> {
    if (this.device === HOST || !backendOf(this.device).readAsync) return this.toFloat32();
    const host = await this.toHostAsync();
    try {
      return host.toFloat32();
    } finally {
      host.dispose();
    }
  }

  /** A host (CPU) copy of this tensor in its own dtype, read asynchronously where the device needs it. */
  async toHostAsync(): Promise<Tensor> {
    const backend = backendOf(this.device);
    if (this.device === HOST || !backend.readAsync) return this.toDevice(HOST);
    if (this.disposed) throw new Error(`lorakit: tensor ${this.id} was used after dispose().`);
    const host = Tensor.empty(this.shape, this.dtype);
    await backend.readAsync(
      hostBytes(host.storage, 0, host.byteLength),
      this.storage,
      this.offset * DTYPE_BYTES[this.dtype],
    );
    return host;
  }

  item(): number {
    if (this.size !== 1)
      throw new Error(`lorakit: item() needs one element, tensor has shape ${shapeString(this.shape)}.`);
    return this.toFloat32()[0];
  }

  /** A view with another shape over the same elements. */
  reshape(shape: readonly number[]): Tensor {
    const resolved = [...shape];
    const infer = resolved.indexOf(-1);
    if (infer >= 0) resolved[infer] = this.size / numel(resolved.filter((_, i) => i !== infer));
    if (numel(resolved) !== this.size)
      throw new Error(`lorakit: cannot reshape ${shapeString(this.shape)} to ${shapeString(shape)}.`);
    const v = this.view(resolved, this.offset);
    onView?.(this, v);
    return v;
  }

  /** Rows [start, end) along the first dimension, as a view (not differentiable). */
  sliceRows(start: number, end: number): Tensor {
    const row = this.size / this.shape[0];
    return this.view([end - start, ...this.shape.slice(1)], this.offset + start * row);
  }

  /**
   * One view over row blocks that lie back to back, in order, in one storage (views made by sliceRows
   * of one tensor), or null when they do not.
   */
  static spanRows(parts: readonly Tensor[]): Tensor | null {
    const first = parts[0];
    if (!first || first.shape.length === 0) return null;
    const inner = first.shape.slice(1);
    let end = first.offset;
    let rows = 0;
    for (const p of parts) {
      const sameInner =
        p.shape.length === first.shape.length && p.shape.every((d, i) => i === 0 || d === first.shape[i]);
      if (
        p.disposed ||
        p.storage !== first.storage ||
        p.dtype !== first.dtype ||
        p.offset !== end ||
        !sameInner
      )
        return null;
      end += p.size;
      rows += p.shape[0];
    }
    return first.view([rows, ...inner], first.offset);
  }

  private view(shape: number[], offset: number): Tensor {
    this.storage.refs++;
    const v = new Tensor(shape, this.dtype, this.storage, offset);
    v.requiresGrad = false;
    return v;
  }

  /** Keeps this tensor alive for one more dispose() (used by the tape for saved tensors). */
  retain(): this {
    if (this.disposed) throw new Error(`lorakit: cannot retain disposed tensor ${this.id}.`);
    this.refs++;
    return this;
  }

  dispose(): void {
    if (this.refs <= 0) return;
    this.refs--;
    if (this.refs > 0) return;
    this.view_ = null;
    this.grad?.dispose();
    this.grad = null;
    this.dropComputeCopy();
    if (--this.storage.refs === 0) this.storage.free();
  }
}

/** Native memory held by tensors on a device right now, and the peak since the last reset. */
export function memoryStats(
  resetPeak = false,
  device: Device = 'cpu',
): { liveBytes: number; peakBytes: number } {
  return backendOf(device).memoryStats(resetPeak);
}

/** Host copies of named tensors (for writing files), read asynchronously where the device needs it. */
export async function hostCopies(ts: Readonly<Record<string, Tensor>>): Promise<Record<string, Tensor>> {
  const out: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(ts)) out[k] = await t.toHostAsync();
  return out;
}
