// Matrix products: matmul (either operand transposed, batched, b broadcast over the batch) and linear
// (x·Wᵀ + b, the hot path of every model). Both run on the gemm kernel, which reads bf16 weights as
// stored, so a frozen bf16 W is never copied to fp32.
import { floatDTypes } from '../backend/device.js';
import { kernel } from '../backend/kernels.js';
import { isGraphOnly, needsRecord, record } from '../autograd/tape.js';
import { numel, shapeString, Tensor } from '../tensor/tensor.js';
import type { GemmAttrs } from './spec/matmul.js';
import { expectDType, expectFloat, sameDevice } from './util.js';

export type { GemmAttrs } from './spec/matmul.js';

/** One GEMM call; the defaults are a plain product (alpha 1, beta 0, one item, no transposes). */
function gemm(
  c: Tensor,
  a: Tensor,
  b: Tensor,
  attrs: Partial<GemmAttrs> & Pick<GemmAttrs, 'm' | 'n' | 'k'>,
  bias: Tensor | null = null,
): void {
  const { m, n, k } = attrs;
  kernel(c.device, 'gemm')(c, a, b, bias, {
    batch: 1,
    transA: false,
    transB: false,
    alpha: 1,
    beta: 0,
    strideA: m * k,
    strideB: k * n,
    strideC: m * n,
    ...attrs,
  });
}

export interface MatmulOptions {
  /** a is stored [..., K, M] and used transposed. */
  transA?: boolean;
  /** b is stored [..., N, K] and used transposed. */
  transB?: boolean;
}

interface Product {
  batchShape: number[];
  batch: number;
  m: number;
  n: number;
  k: number;
  /** b is 2-D and shared by every batch item. */
  broadcastB: boolean;
}

function describe(name: string, t: Tensor, trans: boolean): string {
  return `${name} ${shapeString(t.shape)}${trans ? ' (transposed)' : ''}`;
}

// Checks matmul operands and works out the GEMM sizes.
function product(op: string, a: Tensor, b: Tensor, transA: boolean, transB: boolean): Product {
  sameDevice(op, a, b);
  expectFloat(op, 'a', a);
  expectDType(op, 'b', b, 'f32', 'bf16');
  if (a.shape.length < 2 || b.shape.length < 2)
    throw new Error(
      `lorakit: ${op}: a ${shapeString(a.shape)} and b ${shapeString(b.shape)} must both have at least 2 dimensions.`,
    );
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const m = transA ? ac : ar;
  const k = transA ? ar : ac;
  const kb = transB ? bc : br;
  const n = transB ? br : bc;
  if (k !== kb)
    throw new Error(
      `lorakit: ${op}: inner dimensions differ (${k} and ${kb}) between ${describe('a', a, transA)} and ${describe('b', b, transB)}.`,
    );
  const batchShape = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  const broadcastB = bBatch.length === 0;
  if (!broadcastB && (bBatch.length !== batchShape.length || bBatch.some((d, i) => d !== batchShape[i])))
    throw new Error(
      `lorakit: ${op}: batch dimensions of a ${shapeString(a.shape)} and b ${shapeString(b.shape)} differ; b must have a's leading dimensions or be 2-D.`,
    );
  return { batchShape, batch: numel(batchShape), m, n, k, broadcastB };
}

// On a device that does not compute in bf16 (the CPU GEMM writes f32 only) a bf16 operand is frozen
// storage (a weight); where bf16 is an activation dtype (CUDA) it gets bf16 gradients.
function frozenBf16(op: string, name: string, t: Tensor): void {
  if (t.dtype === 'bf16' && t.requiresGrad && !floatDTypes(t.device).includes('bf16'))
    throw new Error(
      `lorakit: ${op}: ${name} ${shapeString(t.shape)} is bf16, which is frozen storage and cannot require grad; keep trainable weights in f32.`,
    );
}

/**
 * op(a) · op(b): a [..., M, K] ([..., K, M] with transA), b [..., K, N] ([..., N, K] with transB)
 * with a's leading (batch) dimensions, or 2-D and shared by the whole batch. Result [..., M, N] f32.
 * a is f32; b is f32, or bf16 (frozen: it gets no gradient).
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const p = product('matmul', a, b, transA, transB);
  frozenBf16('matmul', 'b', b);
  const { batch, m, n, k } = p;
  const strideB = p.broadcastB ? 0 : k * n;
  const c = Tensor.empty([...p.batchShape, m, n], a.dtype, a.device);
  gemm(c, a, b, { batch, m, n, k, transA, transB, strideB });
  if (needsRecord([a, b])) {
    // dA needs b, dB needs a: keep only what a gradient will be asked of.
    const wantA = a.requiresGrad;
    const wantB = b.requiresGrad;
    const saved = [...(wantA ? [b] : []), ...(wantB ? [a] : [])];
    record([a, b], [c], saved, ([g], [ga, gb]) => [
      ga && wantA ? matmulGradA(g, a, b, p, transA, transB) : null,
      gb && wantB ? matmulGradB(g, a, b, p, transA, transB) : null,
    ]);
  }
  return c;
}

// dA for C = op(A)·op(B), G = dC [batch, M, N].
function matmulGradA(g: Tensor, a: Tensor, b: Tensor, p: Product, transA: boolean, transB: boolean): Tensor {
  const { batch, m, n, k } = p;
  const strideB = p.broadcastB ? 0 : k * n;
  const da = Tensor.empty(a.shape, a.dtype, a.device);
  if (!transA)
    // dA [M, K] = G · op(B)ᵀ
    gemm(da, g, b, { batch, m, n: k, k: n, transB: !transB, strideA: m * n, strideB, strideC: m * k });
  // A is stored [K, M]: dAᵀ = op(B) · Gᵀ
  else
    gemm(da, b, g, {
      batch,
      m: k,
      n: m,
      k: n,
      transA: transB,
      transB: true,
      strideA: strideB,
      strideB: m * n,
      strideC: k * m,
    });
  return da;
}

// dB for C = op(A)·op(B); a shared 2-D B sums its gradient over the batch.
function matmulGradB(g: Tensor, a: Tensor, b: Tensor, p: Product, transA: boolean, transB: boolean): Tensor {
  const { batch, m, n, k } = p;
  const db = Tensor.empty(b.shape, b.dtype, b.device); // b trains in a dtype its device computes in (frozenBf16)
  if (!p.broadcastB || batch === 1) {
    // dB [K, N] = op(A)ᵀ · G, or stored [N, K]: dBᵀ = Gᵀ · op(A)
    if (!transB)
      gemm(db, a, g, {
        batch,
        m: k,
        n,
        k: m,
        transA: !transA,
        strideA: m * k,
        strideB: m * n,
        strideC: k * n,
      });
    else
      gemm(db, g, a, {
        batch,
        m: n,
        n: k,
        k: m,
        transA: true,
        transB: transA,
        strideA: m * n,
        strideB: m * k,
        strideC: n * k,
      });
  } else if (!transA) {
    // Row-major A: the batch is just more rows, so the sum over it is one GEMM with K' = batch·M.
    if (!transB) gemm(db, a, g, { m: k, n, k: batch * m, transA: true });
    else gemm(db, g, a, { m: n, n: k, k: batch * m, transA: true });
  } else {
    // Transposed A items are not contiguous rows: accumulate item by item (beta = 1).
    const a3 = a.reshape([batch, k, m]);
    const g3 = g.reshape([batch, m, n]);
    try {
      for (let i = 0; i < batch; i++) {
        const ai = a3.sliceRows(i, i + 1);
        const gi = g3.sliceRows(i, i + 1);
        const beta = i === 0 ? 0 : 1;
        if (!transB) gemm(db, ai, gi, { m: k, n, k: m, beta });
        else gemm(db, gi, ai, { m: n, n: k, k: m, transA: true, transB: true, beta });
        ai.dispose();
        gi.dispose();
      }
    } finally {
      a3.dispose();
      g3.dispose();
    }
  }
  return db;
}

/**
 * y = x · wᵀ (+ bias): x [..., in] f32, w [out, in] f32 or bf16 (frozen), bias [out] f32 or null.
 * Result [..., out] f32. One GEMM reading w as stored (no transposed copy), bias added in its epilogue.
 * Inside checkpointOutput's recompute the product is recorded for backward but not computed (see add).
 */
export function linear(x: Tensor, w: Tensor, bias: Tensor | null = null): Tensor {
  sameDevice('linear', x, w, bias);
  expectFloat('linear', 'x', x);
  expectDType('linear', 'w', w, 'f32', 'bf16');
  if (bias) expectFloat('linear', 'bias', bias);
  frozenBf16('linear', 'w', w);
  const inF = x.shape.at(-1);
  if (w.shape.length !== 2 || inF === undefined || w.shape[1] !== inF)
    throw new Error(
      `lorakit: linear: x ${shapeString(x.shape)} does not match w ${shapeString(w.shape)}; w must be [out, ${inF ?? 'in'}].`,
    );
  const out = w.shape[0];
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== out))
    throw new Error(
      `lorakit: linear: bias ${shapeString(bias.shape)} does not match w ${shapeString(w.shape)}; expected [${out}].`,
    );
  const rows = inF === 0 ? numel(x.shape.slice(0, -1)) : x.size / inF;
  const y = Tensor.empty([...x.shape.slice(0, -1), out], x.dtype, x.device);
  if (!isGraphOnly()) gemm(y, x, w, { m: rows, n: out, k: inF, transB: true }, bias);
  if (needsRecord([x, w, bias])) {
    // dx needs w; dw needs x; dbias needs nothing.
    const wantX = x.requiresGrad;
    const wantW = w.requiresGrad;
    const saved = [...(wantX ? [w] : []), ...(wantW ? [x] : [])];
    record([x, w, bias], [y], saved, ([g], [gx, gw, gb]) => {
      let dx: Tensor | null = null;
      let dw: Tensor | null = null;
      let db: Tensor | null = null;
      if (gx && wantX) {
        dx = Tensor.empty(x.shape, x.dtype, x.device); // dx [rows, in] = g · w
        gemm(dx, g, w, { m: rows, n: inF, k: out });
      }
      if (gw && wantW) {
        dw = Tensor.empty(w.shape, w.dtype, w.device); // dw [out, in] = gᵀ · x
        gemm(dw, g, x, { m: out, n: inF, k: rows, transA: true });
      }
      if (gb && bias) {
        db = Tensor.empty(bias.shape, bias.dtype, bias.device); // dbias [out] = 1ᵀ · g (column sums)
        kernel(g.device, 'sumColumns')(db, g, rows, out);
      }
      return [dx, dw, db];
    });
  }
  return y;
}

/**
 * c = alpha · op(a) · op(b) + beta · c, in place and not recorded (fused ops and optimizers build on
 * it). Shapes as matmul; c must have the product's shape. beta = 0 ignores c's old contents.
 */
export function gemmInto(
  c: Tensor,
  a: Tensor,
  b: Tensor,
  opts: MatmulOptions & { alpha?: number; beta?: number } = {},
): void {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const p = product('gemmInto', a, b, transA, transB);
  sameDevice('gemmInto', c, a);
  expectFloat('gemmInto', 'c', c);
  const shape = [...p.batchShape, p.m, p.n];
  if (c.shape.length !== shape.length || c.shape.some((d, i) => d !== shape[i]))
    throw new Error(
      `lorakit: gemmInto: c ${shapeString(c.shape)} does not match the product of ${describe('a', a, transA)} and ${describe('b', b, transB)}, ${shapeString(shape)}.`,
    );
  const { batch, m, n, k } = p;
  gemm(c, a, b, {
    batch,
    m,
    n,
    k,
    transA,
    transB,
    alpha: opts.alpha ?? 1,
    beta: opts.beta ?? 0,
    strideB: p.broadcastB ? 0 : k * n,
  });
}
