// CUDA quantized linear (QLoRA; native/cuda/dequant4.cu, dequant_int8.cu, quant_gemv.cu): each
// quantized weight is dequantized to a temporary in the input's dtype (bf16, or f32 for exact fp32
// math) right before its GEMM and freed right after (the caching allocator hands the same block to the
// next layer), so the model never exists dequantized as a whole. Generation's few rows (m ≤ 8) instead
// take the fused kernel that dequantizes in registers and reads W once (quant_gemv.cu: 3.4× faster at
// m = 1 on an 8B projection). At 2048 rows the separate dequantize adds 13% to the GEMM
// (bench/gpu/NOTES.md), less than a GEMM that dequantizes in its main loop would lose against cuBLASLt.
import type { QuantizedWeight } from '../../quant/weight.js';
import { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import { CUDA_DTYPE, type CudaAddon, type CudaDType } from './addon.js';
import { dt, ptr } from './device.js';
import { floatType, NULL, opt } from './util.js';

/**
 * A quantized weight's dequantized temporaries stay under this size: W [out, in] is dequantized in
 * blocks of whole rows, each used by its GEMM and freed before the next. An 8B MLP matrix is 117 MB in
 * bf16: two blocks lowered that QLoRA step's peak by 48 MiB for 0.9% of its speed (32 MiB blocks:
 * 55 MiB for 4.7%).
 */
const DEQUANT_TILE_BYTES = 64 << 20;

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/**
 * Rows per dequantized block of w: each block must start on a quantization block (and, with double
 * quantization, on a block of the second level), at a multiple of 8 elements (the kernels' vector path)
 * and of 8 rows.
 */
function tileRows(w: QuantizedWeight, elementBytes: number): number {
  const [rows, cols] = w.shape;
  if (rows * cols * elementBytes <= DEQUANT_TILE_BYTES) return rows;
  const align = w.type === 'int8' ? 8 : w.blocksize * (w.nested ? w.nested.blocksize : 1);
  const lcm = (align / gcd(align, 8)) * 8;
  const rowsForAlign = lcm / gcd(cols, lcm); // the fewest rows whose element count is a multiple of lcm
  // ... and a multiple of 8 rows, so each block's slice of the GEMM output starts 16-byte aligned.
  const unit = (rowsForAlign / gcd(rowsForAlign, 8)) * 8;
  const fit = Math.floor(DEQUANT_TILE_BYTES / (cols * elementBytes) / unit) * unit;
  return fit >= unit ? Math.min(rows, fit) : rows;
}

/** Rows [r0, r0 + out.shape[0]) of W [rows, cols] dequantized into out (f32 or bf16). */
function dequantizeRows(cu: CudaAddon, out: Tensor, w: QuantizedWeight, r0: number): void {
  const cols = w.shape[1];
  const count = out.shape[0];
  const t = dt(out);
  if (w.type === 'int8') {
    // q int8 [rows, cols], one f32 scale per row.
    cu.dequantizeInt8(ptr(out), t, ptr(w.data) + r0 * cols, ptr(w.absmax!) + 4 * r0, count, cols);
    return;
  }
  const code = w.type === 'nf4' ? 0 : 1;
  const e0 = r0 * cols; // first element; a multiple of the block sizes (tileRows)
  const packed = ptr(w.data) + e0 / 2;
  const block0 = e0 / w.blocksize;
  const n = w.nested;
  if (n)
    cu.dequantize4bitDq(
      ptr(out),
      t,
      packed,
      ptr(n.qabsmax) + block0,
      ptr(n.absmax2) + 4 * (block0 / n.blocksize),
      ptr(n.code),
      n.offset,
      code,
      count * cols,
      w.blocksize,
      n.blocksize,
    );
  else cu.dequantize4bit(ptr(out), t, packed, ptr(w.absmax!) + 4 * block0, code, count * cols, w.blocksize);
}

/**
 * Runs fn on W [out, in] dequantized block by block: fn(block, r0) with block = rows [r0, r0 + R) in
 * dtype t (f32 or bf16). The one temporary is freed at the end (the caching allocator hands it to the
 * next layer). DoRA's weight norm (dora.ts) reads a quantized weight the same way.
 */
export function eachDequantizedBlock(
  cu: CudaAddon,
  w: QuantizedWeight,
  t: CudaDType,
  fn: (block: Tensor, r0: number) => void,
): void {
  const [rows, cols] = w.shape;
  const dtype = t === CUDA_DTYPE.f32 ? 'f32' : 'bf16';
  const R = tileRows(w, dtype === 'f32' ? 4 : 2);
  const full = Tensor.empty([R, cols], dtype, 'cuda');
  try {
    for (let r0 = 0; r0 < rows; r0 += R) {
      const block = r0 + R <= rows ? full : full.sliceRows(0, rows - r0);
      dequantizeRows(cu, block, w, r0);
      fn(block, r0);
      if (block !== full) block.dispose();
    }
  } finally {
    full.dispose();
  }
}

/** alpha 1, beta, and one item (batch 1, no strides), as cu.gemm takes them. */
const single = (beta: number) => [1, beta, 1, 0, 0, 0] as const;

/** The most rows the fused quantized kernels take (native/cuda/quant_gemv.cu's kMaxRows). */
const QUANT_GEMV_MAX_ROWS = 8;

/** y [m, out] = x [m, in] · Wᵀ (+ bias) for m ≤ 8, W read once and dequantized in registers. */
function quantGemv(
  cu: CudaAddon,
  y: Tensor,
  x: Tensor,
  w: QuantizedWeight,
  bias: Tensor | null,
  m: number,
  t: CudaDType,
): void {
  const [out, inF] = w.shape;
  if (w.type === 'int8') {
    cu.quantGemvInt8(ptr(y), t, ptr(x), ptr(w.data), ptr(w.absmax!), opt(bias), m, out, inF);
    return;
  }
  const n = w.nested;
  cu.quantGemv4bit(
    ptr(y),
    t,
    ptr(x),
    ptr(w.data),
    n ? NULL : ptr(w.absmax!),
    n ? ptr(n.qabsmax) : NULL,
    n ? ptr(n.absmax2) : NULL,
    n ? ptr(n.code) : NULL,
    n ? n.offset : 0,
    w.type === 'nf4' ? 0 : 1,
    opt(bias),
    m,
    out,
    inF,
    w.blocksize,
    n ? n.blocksize : 1,
  );
}

export const quantLinearKernels = (cu: CudaAddon) =>
  ({
    // y [m, out] = x [m, in] · Wᵀ (+ bias): each block of W's rows gives a block of y's columns.
    quantLinear: (y, x, w, bias, m) => {
      const [out, inF] = w.shape;
      const t = floatType('quantLinear', { y, x });
      const esize = t === CUDA_DTYPE.f32 ? 4 : 2;
      const Bias = bias && bias.dtype !== y.dtype ? Tensor.empty(bias.shape, y.dtype, 'cuda') : bias;
      if (Bias && bias && Bias !== bias) cu.cast(ptr(Bias), dt(Bias), ptr(bias), dt(bias), bias.size);
      try {
        if (m <= QUANT_GEMV_MAX_ROWS) {
          quantGemv(cu, y, x, w, Bias, m, t);
          return;
        }
        // Block r0 of W gives columns [r0, r0 + R) of y, rows of `out` elements (ldc).
        eachDequantizedBlock(cu, w, t, (W, r0) => {
          const R = W.shape[0];
          const c = ptr(y) + r0 * esize;
          const b0 = Bias ? ptr(Bias) + r0 * esize : NULL;
          cu.gemm(c, t, ptr(x), t, ptr(W), t, b0, m, R, inF, false, true, ...single(0), 0, 0, out);
        });
      } finally {
        if (Bias && Bias !== bias) Bias.dispose();
      }
    },
    // dx [m, in] (+)= g [m, out] · W = Σ over row blocks of g's matching columns times the block.
    quantLinearBackward: (dx, g, w, m, accumulate) => {
      const [out, inF] = w.shape;
      const t = floatType('quantLinear backward', { dx, g });
      const esize = t === CUDA_DTYPE.f32 ? 4 : 2;
      // Block r0 of W meets columns [r0, r0 + R) of g, rows of `out` elements (lda).
      eachDequantizedBlock(cu, w, t, (W, r0) => {
        const R = W.shape[0];
        const a = ptr(g) + r0 * esize;
        const beta = r0 === 0 && !accumulate ? 0 : 1;
        cu.gemm(ptr(dx), t, a, t, ptr(W), t, NULL, m, inF, R, false, false, ...single(beta), out, 0, 0);
      });
    },
  }) satisfies Kernels;
