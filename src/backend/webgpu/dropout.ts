// WebGPU kernel of inverted dropout (src/ops/spec/dropout.ts), with the CPU backend's mask bit for bit
// (native/cpu/dropout.cc, native/cuda/dropout.cu): element i of the flat tensor is kept when the top 24
// bits of splitmix64(key + i·φ) are ≥ llround(p·2²⁴), key = splitmix64(seed ^ 0x6a09e667f3bcc909),
// and out[i] = x[i] · (kept ? 1/(1 − p) : 0) in f32, p rounded to f32 first as the CPU does. The key,
// threshold and scale are formed on the host with those exact expressions (BigInt for the key: a
// seed is any safe integer, up to 2⁵³); WGSL has no 64-bit integers, so the per-element hash works
// on (lo, hi) u32 pairs.
import type { Kernels } from '../kernels.js';
import { groups256, INDEX } from './elementwise.js';
import { dispatch, type KernelSpec } from './kernel.js';

const M64 = (1n << 64n) - 1n;

// splitmix64's output function, as the CPU's rng::mix64.
function mix64(z: bigint): bigint {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}

const DROPOUT: KernelSpec = {
  name: 'dropout',
  inputs: ['x'],
  outputs: ['out'],
  params: ['n:u32', 'keyLo:u32', 'keyHi:u32', 'threshold:u32', 'scale:f32'],
  source: /* wgsl */ `
// a·b as (lo, hi) of the 64-bit product, from 16-bit halves (each partial product fits a u32).
fn mulWide(a: u32, b: u32) -> vec2u {
  let a0 = a & 0xffffu; let a1 = a >> 16u;
  let b0 = b & 0xffffu; let b1 = b >> 16u;
  let p00 = a0 * b0; let p01 = a0 * b1; let p10 = a1 * b0; let p11 = a1 * b1;
  let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
  return vec2u((mid << 16u) | (p00 & 0xffffu), p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u));
}
// a·b mod 2⁶⁴: the cross terms only reach the high word.
fn mul64(a: vec2u, b: vec2u) -> vec2u {
  let p = mulWide(a.x, b.x);
  return vec2u(p.x, p.y + a.y * b.x + a.x * b.y);
}
fn add64(a: vec2u, b: vec2u) -> vec2u {
  let lo = a.x + b.x;
  return vec2u(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}
// z ^ (z >> s) for 0 < s < 32.
fn xorShift(z: vec2u, s: u32) -> vec2u {
  return vec2u(z.x ^ ((z.x >> s) | (z.y << (32u - s))), z.y ^ (z.y >> s));
}
fn mix64(z0: vec2u) -> vec2u {
  let z1 = mul64(xorShift(z0, 30u), vec2u(0x1ce4e5b9u, 0xbf58476du));
  let z2 = mul64(xorShift(z1, 27u), vec2u(0x133111ebu, 0x94d049bbu));
  return xorShift(z2, 31u);
}
const GOLDEN = vec2u(0x7f4a7c15u, 0x9e3779b9u);
${INDEX}
  if (i >= P.n) { return; }
  let h = mix64(add64(vec2u(P.keyLo, P.keyHi), mul64(vec2u(i, 0u), GOLDEN)));
  // h >> 40 is the top 24 bits: the high word's top 24.
  st_out(i, ld_x(i) * select(0.0, P.scale, (h.y >> 8u) >= P.threshold));
}`,
};

export const dropoutKernels = {
  dropout: (out, x, p, seed) => {
    if (out.dtype !== 'f32' || x.dtype !== 'f32')
      throw new Error(`lorakit: the WebGPU dropout kernel computes in f32, got a ${x.dtype} tensor.`);
    if (!(p >= 0 && p <= 1)) throw new Error(`lorakit: dropout probability must be in [0, 1], got ${p}.`);
    if (!Number.isSafeInteger(seed) || seed < 0)
      throw new Error(`lorakit: dropout seed must be a non-negative safe integer, got ${seed}.`);
    const key = mix64(BigInt(seed) ^ 0x6a09e667f3bcc909n);
    const pf = Math.fround(p);
    // llround of a non-negative double is Math.round; f32 subtraction and division are one rounding
    // each, so fround of the double results gives the CPU's float expressions exactly.
    const threshold = Math.round(pf * 16777216);
    const scale = pf < 1 ? Math.fround(1 / Math.fround(1 - pf)) : 0;
    dispatch(
      DROPOUT,
      { x, out },
      {
        n: x.size,
        keyLo: Number(key & 0xffffffffn),
        keyHi: Number(key >> 32n),
        threshold,
        scale,
      },
      groups256(x.size),
    );
  },
} satisfies Kernels;
