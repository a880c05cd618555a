// GGUF v3 writer (little-endian), laid out as gguf-py's GGUFWriter does: header, metadata, tensor
// infos, padding to `general.alignment` (32), then each tensor's data padded to the alignment. Tensor
// sizes are known from their shapes and types before any data is computed, so the header is written
// first and tensors are produced, encoded and written one at a time.
import { GGUF_TYPE, type GGUFKV, type ScalarKind } from '../io/gguf-kv.js';
import type { OutFile } from './streaming.js';

/** ggml tensor types the exporters write. */
export const GGML = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, BF16: 30 } as const;
export type GGMLOut = keyof typeof GGML;

/** Values per block and bytes per block of each written type. */
export const GGML_BLOCK: Record<GGMLOut, [blockSize: number, typeSize: number]> = {
  F32: [1, 4],
  F16: [1, 2],
  BF16: [1, 2],
  Q8_0: [32, 34],
  Q4_0: [32, 18],
};

export interface GGUFTensorSpec {
  name: string;
  /** Row-major shape (lorakit's order); written reversed, ne0 = the last dimension. */
  shape: readonly number[];
  type: GGMLOut;
}

export const GGUF_ALIGNMENT = 32;

export function tensorBytes(t: GGUFTensorSpec): number {
  const [block, size] = GGML_BLOCK[t.type];
  const n = t.shape.reduce((a, b) => a * b, 1);
  const rowLen = t.shape[t.shape.length - 1] ?? 1;
  if (rowLen % block !== 0)
    throw new Error(
      `lorakit: tensor '${t.name}' has rows of ${rowLen} values, not a multiple of the ${t.type} block size ${block}.`,
    );
  return (n / block) * size;
}

/** A growable little-endian byte buffer for the header. */
class Bytes {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private readonly enc = new TextEncoder();

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): void {
    this.ensure(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  i8(v: number): void {
    this.ensure(1);
    this.view.setInt8(this.length, v);
    this.length += 1;
  }
  u16(v: number): void {
    this.ensure(2);
    this.view.setUint16(this.length, v, true);
    this.length += 2;
  }
  i16(v: number): void {
    this.ensure(2);
    this.view.setInt16(this.length, v, true);
    this.length += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.ensure(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  f32(v: number): void {
    this.ensure(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  f64(v: number): void {
    this.ensure(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }
  u64(v: number | bigint): void {
    this.ensure(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  i64(v: number | bigint): void {
    this.ensure(8);
    this.view.setBigInt64(this.length, BigInt(v), true);
    this.length += 8;
  }
  string(s: string): void {
    const b = this.enc.encode(s);
    this.u64(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  bytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function writeScalar(b: Bytes, kind: ScalarKind, v: number | bigint | boolean | string, key: string): void {
  const num = (): number => {
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new Error(`lorakit: GGUF metadata '${key}' needs a finite number, got ${String(v)}.`);
    return v;
  };
  const int = (lo: number, hi: number): number => {
    const n = num();
    if (!Number.isInteger(n) || n < lo || n > hi)
      throw new Error(`lorakit: GGUF metadata '${key}' value ${n} does not fit ${kind}.`);
    return n;
  };
  switch (kind) {
    case 'u8':
      return b.u8(int(0, 0xff));
    case 'i8':
      return b.i8(int(-0x80, 0x7f));
    case 'u16':
      return b.u16(int(0, 0xffff));
    case 'i16':
      return b.i16(int(-0x8000, 0x7fff));
    case 'u32':
      return b.u32(int(0, 0xffffffff));
    case 'i32':
      return b.i32(int(-0x80000000, 0x7fffffff));
    case 'f32':
      return b.f32(num());
    case 'f64':
      return b.f64(num());
    case 'u64':
      return b.u64(typeof v === 'bigint' ? v : int(0, Number.MAX_SAFE_INTEGER));
    case 'i64':
      return b.i64(typeof v === 'bigint' ? v : int(Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER));
    case 'bool':
      if (typeof v !== 'boolean') throw new Error(`lorakit: GGUF metadata '${key}' needs a boolean.`);
      return b.u8(v ? 1 : 0);
    case 'string':
      if (typeof v !== 'string') throw new Error(`lorakit: GGUF metadata '${key}' needs a string.`);
      return b.string(v);
  }
}

/**
 * The header of a GGUF v3 file (everything before the first tensor's data, padding included) and the
 * data offset of each tensor. Keys must be unique.
 */
export function ggufHeader(
  kvs: readonly GGUFKV[],
  tensors: readonly GGUFTensorSpec[],
): { header: Uint8Array; offsets: number[] } {
  const seen = new Set<string>();
  for (const kv of kvs) {
    if (seen.has(kv.key)) throw new Error(`lorakit: GGUF metadata key '${kv.key}' is set twice.`);
    seen.add(kv.key);
  }
  const b = new Bytes();
  b.u32(0x46554747); // "GGUF"
  b.u32(3);
  b.u64(tensors.length);
  b.u64(kvs.length);
  for (const kv of kvs) {
    b.string(kv.key);
    b.u32(GGUF_TYPE[kv.type]);
    if (kv.type === 'array') {
      b.u32(GGUF_TYPE[kv.elem]);
      b.u64(kv.value.length);
      for (let i = 0; i < kv.value.length; i++) writeScalar(b, kv.elem, kv.value[i], kv.key);
    } else writeScalar(b, kv.type, kv.value, kv.key);
  }
  const offsets: number[] = [];
  let offset = 0;
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new Error(`lorakit: GGUF tensor '${t.name}' is written twice.`);
    names.add(t.name);
    b.string(t.name);
    b.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) b.u64(t.shape[d]);
    b.u32(GGML[t.type]);
    b.u64(offset);
    offsets.push(offset);
    offset += Math.ceil(tensorBytes(t) / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
  }
  const pad = (GGUF_ALIGNMENT - (b.length % GGUF_ALIGNMENT)) % GGUF_ALIGNMENT;
  for (let i = 0; i < pad; i++) b.u8(0);
  return { header: b.bytes(), offsets };
}

/**
 * Writes a whole GGUF file to `out`: the header, then for each tensor the bytes `data(i)` returns
 * (checked against the size its type and shape imply), padded to the alignment.
 */
export function writeGGUF(
  out: OutFile,
  kvs: readonly GGUFKV[],
  tensors: readonly GGUFTensorSpec[],
  data: (i: number) => Uint8Array,
): void {
  const { header } = ggufHeader(kvs, tensors);
  out.write(header);
  const start = out.written;
  tensors.forEach((t, i) => {
    const bytes = data(i);
    const want = tensorBytes(t);
    if (bytes.length !== want)
      throw new Error(`lorakit: GGUF tensor '${t.name}' produced ${bytes.length} bytes, expected ${want}.`);
    out.write(bytes);
    const rel = out.written - start;
    const pad = (GGUF_ALIGNMENT - (rel % GGUF_ALIGNMENT)) % GGUF_ALIGNMENT;
    if (pad > 0) out.write(new Uint8Array(pad));
  });
}
