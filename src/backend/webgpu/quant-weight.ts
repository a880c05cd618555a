// How WebGPU kernels read a quantized frozen weight (src/quant/weight.ts's layout) element by element,
// with the CPU's fp32 formulas (native/cpu/quant.cc), so every value is the CPU's dequantized value bit
// for bit. The quantized linear's GEMM (quant-linear.ts) and DoRA's weight norm (dora.ts) share it:
//
//   NF4 / FP4   W[e] = code4[nibble e] · absmax[e / bs]      (e = r·in + c; even e in the high nibble)
//   nested      absmax[b] = (code8[qabsmax[b]] · absmax2[b / bs2]) + offset   (product rounded, no FMA)
//   int8        W[r, c] = (q[r, c] · absmax[r]) · f32(1/127)
import { FP4_CODE, NF4_CODE } from '../../quant/codes.js';
import type { QuantizedWeight } from '../../quant/weight.js';
import type { Tensor } from '../../tensor/tensor.js';

/** How a weight keeps its scales: 4-bit with fp32 absmax, 4-bit double-quantized, or int8 rows. */
export type Format = 'blockwise' | 'nested' | 'int8';

export const QUANT_FORMATS: readonly Format[] = ['blockwise', 'nested', 'int8'];

/** The tensors each format binds besides `data`, by name. */
export const SCALES: Record<Format, string[]> = {
  blockwise: ['absmax'],
  nested: ['qabsmax', 'absmax2', 'code8'],
  int8: ['absmax'],
};

/** The scalar parameters weight() reads (a kernel's `params` include them). */
export const WEIGHT_PARAMS = ['cols:u32', 'bs:u32', 'bs2:u32', 'offset:f32', 'zero:u32', 'fp4:u32'] as const;

// WGSL literals of exact f32 bit patterns (a decimal literal would round again).
function f32Bits(values: ArrayLike<number>): string {
  const bits = new Uint32Array(Float32Array.from(values).buffer);
  return Array.from(bits, (b) => `bitcast<f32>(0x${b.toString(16)}u)`).join(', ');
}

/**
 * WGSL of weight(r, c): element [r, c] of W, dequantized. P.zero (always 0) is opaque to the
 * compiler: OR-ing it into a product's bits keeps that product rounded on its own, as the CPU rounds
 * it, where a driver would fuse it into an FMA or reassociate (q·s)·(1/127) into q·(s/127).
 */
export function weightSource(format: Format): string {
  if (format === 'int8')
    return /* wgsl */ `
const INV127 = ${f32Bits([7.874015718698502e-3])};
fn weight(r: u32, c: u32) -> f32 {
  let q = f32(bitcast<i32>(ld_data(r * P.cols + c) << 24u) >> 24u);
  let qs = q * ld_absmax(r);
  return bitcast<f32>(bitcast<u32>(qs) | P.zero) * INV127;
}`;
  const scale =
    format === 'nested'
      ? `let p = ld_code8(ld_qabsmax(b)) * ld_absmax2(b / P.bs2);
  return bitcast<f32>(bitcast<u32>(p) | P.zero) + P.offset;`
      : 'return ld_absmax(b);';
  return /* wgsl */ `
// NF4's 16 values, then FP4's; P.fp4 picks.
var<private> CODE4: array<f32, 32> = array<f32, 32>(${f32Bits([...NF4_CODE, ...FP4_CODE])});
fn blockScale(b: u32) -> f32 {
  ${scale}
}
fn weight(r: u32, c: u32) -> f32 {
  let e = r * P.cols + c;
  let byte = ld_data(e >> 1u);
  let nibble = select(byte & 15u, byte >> 4u, (e & 1u) == 0u);
  return CODE4[P.fp4 * 16u + nibble] * blockScale(e / P.bs);
}`;
}

/** The weight's tensors by binding name, its format and the WEIGHT_PARAMS values that describe it. */
export function weightArgs(w: QuantizedWeight): {
  format: Format;
  tensors: Record<string, Tensor>;
  params: { bs: number; bs2: number; offset: number; fp4: number; cols: number; zero: number };
} {
  if (w.data.dtype !== 'u8')
    throw new Error(`lorakit: a WebGPU quantized weight stores u8 codes, got ${w.data.dtype}.`);
  const cols = w.shape[1];
  if (w.type === 'int8')
    return {
      format: 'int8',
      tensors: { data: w.data, absmax: w.absmax! },
      params: { bs: 1, bs2: 1, offset: 0, fp4: 0, cols, zero: 0 },
    };
  const fp4 = w.type === 'fp4' ? 1 : 0;
  const n = w.nested;
  if (!n)
    return {
      format: 'blockwise',
      tensors: { data: w.data, absmax: w.absmax! },
      params: { bs: w.blocksize, bs2: 1, offset: 0, fp4, cols, zero: 0 },
    };
  return {
    format: 'nested',
    tensors: { data: w.data, qabsmax: n.qabsmax, absmax2: n.absmax2, code8: n.code },
    params: { bs: w.blocksize, bs2: n.blocksize, offset: n.offset, fp4, cols, zero: 0 },
  };
}
