/** Element types a tensor can hold. bf16/f16 are stored as raw 16-bit patterns. */
export type DType = 'f32' | 'bf16' | 'f16' | 'i32' | 'u8';

export const DTYPE_BYTES: Record<DType, number> = { f32: 4, bf16: 2, f16: 2, i32: 4, u8: 1 };

/** The typed array that views each dtype's storage. */
export interface DTypeArray {
  f32: Float32Array;
  bf16: Uint16Array;
  f16: Uint16Array;
  i32: Int32Array;
  u8: Uint8Array;
}

export function typedView<D extends DType>(
  dtype: D,
  buffer: ArrayBuffer,
  byteOffset: number,
  length: number,
): DTypeArray[D] {
  // A switch, not a table of closures: this runs for every kernel argument.
  let v: DTypeArray[DType];
  switch (dtype) {
    case 'f32':
      v = new Float32Array(buffer, byteOffset, length);
      break;
    case 'i32':
      v = new Int32Array(buffer, byteOffset, length);
      break;
    case 'u8':
      v = new Uint8Array(buffer, byteOffset, length);
      break;
    default:
      v = new Uint16Array(buffer, byteOffset, length);
  }
  return v as DTypeArray[D];
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** fp32 -> bf16 bits, round to nearest even (as torch does); NaN stays NaN. */
export function f32ToBf16(x: number): number {
  f32Scratch[0] = x;
  const u = u32Scratch[0];
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16ToF32(bits: number): number {
  u32Scratch[0] = bits << 16;
  return f32Scratch[0];
}

/**
 * bf16 bits -> float32 values, a whole array at once: each bf16 is the high half of its float32 bits.
 * (Float32Array.from with bf16ToF32 per element is about 50× slower: a generation step's 128K logits
 * took 16 ms that way.)
 */
export function bf16ArrayToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
  return out;
}

/**
 * float32 values -> bf16 bits, a whole array at once, rounded as f32ToBf16 (and the CPU addon's
 * f32ToBf16) round: what the host converts with where there is no addon (a browser).
 */
export function f32ArrayToBf16(out: Uint16Array, x: Float32Array, n = x.length): void {
  const u = new Uint32Array(x.buffer, x.byteOffset, n);
  for (let i = 0; i < n; i++) {
    const v = u[i];
    out[i] =
      (v & 0x7f800000) === 0x7f800000 && (v & 0x7fffff) !== 0
        ? (v >>> 16) | 0x40
        : (v + 0x7fff + ((v >>> 16) & 1)) >>> 16;
  }
}

/** IEEE half bits -> number. */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** number -> IEEE half bits, round to nearest even. */
export function f32ToF16(x: number): number {
  f32Scratch[0] = x;
  const u = u32Scratch[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) {
    r++;
    if (r === 0x400) {
      r = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | r;
}
