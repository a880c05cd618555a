// ggml block quantization for export: Q8_0 and Q4_0 (ggml-common.h layouts), byte-for-byte what
// gguf-py's quants.quantize writes (it mirrors ggml-quants.c's reference quantize_row_*), and F16.
//
// Bit-exactness: gguf-py computes in float32 numpy. Each operation below is done in double and then
// rounded to float32 with Math.fround; for one +, −, × or ÷ of float32 operands that gives the
// correctly rounded float32 result (double carries more than 2·24 + 2 bits), i.e. numpy's.
import { f32ToF16 } from '../tensor/dtype.js';

const fr = Math.fround;

/**
 * block_q8_0 { f16 d; i8 qs[32] }: d = max|x| / 127, q = round-half-away(x · (1/d)), d stored as f16.
 * `x.length` must be a multiple of 32.
 */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % 32 !== 0) throw new Error(`lorakit: Q8_0 needs a multiple of 32 values, got ${x.length}.`);
  const nb = x.length / 32;
  const out = new Uint8Array(nb * 34);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const o = b * 32;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[o + j]));
    const d = fr(amax / 127);
    const id = d === 0 ? 0 : fr(1 / d);
    view.setUint16(b * 34, f32ToF16(d), true);
    for (let j = 0; j < 32; j++) {
      const v = fr(x[o + j] * id);
      const a = Math.abs(v);
      const fl = Math.floor(a);
      const q = fl + Math.floor(2 * (a - fl)); // np_roundf: half away from zero
      view.setInt8(b * 34 + 2 + j, v < 0 ? -q : q);
    }
  }
  return out;
}

/**
 * block_q4_0 { f16 d; u8 qs[16] }: d = (the value of largest magnitude) / −8, q = trunc(x·(1/d) + 8.5)
 * clipped to 15; value j goes in the low nibble of qs[j], value j + 16 in the high nibble.
 */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  if (x.length % 32 !== 0) throw new Error(`lorakit: Q4_0 needs a multiple of 32 values, got ${x.length}.`);
  const nb = x.length / 32;
  const out = new Uint8Array(nb * 18);
  const view = new DataView(out.buffer);
  const q = new Uint8Array(32);
  for (let b = 0; b < nb; b++) {
    const o = b * 32;
    let amax = -1;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const a = Math.abs(x[o + j]);
      if (a > amax) {
        amax = a;
        max = x[o + j]; // the first of equal magnitudes, as numpy's argmax
      }
    }
    const d = fr(max / -8);
    const id = d === 0 ? 0 : fr(1 / d);
    view.setUint16(b * 18, f32ToF16(d), true);
    for (let j = 0; j < 32; j++) {
      const t = Math.trunc(fr(fr(x[o + j] * id) + 8.5));
      q[j] = Math.min(15, Math.max(0, t));
    }
    for (let j = 0; j < 16; j++) out[b * 18 + 2 + j] = q[j] | (q[j + 16] << 4);
  }
  return out;
}

/** IEEE half bits of each value (round to nearest even, as numpy's astype(float16)), little-endian bytes. */
export function encodeF16(x: Float32Array): Uint8Array {
  const h = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) h[i] = f32ToF16(x[i]);
  return new Uint8Array(h.buffer);
}
