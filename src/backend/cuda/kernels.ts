// The CUDA implementations of the op table (src/backend/kernels.ts), on native/cuda through the addon.
// Activations and frozen weights are bf16 (tensor cores, the speed mode) or f32 (exact fp32 math, the
// exactness mode): each op runs in the one dtype its float tensors share, with fp32 accumulation either
// way; trainable weights, their gradients and optimizer state are f32. In bf16 mode an f32 operand
// meeting a bf16 one in a GEMM (a LoRA matrix against activations) is rounded to a bf16 copy first: it
// is small (r × features), and tensor cores then take the whole product. f32 · f32 stays f32.
import { registerKernel, type KernelTable } from '../kernels.js';
import type { GemmAttrs } from '../../ops/matmul.js';
import type { QuantizedWeight } from '../../quant/weight.js';
import { Tensor } from '../../tensor/tensor.js';
import { CUDA_DTYPE, type CudaAddon, type CudaDType } from './addon.js';
import { dt, ptr, useCuda } from './device.js';

// Registering needs the op modules' declarations only (types), so the ops stay independent of this
// backend; the addon itself is loaded only when a GPU is asked for (registerCudaKernels).
import type {} from '../../ops/attention.js';
import type {} from '../../ops/cross-entropy.js';
import type {} from '../../ops/dropout.js';
import type {} from '../../ops/elementwise.js';
import type {} from '../../ops/embedding.js';
import type {} from '../../ops/linear-cross-entropy.js';
import type {} from '../../ops/optim.js';
import type {} from '../../ops/rmsnorm.js';
import type {} from '../../ops/rope.js';
import type {} from '../../ops/swiglu.js';
import type {} from '../../quant/linear.js';

/**
 * Vocabulary columns per chunk of the fused head + loss: about 8 M logits at a time (32 MiB f32 plus a
 * bf16 copy), a power of two between 1024 and 16384, so the workspace stays small at any row count
 * and each chunk is still a large GEMM.
 */
function lceChunk(N: number, V: number): number {
  let chunk = 16384;
  while (chunk > 1024 && N * chunk > 1 << 23) chunk /= 2;
  return Math.min(chunk, V);
}

const NULL = 0;
const opt = (t: Tensor | null): number => (t ? ptr(t) : NULL);

function expect(t: Tensor, dtype: Tensor['dtype'], op: string, name: string): void {
  if (t.dtype !== dtype) throw new Error(`lorakit: ${op} on cuda: ${name} must be ${dtype}, got ${t.dtype}.`);
}

/**
 * The addon dtype of an op's float tensors (activations, frozen weights; null: an output left out),
 * which must all be f32 or all bf16: the kernels take one dtype per call.
 */
function floatType(op: string, tensors: Record<string, Tensor | null>): CudaDType {
  const given = Object.entries(tensors).filter((e): e is [string, Tensor] => e[1] !== null);
  const dtype = given[0]?.[1].dtype;
  if ((dtype === 'f32' || dtype === 'bf16') && given.every(([, t]) => t.dtype === dtype))
    return CUDA_DTYPE[dtype];
  const names = given.map(([name]) => name).join(', ');
  const got = given.map(([name, t]) => `${name} ${t.dtype}`).join(', ');
  throw new Error(`lorakit: ${op} on cuda: ${names} must be all f32 or all bf16, got ${got}.`);
}

/** t as bf16: t itself, or a temporary copy the caller disposes (`owned`). */
function asBf16(cu: CudaAddon, t: Tensor): { t: Tensor; owned: boolean } {
  if (t.dtype === 'bf16') return { t, owned: false };
  const c = Tensor.empty(t.shape, 'bf16', 'cuda');
  cu.cast(ptr(c), CUDA_DTYPE.bf16, ptr(t), dt(t), t.size);
  return { t: c, owned: true };
}

function withTemps<T>(temps: { t: Tensor; owned: boolean }[], fn: () => T): T {
  try {
    return fn();
  } finally {
    for (const x of temps) if (x.owned) x.t.dispose();
  }
}

function gemm(cu: CudaAddon, c: Tensor, a: Tensor, b: Tensor, bias: Tensor | null, g: GemmAttrs): void {
  // cuBLASLt takes both inputs in one dtype: f32·f32 (exact, C f32) or bf16·bf16 (C bf16 or f32).
  const mixed = a.dtype !== b.dtype || c.dtype === 'bf16';
  const A = mixed ? asBf16(cu, a) : { t: a, owned: false };
  const B = mixed ? asBf16(cu, b) : { t: b, owned: false };
  let Bias: { t: Tensor; owned: boolean } | null = null;
  if (bias) {
    if (bias.dtype === c.dtype) Bias = { t: bias, owned: false };
    else {
      const t = Tensor.empty(bias.shape, c.dtype, 'cuda');
      cu.cast(ptr(t), dt(t), ptr(bias), dt(bias), bias.size);
      Bias = { t, owned: true };
    }
  }
  withTemps([A, B, ...(Bias ? [Bias] : [])], () =>
    cu.gemm(
      ptr(c),
      dt(c),
      ptr(A.t),
      dt(A.t),
      ptr(B.t),
      dt(B.t),
      Bias ? ptr(Bias.t) : NULL,
      g.m,
      g.n,
      g.k,
      g.transA,
      g.transB,
      g.alpha,
      g.beta,
      g.batch,
      g.strideA,
      g.strideB,
      g.strideC,
      0,
      0,
      0,
    ),
  );
}

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
 * next layer).
 */
function eachDequantizedBlock(
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

const plainGemm = (m: number, n: number, k: number, transB: boolean): GemmAttrs => ({
  batch: 1,
  m,
  n,
  k,
  transA: false,
  transB,
  alpha: 1,
  beta: 0,
  strideA: m * k,
  strideB: k * n,
  strideC: m * n,
});

let registered = false;

/** Registers the CUDA device and every CUDA kernel; throws when CUDA is not available. */
export function registerCudaKernels(): void {
  if (registered) return;
  const cu = useCuda();
  const reg = <K extends keyof KernelTable>(name: K, impl: KernelTable[K]): void =>
    registerKernel('cuda', name, impl);

  reg('gemm', (c, a, b, bias, g) => gemm(cu, c, a, b, bias, g));
  reg('add', (out, a, b) => cu.add(ptr(out), ptr(a), ptr(b), dt(a), a.size, b.size));
  reg('mul', (out, a, b) => cu.mul(ptr(out), ptr(a), ptr(b), dt(a), a.size, b.size));
  reg('axpy', (y, x, alpha) => cu.axpy(ptr(y), dt(y), ptr(x), dt(x), alpha, y.size));
  reg('scale', (out, x, alpha) => cu.scale(ptr(out), ptr(x), alpha, dt(x), x.size));
  reg('sumRows', (out, x, rows, cols) => cu.sumRows(ptr(out), dt(out), ptr(x), dt(x), rows, cols));
  reg('cast', (out, x) => {
    if (out.dtype === x.dtype) cu.copyDeviceToDevice(ptr(out), ptr(x), out.byteLength);
    else cu.cast(ptr(out), dt(out), ptr(x), dt(x), x.size);
  });
  reg('fill', (out, value) => cu.fill(ptr(out), dt(out), value, out.size));
  reg('sumColumns', (out, x, rows, cols) => {
    const ones = Tensor.empty([rows], x.dtype, 'cuda');
    cu.fill(ptr(ones), dt(ones), 1, rows);
    try {
      gemm(cu, out, ones, x, null, { ...plainGemm(1, cols, rows, false), strideB: rows * cols });
    } finally {
      ones.dispose();
    }
  });

  reg('rmsnormForward', (y, rstd, x, weight, eps) => {
    const t = floatType('rmsnorm', { y, x, weight });
    cu.rmsnormForward(ptr(y), ptr(rstd), ptr(x), ptr(weight), t, rstd.size, weight.size, eps);
  });
  reg('rmsnormBackward', (dx, dweight, dy, x, weight, rstd) => {
    if (dweight) expect(dweight, 'f32', 'rmsnorm backward', 'dweight');
    const t = floatType('rmsnorm backward', { dx, dy, x, weight });
    cu.rmsnormBackward(
      opt(dx),
      opt(dweight),
      ptr(dy),
      ptr(x),
      ptr(weight),
      t,
      ptr(rstd),
      rstd.size,
      weight.size,
    );
  });
  reg('ropeForward', (out, x, cos, sin, positions) => {
    const [B, T, H, D] = x.shape;
    const t = floatType('rope', { out, x });
    cu.ropeForward(ptr(out), ptr(x), t, ptr(cos), ptr(sin), ptr(positions), B * T, H, D, cos.shape[1]);
  });
  reg('ropeBackward', (dx, dy, cos, sin, positions) => {
    const [B, T, H, D] = dy.shape;
    const t = floatType('rope backward', { dx, dy });
    cu.ropeBackward(ptr(dx), ptr(dy), t, ptr(cos), ptr(sin), ptr(positions), B * T, H, D, cos.shape[1]);
  });
  reg('swigluForward', (out, gate, up) => {
    const t = floatType('swiglu', { out, gate, up });
    cu.swigluForward(ptr(out), ptr(gate), ptr(up), t, out.size);
  });
  reg('swigluBackward', (dgate, dup, dy, gate, up) => {
    const t = floatType('swiglu backward', { dgate, dup, dy, gate, up });
    cu.swigluBackward(opt(dgate), opt(dup), ptr(dy), ptr(gate), ptr(up), t, dy.size);
  });
  // A bf16 table gives bf16 rows; an f32 one f32 rows (exact) or bf16 rows (rounded); the addon says
  // when a pair is not one of these.
  reg('embeddingForward', (out, table, ids) => {
    const [V, D] = table.shape;
    cu.embeddingForward(ptr(out), dt(out), ptr(ids), ptr(table), dt(table), ids.size, D, V);
  });
  reg('embeddingBackward', (dtable, dy, ids) => {
    const [V, D] = dtable.shape;
    expect(dtable, 'f32', 'embedding backward', 'dtable');
    const t = floatType('embedding backward', { dy });
    cu.fill(ptr(dtable), CUDA_DTYPE.f32, 0, dtable.size);
    cu.embeddingBackward(ptr(dtable), ptr(dy), t, ptr(ids), ids.size, D, V);
  });
  reg('dropout', (out, x, p, seed) => cu.dropout(ptr(out), ptr(x), dt(x), p, seed, x.size));

  reg('crossEntropyForward', (loss, lse, rowLoss, logits, targets) => {
    const [N, V] = logits.shape;
    const rows = rowLoss ?? Tensor.empty([N], 'f32', 'cuda');
    cu.crossEntropyForward(ptr(rows), ptr(lse), ptr(logits), dt(logits), ptr(targets), N, V);
    cu.sumRows(ptr(loss), CUDA_DTYPE.f32, ptr(rows), CUDA_DTYPE.f32, 1, N);
    if (!rowLoss) rows.dispose();
  });
  reg('crossEntropyBackward', (dlogits, logits, targets, lse, gradLoss) => {
    const [N, V] = logits.shape;
    const g = gradLoss.device === 'cuda' ? gradLoss : gradLoss.toDevice('cuda');
    cu.crossEntropyBackward(ptr(dlogits), ptr(logits), dt(logits), ptr(targets), ptr(lse), ptr(g), N, V);
    if (g !== gradLoss) g.dispose();
  });
  const lceWorkspace = (N: number, V: number): Tensor =>
    Tensor.empty([cu.linearCrossEntropyWorkspace(N, lceChunk(N, V))], 'u8', 'cuda');
  reg('linearCrossEntropyForward', (rowLoss, dhUnit, h, w, targets) => {
    const [N, D] = h.shape;
    const V = w.shape[0];
    const t = floatType('linearCrossEntropy', { h, w });
    if (dhUnit) expect(dhUnit, 'f32', 'linearCrossEntropy', 'dhUnit');
    const ws = lceWorkspace(N, V);
    const chunk = lceChunk(N, V);
    if (dhUnit)
      cu.linearCrossEntropyForwardGrad(
        ptr(rowLoss),
        NULL,
        ptr(dhUnit),
        ptr(h),
        ptr(w),
        t,
        ptr(targets),
        N,
        D,
        V,
        chunk,
        ptr(ws),
      );
    else
      cu.linearCrossEntropyForward(
        ptr(rowLoss),
        NULL,
        ptr(h),
        ptr(w),
        t,
        ptr(targets),
        N,
        D,
        V,
        chunk,
        ptr(ws),
      );
    ws.dispose();
  });
  // The scalar (e.g. a loss gradient) is read by the kernel on the device: no host sync.
  reg('scaleByScalar', (out, x, scalar) => {
    expect(x, 'f32', 'scaleByScalar', 'x');
    expect(scalar, 'f32', 'scaleByScalar', 'scalar');
    const s = scalar.device === 'cuda' ? scalar : scalar.toDevice('cuda');
    cu.scaleByScalar(ptr(out), floatType('scaleByScalar', { out }), ptr(x), ptr(s), x.size);
    if (s !== scalar) s.dispose();
  });

  // All of a model's tensors in one call (the addon launches once per 64); each slot's bf16 compute
  // copy is rewritten in the same pass, so the next forward needs no cast.
  reg('adamwStep', (slots, o) => {
    const table = new Float64Array(slots.length * 6);
    slots.forEach(({ param, m, v, grad, copy }, i) =>
      table.set([ptr(param), ptr(m), ptr(v), opt(copy), ptr(grad), param.size], i * 6),
    );
    cu.adamwStep(table, NULL, o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, o.step);
  });
  reg('sgdStep', (param, buf, grad, lr, weightDecay, momentum) =>
    cu.sgdStep(ptr(param), opt(buf), ptr(grad), param.size, lr, weightDecay, momentum),
  );
  // Every tensor's Σ x² accumulates on the device into one f32, read back once.
  reg('sumSquares', (xs) => {
    const acc = Tensor.zeros([1], 'f32', 'cuda');
    for (const x of xs) cu.sumSquares(ptr(acc), ptr(x), dt(x), x.size);
    const total = acc.item();
    acc.dispose();
    return total;
  });

  reg('attentionForward', (out, lse, q, k, v, segments, scale) => {
    const [B, Tq, Hq, D] = q.shape;
    const [, Tk, Hkv] = k.shape;
    const t = floatType('attention', { out, q, k, v });
    cu.attentionForward(
      ptr(out),
      ptr(lse),
      ptr(q),
      ptr(k),
      ptr(v),
      t,
      ptr(segments),
      B,
      Tq,
      Tk,
      Hq,
      Hkv,
      D,
      scale,
    );
  });
  reg('attentionBackward', (dq, dk, dv, dout, q, k, v, segments, out, lse, scale) => {
    const [B, Tq, Hq, D] = q.shape;
    const [, Tk, Hkv] = k.shape;
    const t = floatType('attention backward', { dq, dk, dv, dout, q, k, v, out });
    const ws = Tensor.empty(
      [Math.max(1, cu.attentionBackwardWorkspace(B, Tq, Tk, Hq, Hkv, D))],
      'u8',
      'cuda',
    );
    cu.attentionBackward(
      ptr(dq),
      ptr(dk),
      ptr(dv),
      ptr(dout),
      ptr(out),
      ptr(q),
      ptr(k),
      ptr(v),
      t,
      ptr(lse),
      ptr(segments),
      B,
      Tq,
      Tk,
      Hq,
      Hkv,
      D,
      scale,
      ptr(ws),
    );
    ws.dispose();
  });

  // QLoRA: each quantized weight is dequantized to a temporary in the input's dtype (bf16, or f32 for
  // exact fp32 math) right before its GEMM and freed right after (the caching allocator hands the same
  // block to the next layer), so the model never exists dequantized as a whole. Generation's few rows
  // (m ≤ 8) instead take the fused kernel that dequantizes in registers and reads W once (quant_gemv.cu:
  // 3.4× faster at m = 1 on an 8B projection). At 2048 rows the separate dequantize adds 13% to the GEMM
  // (bench/gpu/NOTES.md), less than a GEMM that dequantizes in its main loop would lose against cuBLASLt.
  // y [m, out] = x [m, in] · Wᵀ (+ bias): each block of W's rows gives a block of y's columns.
  reg('quantLinear', (y, x, w, bias, m) => {
    const [out, inF] = w.shape;
    const t = floatType('quantLinear', { y, x });
    const esize = t === CUDA_DTYPE.f32 ? 4 : 2;
    const Bias = bias && bias.dtype !== y.dtype ? Tensor.empty(bias.shape, y.dtype, 'cuda') : bias;
    if (Bias && Bias !== bias) cu.cast(ptr(Bias), dt(Bias), ptr(bias!), dt(bias!), bias!.size);
    try {
      if (m <= QUANT_GEMV_MAX_ROWS) {
        quantGemv(cu, y, x, w, Bias, m, t);
        return;
      }
      eachDequantizedBlock(cu, w, t, (W, r0) => {
        const R = W.shape[0];
        cu.gemm(
          ptr(y) + r0 * esize,
          t,
          ptr(x),
          t,
          ptr(W),
          t,
          Bias ? ptr(Bias) + r0 * esize : NULL,
          m,
          R,
          inF,
          false,
          true,
          1,
          0,
          1,
          0,
          0,
          0,
          0,
          0,
          out,
        );
      });
    } finally {
      if (Bias && Bias !== bias) Bias.dispose();
    }
  });
  // dx [m, in] (+)= g [m, out] · W = Σ over row blocks of g's matching columns times the block.
  reg('quantLinearBackward', (dx, g, w, m, accumulate) => {
    const [out, inF] = w.shape;
    const t = floatType('quantLinear backward', { dx, g });
    const esize = t === CUDA_DTYPE.f32 ? 4 : 2;
    eachDequantizedBlock(cu, w, t, (W, r0) => {
      const R = W.shape[0];
      cu.gemm(
        ptr(dx),
        t,
        ptr(g) + r0 * esize,
        t,
        ptr(W),
        t,
        NULL,
        m,
        inF,
        R,
        false,
        false,
        1,
        r0 === 0 && !accumulate ? 0 : 1,
        1,
        0,
        0,
        0,
        out,
        0,
        0,
      );
    });
  });
  registered = true;
}
