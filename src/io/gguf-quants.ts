// ggml tensor types and block dequantization (layouts as ggml-common.h, formulas as ggml-quants.c
// dequantize_row_*). Each block type stores `blockSize` values in `typeSize` bytes; scales are f16.
//
// Bit-exactness: every product below is exact in fp32 (an f16 scale has 11 significant bits, the
// integer factors at most 13 more), so each output is one correctly rounded fp32 operation whatever
// the evaluation order or FMA contraction: the same bits as ggml and as gguf-py's numpy dequantize.
// These TypeScript loops are the reference; gguf.ts uses the native kernel when the addon has it.
import { f16Lut } from './convert.js';

export interface GGMLType {
  readonly id: number;
  readonly name: string;
  /** Values per block (1 for plain types). */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
}

const table: [number, string, number, number][] = [
  [0, 'F32', 1, 4],
  [1, 'F16', 1, 2],
  [2, 'Q4_0', 32, 18],
  [3, 'Q4_1', 32, 20],
  [6, 'Q5_0', 32, 22],
  [7, 'Q5_1', 32, 24],
  [8, 'Q8_0', 32, 34],
  [9, 'Q8_1', 32, 36],
  [10, 'Q2_K', 256, 84],
  [11, 'Q3_K', 256, 110],
  [12, 'Q4_K', 256, 144],
  [13, 'Q5_K', 256, 176],
  [14, 'Q6_K', 256, 210],
  [15, 'Q8_K', 256, 292],
  [16, 'IQ2_XXS', 256, 66],
  [17, 'IQ2_XS', 256, 74],
  [18, 'IQ3_XXS', 256, 98],
  [19, 'IQ1_S', 256, 50],
  [20, 'IQ4_NL', 32, 18],
  [21, 'IQ3_S', 256, 110],
  [22, 'IQ2_S', 256, 82],
  [23, 'IQ4_XS', 256, 136],
  [24, 'I8', 1, 1],
  [25, 'I16', 1, 2],
  [26, 'I32', 1, 4],
  [27, 'I64', 1, 8],
  [28, 'F64', 1, 8],
  [29, 'IQ1_M', 256, 56],
  [30, 'BF16', 1, 2],
  [34, 'TQ1_0', 256, 54],
  [35, 'TQ2_0', 256, 66],
  [39, 'MXFP4', 32, 17],
];

/** Every ggml type lorakit knows the size of, by id (so unsupported ones can still be listed/skipped). */
export const GGML_TYPES: ReadonlyMap<number, GGMLType> = new Map(
  table.map(([id, name, blockSize, typeSize]) => [id, { id, name, blockSize, typeSize }]),
);

export function ggmlTypeName(id: number): string {
  return GGML_TYPES.get(id)?.name ?? `unknown type ${id}`;
}

/** Block types lorakit dequantizes, by id. */
export const BLOCK_TYPES: ReadonlySet<number> = new Set([2, 3, 6, 7, 8, 10, 11, 12, 13, 14]);
/** Every type read() accepts: the block types plus F32, F16, BF16. */
export const READABLE_TYPES: ReadonlySet<number> = new Set([0, 1, 30, ...BLOCK_TYPES]);

type Dequant = (src: Uint8Array, dst: Float32Array, nBlocks: number) => void;

// f16 at src[o], src[o+1] (little-endian) as fp32.
const h = (lut: Float32Array, s: Uint8Array, o: number): number => lut[s[o] | (s[o + 1] << 8)];

// block_q4_0 { f16 d; u8 qs[16] }: y[j] = (lo(qs[j]) - 8) d, y[j + 16] = (hi(qs[j]) - 8) d
const q4_0: Dequant = (s, y, nb) => {
  const lut = f16Lut();
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 18, p += 32) {
    const d = h(lut, s, o);
    for (let j = 0; j < 16; j++) {
      const q = s[o + 2 + j];
      y[p + j] = ((q & 15) - 8) * d;
      y[p + j + 16] = ((q >> 4) - 8) * d;
    }
  }
};

// block_q4_1 { f16 d, m; u8 qs[16] }: y = q d + m
const q4_1: Dequant = (s, y, nb) => {
  const lut = f16Lut();
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 20, p += 32) {
    const d = h(lut, s, o);
    const m = h(lut, s, o + 2);
    for (let j = 0; j < 16; j++) {
      const q = s[o + 4 + j];
      y[p + j] = (q & 15) * d + m;
      y[p + j + 16] = (q >> 4) * d + m;
    }
  }
};

// block_q5_0 { f16 d; u8 qh[4]; u8 qs[16] }: 5th bit of value j in bit j of qh (u32 LE); y = (q - 16) d
const q5_0: Dequant = (s, y, nb) => {
  const lut = f16Lut();
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 22, p += 32) {
    const d = h(lut, s, o);
    const qh = (s[o + 2] | (s[o + 3] << 8) | (s[o + 4] << 16) | (s[o + 5] << 24)) >>> 0;
    for (let j = 0; j < 16; j++) {
      const q = s[o + 6 + j];
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      y[p + j] = (((q & 15) | h0) - 16) * d;
      y[p + j + 16] = (((q >> 4) | h1) - 16) * d;
    }
  }
};

// block_q5_1 { f16 d, m; u8 qh[4]; u8 qs[16] }: y = q d + m
const q5_1: Dequant = (s, y, nb) => {
  const lut = f16Lut();
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 24, p += 32) {
    const d = h(lut, s, o);
    const m = h(lut, s, o + 2);
    const qh = (s[o + 4] | (s[o + 5] << 8) | (s[o + 6] << 16) | (s[o + 7] << 24)) >>> 0;
    for (let j = 0; j < 16; j++) {
      const q = s[o + 8 + j];
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      y[p + j] = ((q & 15) | h0) * d + m;
      y[p + j + 16] = ((q >> 4) | h1) * d + m;
    }
  }
};

// block_q8_0 { f16 d; i8 qs[32] }: y = q d
const q8_0: Dequant = (s, y, nb) => {
  const lut = f16Lut();
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 34, p += 32) {
    const d = h(lut, s, o);
    for (let j = 0; j < 32; j++) y[p + j] = ((s[o + 2 + j] << 24) >> 24) * d;
  }
};

// block_q2_K { u8 scales[16]; u8 qs[64]; f16 d, dmin }: 16 sub-blocks of 16, 4-bit scale and min each.
const q2_K: Dequant = (s, y, nb) => {
  const lut = f16Lut();
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 84) {
    const d = h(lut, s, o + 80);
    const min = h(lut, s, o + 82);
    let is = 0;
    for (let n = 0; n < 2; n++) {
      const q = o + 16 + n * 32;
      for (let shift = 0; shift < 8; shift += 2) {
        for (let half = 0; half < 2; half++) {
          const sc = s[o + is++];
          const dl = d * (sc & 15);
          const ml = min * (sc >> 4);
          for (let l = 0; l < 16; l++) y[p++] = dl * ((s[q + half * 16 + l] >> shift) & 3) - ml;
        }
      }
    }
  }
};

// block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }: 16 sub-blocks of 16, 6-bit signed
// scales; value = low 2 bits from qs minus 4 where the hmask bit is clear.
const q3_K: Dequant = (s, y, nb) => {
  const lut = f16Lut();
  const sc = new Int32Array(16);
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 110) {
    const d = h(lut, s, o + 108);
    const a = o + 96;
    for (let k = 0; k < 16; k++) {
      const lo = (s[a + (k & 7)] >> (4 * (k >> 3))) & 15;
      const hi = (s[a + 8 + (k & 3)] >> (2 * (k >> 2))) & 3;
      sc[k] = (lo | (hi << 4)) - 32;
    }
    let is = 0;
    let m = 1;
    for (let n = 0; n < 2; n++) {
      const q = o + 32 + n * 32;
      for (let shift = 0; shift < 8; shift += 2, m <<= 1) {
        for (let half = 0; half < 2; half++) {
          const dl = d * sc[is++];
          for (let l = 0; l < 16; l++) {
            const k = half * 16 + l;
            y[p++] = dl * (((s[q + k] >> shift) & 3) - (s[o + k] & m ? 0 : 4));
          }
        }
      }
    }
  }
};

// The 12 packed bytes of 6-bit (scale, min) pairs of Q4_K/Q5_K (get_scale_min_k4).
function scaleMinK4(s: Uint8Array, q: number, j: number, out: Int32Array): void {
  if (j < 4) {
    out[0] = s[q + j] & 63;
    out[1] = s[q + j + 4] & 63;
  } else {
    out[0] = (s[q + j + 4] & 15) | ((s[q + j - 4] >> 6) << 4);
    out[1] = (s[q + j + 4] >> 4) | ((s[q + j] >> 6) << 4);
  }
}

// block_q4_K { f16 d, dmin; u8 scales[12]; u8 qs[128] }: 8 sub-blocks of 32, y = d·sc·q − dmin·m
const q4_K: Dequant = (s, y, nb) => {
  const lut = f16Lut();
  const sm = new Int32Array(2);
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 144) {
    const d = h(lut, s, o);
    const min = h(lut, s, o + 2);
    for (let j = 0, is = 0; j < 4; j++, is += 2) {
      const q = o + 16 + j * 32;
      scaleMinK4(s, o + 4, is, sm);
      const d1 = d * sm[0];
      const m1 = min * sm[1];
      scaleMinK4(s, o + 4, is + 1, sm);
      const d2 = d * sm[0];
      const m2 = min * sm[1];
      for (let l = 0; l < 32; l++) y[p + l] = d1 * (s[q + l] & 15) - m1;
      for (let l = 0; l < 32; l++) y[p + 32 + l] = d2 * (s[q + l] >> 4) - m2;
      p += 64;
    }
  }
};

// block_q5_K { f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }: Q4_K plus a 5th bit from qh.
const q5_K: Dequant = (s, y, nb) => {
  const lut = f16Lut();
  const sm = new Int32Array(2);
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 176) {
    const d = h(lut, s, o);
    const min = h(lut, s, o + 2);
    const qh = o + 16;
    let u1 = 1;
    let u2 = 2;
    for (let j = 0, is = 0; j < 4; j++, is += 2, u1 <<= 2, u2 <<= 2) {
      const q = o + 48 + j * 32;
      scaleMinK4(s, o + 4, is, sm);
      const d1 = d * sm[0];
      const m1 = min * sm[1];
      scaleMinK4(s, o + 4, is + 1, sm);
      const d2 = d * sm[0];
      const m2 = min * sm[1];
      for (let l = 0; l < 32; l++) y[p + l] = d1 * ((s[q + l] & 15) + (s[qh + l] & u1 ? 16 : 0)) - m1;
      for (let l = 0; l < 32; l++) y[p + 32 + l] = d2 * ((s[q + l] >> 4) + (s[qh + l] & u2 ? 16 : 0)) - m2;
      p += 64;
    }
  }
};

// block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }: 16 sub-blocks of 16, y = d·sc·(q − 32)
const q6_K: Dequant = (s, y, nb) => {
  const lut = f16Lut();
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 210) {
    const d = h(lut, s, o + 208);
    for (let n = 0; n < 2; n++, p += 128) {
      const ql = o + n * 64;
      const qh = o + 128 + n * 32;
      const sc = o + 192 + n * 8;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const hb = s[qh + l];
        const q1 = ((s[ql + l] & 15) | ((hb & 3) << 4)) - 32;
        const q2 = ((s[ql + l + 32] & 15) | (((hb >> 2) & 3) << 4)) - 32;
        const q3 = ((s[ql + l] >> 4) | (((hb >> 4) & 3) << 4)) - 32;
        const q4 = ((s[ql + l + 32] >> 4) | (((hb >> 6) & 3) << 4)) - 32;
        y[p + l] = d * ((s[sc + is] << 24) >> 24) * q1;
        y[p + l + 32] = d * ((s[sc + is + 2] << 24) >> 24) * q2;
        y[p + l + 64] = d * ((s[sc + is + 4] << 24) >> 24) * q3;
        y[p + l + 96] = d * ((s[sc + is + 6] << 24) >> 24) * q4;
      }
    }
  }
};

const DEQUANT: ReadonlyMap<number, Dequant> = new Map([
  [2, q4_0],
  [3, q4_1],
  [6, q5_0],
  [7, q5_1],
  [8, q8_0],
  [10, q2_K],
  [11, q3_K],
  [12, q4_K],
  [13, q5_K],
  [14, q6_K],
]);

/**
 * Dequantizes `nBlocks` blocks of ggml type `type` from `src` (their raw bytes) into `dst`
 * (nBlocks × blockSize fp32 values), in TypeScript.
 */
export function dequantizeBlocksJs(type: number, src: Uint8Array, dst: Float32Array, nBlocks: number): void {
  const fn = DEQUANT.get(type);
  const t = GGML_TYPES.get(type);
  if (!fn || !t) throw new Error(`lorakit: cannot dequantize ggml type ${ggmlTypeName(type)}.`);
  if (src.length < nBlocks * t.typeSize || dst.length < nBlocks * t.blockSize)
    throw new Error(`lorakit: dequantize ${t.name}: buffers too small for ${nBlocks} blocks.`);
  fn(src, dst, nBlocks);
}
