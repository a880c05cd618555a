// Reads an array of file elements into a tensor of another dtype, a few MiB at a time: the file's
// bytes go through one small scratch buffer, never a full-size intermediate copy.
import { cpu } from '../backend/cpu/addon.js';
import { f16ToF32 } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { CHUNK_BYTES, bytesOf, readExact, scratchBytes, type ByteSource } from './bytes.js';

/** Element types found in safetensors and GGUF files that convert elementwise. */
export type RawType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I32' | 'I64' | 'I8' | 'U8' | 'BOOL';

export const RAW_BYTES: Record<RawType, number> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  F64: 8,
  I32: 4,
  I64: 8,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

let f16Table: Float32Array | null = null;
/** All 65536 half values as fp32 (exact), so f16 conversion is one table lookup per element. */
export function f16Lut(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16ToF32(h);
  }
  return f16Table;
}

/**
 * Writes `count` elements of raw type `src` (little-endian bytes in `raw`) into `out` as f32 values,
 * or for integer targets as i32/u8 values (integer sources only). `what` and `base` (index of the first element) locate range errors.
 */
function decode(
  src: RawType,
  raw: ArrayBuffer,
  count: number,
  out: Float32Array | Int32Array | Uint8Array,
  what: string,
  base: number,
): void {
  switch (src) {
    case 'F32':
      out.set(new Float32Array(raw, 0, count));
      return;
    case 'F64':
      out.set(new Float64Array(raw, 0, count)); // rounds to nearest when out is f32
      return;
    case 'F16': {
      const lut = f16Lut();
      const h = new Uint16Array(raw, 0, count);
      for (let i = 0; i < count; i++) out[i] = lut[h[i]];
      return;
    }
    case 'BF16': {
      if (!(out instanceof Float32Array))
        throw new Error(`lorakit: ${what}: bf16 values only convert to floats.`);
      const h = new Uint16Array(raw, 0, count);
      const u = new Uint32Array(out.buffer, out.byteOffset, count);
      for (let i = 0; i < count; i++) u[i] = h[i] << 16;
      return;
    }
    case 'I32':
      out.set(new Int32Array(raw, 0, count));
      return;
    case 'I64': {
      const v = new BigInt64Array(raw, 0, count);
      for (let i = 0; i < count; i++) {
        const x = v[i];
        if (x > 2147483647n || x < -2147483648n)
          throw new Error(`lorakit: ${what}: int64 value ${x} at index ${base + i} does not fit in int32.`);
        out[i] = Number(x);
      }
      return;
    }
    case 'I8':
      out.set(new Int8Array(raw, 0, count));
      return;
    case 'U8':
    case 'BOOL':
      out.set(new Uint8Array(raw, 0, count));
      return;
  }
}

/**
 * Fills tensor `dst` (f32, bf16, f16, i32 or u8) with `dst.size` elements of raw type `type` read from
 * `src` at byte `position`. Float targets take any source; bf16 rounds to nearest even (as torch).
 */
export function readConverted(
  src: ByteSource,
  path: string,
  position: number,
  type: RawType,
  dst: Tensor,
  what: string,
): void {
  const itemBytes = RAW_BYTES[type];
  const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / Math.max(itemBytes, 4)));
  const total = dst.size;
  // A bf16 target goes through an f32 staging area placed after the raw bytes in the scratch buffer.
  const rawSpan = Math.ceil((perChunk * itemBytes) / 8) * 8;
  const buf = scratchBytes(rawSpan + (dst.dtype === 'bf16' ? perChunk * 4 : 0));
  for (let start = 0; start < total; start += perChunk) {
    const n = Math.min(perChunk, total - start);
    readExact(src, new Uint8Array(buf, 0, n * itemBytes), position + start * itemBytes, path);
    const end = start + n;
    switch (dst.dtype) {
      case 'f32':
        decode(type, buf, n, dst.as('f32').subarray(start, end), what, start);
        break;
      case 'i32':
        decode(type, buf, n, dst.as('i32').subarray(start, end), what, start);
        break;
      case 'u8':
        decode(type, buf, n, dst.as('u8').subarray(start, end), what, start);
        break;
      case 'bf16': {
        const f = new Float32Array(buf, rawSpan, n);
        decode(type, buf, n, f, what, start);
        cpu.f32ToBf16(dst.as('bf16').subarray(start, end), f, n);
        break;
      }
      case 'f16':
        throw new Error(`lorakit: ${what}: conversion from ${type} to f16 is not supported.`);
    }
  }
}

/** Reads raw bytes straight into the tensor's native memory (same element type on both sides). */
export function readDirect(src: ByteSource, path: string, position: number, dst: Tensor): void {
  readExact(src, bytesOf(dst.data()), position, path);
}
