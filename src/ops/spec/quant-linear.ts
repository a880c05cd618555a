// The quantized linear op (QLoRA's frozen base): y = x · Wᵀ (+ b) with W stored quantized, dequantized
// block by block, never whole; and the CPU's quantize and dequantize entry points for such weights.
import {
  bool,
  cpuCall,
  cu,
  cudaCall,
  host,
  input,
  num,
  op,
  optInput,
  out,
  quantized,
  type OpGroup,
} from './dsl.js';

export const quantLinear = {
  ops: {
    /** y [m, out] = x [m, in] · Wᵀ (+ bias [out]) for a quantized W [out, in]. */
    quantLinear: op(
      out('y', 'float'),
      input('x', 'float'),
      quantized('w'),
      optInput('bias', 'float'),
      num('m'),
    ),
    /**
     * dx [m, in] = g [m, out] · W for a quantized W [out, in]; with `accumulate`, dx += g · W (layers
     * that share an input sum their input gradients in place).
     */
    quantLinearBackward: op(
      out('dx', 'float'),
      input('g', 'float'),
      quantized('w'),
      num('m'),
      bool('accumulate'),
    ),
  },
  cpu: {
    /** y [m, rows] = x [m, cols] · Wᵀ (+ bias [rows]), W quantized as QuantArgs describes. */
    quantLinear: cpuCall(host.f32('y'), host.f32('x'), host.optF32('bias'), host.quant('w'), host.num('m')),
    /** dx [m, cols] = g [m, rows] · W (dx += … when accumulating). */
    quantLinearBackward: cpuCall(
      host.f32('dx'),
      host.f32('g'),
      host.quant('w'),
      host.num('m'),
      host.bool('accumulate'),
    ),
    /** out [(n+1)/2] packed nibbles, absmax [ceil(n/blocksize)], x [n]; kind 0 nf4, 1 fp4. */
    quantize4bit: cpuCall(
      host.u8('out'),
      host.f32('absmax'),
      host.f32('x'),
      host.num('n'),
      host.num('blocksize'),
      host.num('kind'),
    ),
    /** out [rows, cols] int8 bits, absmax [rows], x [rows, cols]. */
    quantizeInt8: cpuCall(
      host.u8('out'),
      host.f32('absmax'),
      host.f32('x'),
      host.num('rows'),
      host.num('cols'),
    ),
    /** out [(r1 - r0), cols] = rows [r0, r1) of the quantized weight, dequantized to fp32. */
    dequantizeRows: cpuCall(host.f32('out'), host.quant('w'), host.num('r0'), host.num('r1')),
  },
  cuda: {
    /**
     * out [n] of dtype t from bitsandbytes NF4 (code = 0) or FP4 (code = 1) packed nibbles, absmax f32:
     * table[nibble] · absmax in fp32, rounded once for bf16, exact (the CPU backend's value) for f32.
     */
    dequantize4bit: cudaCall('lkc::dequantize_4bit', [
      cu.ptr('out'),
      cu.floatType('t'),
      cu.ptr('packed', 'uint8_t'),
      cu.ptr('absmax', 'float'),
      cu.int('code', 0, 1),
      cu.count('n'),
      cu.dim('blocksize'),
    ]),
    /** Same with double-quantized absmax: absmax[j] = code2[absmaxQ[j]] · absmax2[j / blocksize2] + offset. */
    dequantize4bitDq: cudaCall('lkc::dequantize_4bit_dq', [
      cu.ptr('out'),
      cu.floatType('t'),
      cu.ptr('packed', 'uint8_t'),
      cu.ptr('absmaxQ', 'uint8_t'),
      cu.ptr('absmax2', 'float'),
      cu.ptr('code2', 'float'),
      cu.f32('offset'),
      cu.int('code', 0, 1),
      cu.count('n'),
      cu.dim('blocksize'),
      cu.dim('blocksize2'),
    ]),
    /** out [rows, cols] of dtype t = int8 q [rows, cols] · scale[row] / 127 (transformers' per-channel int8). */
    dequantizeInt8: cudaCall('lkc::dequantize_int8', [
      cu.ptr('out'),
      cu.floatType('t'),
      cu.ptr('q', 'int8_t'),
      cu.ptr('scale', 'float'),
      cu.count('rows'),
      cu.count('cols'),
    ]),
    /**
     * Generation (m ≤ 8 rows): y [m, out] = x [m, in] · Wᵀ (+ bias [out]; 0: none) with out = outFeatures,
     * in = inFeatures; x, y, bias of dtype t. Reads the 4-bit W [out, in] once (no bf16 copy), laid out as
     * for dequantize4bit (element r·in + c of the flattened weight; blocks of `blocksize` may straddle
     * rows): absmax f32 (0 when double-quantized), or absmaxQ (0: plain) with absmax2, code2, offset and
     * blocksize2 as for dequantize4bitDq. Each weight is the value dequantize4bit(Dq) writes for t; fp32
     * products and sums, bias added in fp32, one rounding: dequantize + gemm up to the order of the sums.
     * m = 0 or out = 0 writes nothing, in = 0 writes y = bias (or zeros); m > 8 throws.
     */
    quantGemv4bit: cudaCall('lkc::quant_gemv_4bit', [
      cu.ptr('y'),
      cu.floatType('t'),
      cu.ptr('x'),
      cu.ptr('packed', 'uint8_t'),
      cu.optPtr('absmax', 'float'),
      cu.optPtr('absmaxQ', 'uint8_t'),
      cu.optPtr('absmax2', 'float'),
      cu.optPtr('code2', 'float'),
      cu.f32('offset'),
      cu.int('code', 0, 1),
      cu.optPtr('bias'),
      cu.count('m'),
      cu.count('outFeatures'),
      cu.count('inFeatures'),
      cu.dim('blocksize'),
      cu.dim('blocksize2'),
    ]),
    /** The same with W int8 per row, as dequantizeInt8: W[r, c] = q[r, c] · scale[r] / 127. */
    quantGemvInt8: cudaCall('lkc::quant_gemv_int8', [
      cu.ptr('y'),
      cu.floatType('t'),
      cu.ptr('x'),
      cu.ptr('q', 'int8_t'),
      cu.ptr('scale', 'float'),
      cu.optPtr('bias'),
      cu.count('m'),
      cu.count('outFeatures'),
      cu.count('inFeatures'),
    ]),
  },
} as const satisfies OpGroup;
