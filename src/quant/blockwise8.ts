// 8-bit blockwise quantization with a 256-value code (bitsandbytes' quantize_blockwise on the CPU),
// used for double quantization: the fp32 absmax constants of a 4-bit weight are few (one per 64
// weights), so this runs in TypeScript.
import { DYNAMIC_MAP } from './codes.js';

const LUT_SIZE = 65536;
const lutCache = new WeakMap<Float32Array, Uint8Array>();

/**
 * bitsandbytes' CPU quantizer maps x/absmax in [-1, 1] onto 65536 bins, each bin to the code index
 * whose midpoint interval holds the bin's centre: index = trunc(((v + 1) · 0.5) · 65535 + 0.5), each
 * step rounded to fp32. Nearest-code except within 1/65535 of a midpoint, where the bin decides.
 */
function quantizeLut(code: Float32Array): Uint8Array {
  const hit = lutCache.get(code);
  if (hit) return hit;
  const f = Math.fround;
  const mid = new Float32Array(255);
  for (let i = 0; i < 255; i++) mid[i] = f(0.5 * f(code[i] + code[i + 1]));
  const lut = new Uint8Array(LUT_SIZE);
  let idx = 0;
  for (let i = 0; i < LUT_SIZE; i++) {
    const val = f(-1 + f(f(2 * i) / 65535));
    while (idx < 255 && mid[idx] < val) idx++;
    lut[i] = idx;
  }
  lutCache.set(code, lut);
  return lut;
}

export interface Blockwise8 {
  /** One code index per value. */
  q: Uint8Array;
  /** max |x| per block. */
  absmax: Float32Array;
}

/** x -> 8-bit codes in blocks of `blocksize` (256 for double quantization), bit-exact with bitsandbytes. */
export function quantizeBlockwise8(
  x: Float32Array,
  blocksize = 256,
  code: Float32Array = DYNAMIC_MAP,
): Blockwise8 {
  const f = Math.fround;
  const lut = quantizeLut(code);
  const n = x.length;
  const nb = Math.ceil(n / blocksize);
  const q = new Uint8Array(n);
  const absmax = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    const s = b * blocksize;
    const e = Math.min(n, s + blocksize);
    let am = 0;
    for (let i = s; i < e; i++) am = Math.max(am, Math.abs(x[i]));
    absmax[b] = am;
    if (am === 0) continue;
    const inv = f(1 / am);
    for (let i = s; i < e; i++) {
      const v = Math.min(1, Math.max(-1, f(x[i] * inv)));
      const t = f(f(f(f(v + 1) * 0.5) * 65535) + 0.5);
      q[i] = lut[Math.trunc(t)];
    }
  }
  return { q, absmax };
}

/** code[q] · absmax per block, in fp32. */
export function dequantizeBlockwise8(
  q: Uint8Array,
  absmax: Float32Array,
  blocksize = 256,
  code: Float32Array = DYNAMIC_MAP,
): Float32Array {
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = code[q[i]] * absmax[Math.floor(i / blocksize)];
  return out;
}
