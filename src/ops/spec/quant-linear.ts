// The quantized linear op (QLoRA's frozen base): y = x · Wᵀ (+ b) with W stored quantized, dequantized
// block by block, never whole; and the CPU's quantize and dequantize entry points for such weights.
import { cuda, host, op, type OpGroup } from './dsl.js';

/** Double-quantized absmax: absmax[j] = code2[absmaxQ[j]] · absmax2[j / blocksize2] + offset. */
const nested = 'absmaxQ:uint8_t* absmax2:float* code2:float* offset:f32';
/** Plain absmax (0 when double-quantized) or the double-quantized one (absmaxQ 0: plain). */
const gemv4bit = 'absmax?:float* absmaxQ?:uint8_t* absmax2?:float* code2?:float* offset:f32 code:int[0..1]';
const gemvSizes = 'm:count outFeatures:count inFeatures:count';

export const quantLinear = {
  ops: {
    /** y [m, out] = x [m, in] · Wᵀ (+ bias [out]) for a quantized W [out, in]. */
    quantLinear: op('y:float = x:float w:quantized bias?:float m'),
    /**
     * dx [m, in] = g [m, out] · W for a quantized W [out, in]; with `accumulate`, dx += g · W (layers
     * that share an input sum their input gradients in place).
     */
    quantLinearBackward: op('dx:float = g:float w:quantized m accumulate:boolean'),
  },
  cpu: {
    /** y [m, rows] = x [m, cols] · Wᵀ (+ bias [rows]), W quantized as QuantArgs describes. */
    quantLinear: host('y:f32 x:f32 bias?:f32 w:quant m'),
    /** dx [m, cols] = g [m, rows] · W (dx += … when accumulating). */
    quantLinearBackward: host('dx:f32 g:f32 w:quant m accumulate:bool'),
    /** out [(n+1)/2] packed nibbles, absmax [ceil(n/blocksize)], x [n]; kind 0 nf4, 1 fp4. */
    quantize4bit: host('out:u8 absmax:f32 x:f32 n blocksize kind'),
    /** out [rows, cols] int8 bits, absmax [rows], x [rows, cols]. */
    quantizeInt8: host('out:u8 absmax:f32 x:f32 rows cols'),
    /** out [(r1 - r0), cols] = rows [r0, r1) of the quantized weight, dequantized to fp32. */
    dequantizeRows: host('out:f32 w:quant r0 r1'),
  },
  cuda: {
    /**
     * out [n] of dtype t from bitsandbytes NF4 (code = 0) or FP4 (code = 1) packed nibbles, absmax f32:
     * table[nibble] · absmax in fp32, rounded once for bf16, exact (the CPU backend's value) for f32.
     */
    dequantize4bit: cuda(
      'lkc::dequantize_4bit',
      'out:ptr t:floatType packed:uint8_t* absmax:float* code:int[0..1] n:count blocksize:dim',
    ),
    /** Same with double-quantized absmax: absmax[j] = code2[absmaxQ[j]] · absmax2[j / blocksize2] + offset. */
    dequantize4bitDq: cuda(
      'lkc::dequantize_4bit_dq',
      `out:ptr t:floatType packed:uint8_t* ${nested} code:int[0..1] n:count blocksize:dim blocksize2:dim`,
    ),
    /** out [rows, cols] of dtype t = int8 q [rows, cols] · scale[row] / 127 (transformers' per-channel int8). */
    dequantizeInt8: cuda(
      'lkc::dequantize_int8',
      'out:ptr t:floatType q:int8_t* scale:float* rows:count cols:count',
    ),
    /**
     * Generation (m ≤ 8 rows): y [m, out] = x [m, in] · Wᵀ (+ bias [out]; 0: none) with out = outFeatures,
     * in = inFeatures; x, y, bias of dtype t. Reads the 4-bit W [out, in] once (no bf16 copy), laid out as
     * for dequantize4bit (element r·in + c of the flattened weight; blocks of `blocksize` may straddle
     * rows): absmax f32 (0 when double-quantized), or absmaxQ (0: plain) with absmax2, code2, offset and
     * blocksize2 as for dequantize4bitDq. Each weight is the value dequantize4bit(Dq) writes for t; fp32
     * products and sums, bias added in fp32, one rounding: dequantize + gemm up to the order of the sums.
     * m = 0 or out = 0 writes nothing, in = 0 writes y = bias (or zeros); m > 8 throws.
     */
    quantGemv4bit: cuda(
      'lkc::quant_gemv_4bit',
      `y:ptr t:floatType x:ptr packed:uint8_t* ${gemv4bit} bias?:ptr ${gemvSizes} blocksize:dim blocksize2:dim`,
    ),
    /** The same with W int8 per row, as dequantizeInt8: W[r, c] = q[r, c] · scale[r] / 127. */
    quantGemvInt8: cuda(
      'lkc::quant_gemv_int8',
      `y:ptr t:floatType x:ptr q:int8_t* scale:float* bias?:ptr ${gemvSizes}`,
    ),
  },
} as const satisfies OpGroup;
