// The fused LoRA linear op: a whole LoRA layer, base included, as one differentiable op.
//
//   y = x·Wᵀ (+ bias) + s·(xl·Aᵀ)·Bᵀ,   xl = xLora ?? x
//
// Forward is three GEMMs (h = xl·Aᵀ, s·h·Bᵀ, the base x·Wᵀ, the two summed by a GEMM's beta = 1) and
// backward at most five (g·B, the LoRA part of dx, g·W accumulated onto it, dA, dB), one tape
// entry for the layer instead of five. The kernels are called directly: shapes and dtypes are checked
// once, at the top of loraLinear. Nothing here reads tensor data on the host, so it runs on any device.
import { kernel } from '../backend/kernels.js';
import { needsRecord, record } from '../autograd/tape.js';
import { QuantizedWeight } from '../quant/weight.js';
import { keep, numel, shapeString, Tensor } from '../tensor/tensor.js';
import type { GemmAttrs } from './matmul.js';
import './matmul.js'; // registers the gemm kernels
import './elementwise.js'; // registers cast and sumColumns (and the tape's helpers)
import '../quant/linear.js'; // registers quantLinear and quantLinearBackward
import { expectDType, expectFloat } from './util.js';

const OP = 'loraLinear';

/** GEMM attributes for one (unbatched) product; strides are the item sizes. */
function attrs(
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  alpha = 1,
  beta = 0,
): GemmAttrs {
  return { batch: 1, m, n, k, transA, transB, alpha, beta, strideA: m * k, strideB: k * n, strideC: m * n };
}

/**
 * A LoRA factor in the activations' dtype, owned by the caller (dispose it): the factor itself, or its
 * compute copy (Tensor.computeCopy). On CUDA (bf16 activations) the GEMMs would otherwise cast the
 * f32 factor on every call; the copy is made once and kept until the factor changes (the optimizer
 * refreshes it in the same kernel that updates the factor).
 */
function factorIn(t: Tensor, dtype: Tensor['dtype']): Tensor {
  if (t.dtype === dtype) return t.retain();
  if (t.computeCopy?.dtype !== dtype) {
    t.dropComputeCopy();
    const c = keep(Tensor.empty(t.shape, dtype, t.device));
    kernel(t.device, 'cast')(c, t);
    t.computeCopy = c;
  }
  return t.computeCopy.retain();
}

function check(
  x: Tensor,
  w: Tensor | QuantizedWeight,
  bias: Tensor | null,
  A: Tensor,
  B: Tensor,
  s: number,
  xLora: Tensor | null,
): void {
  const device = x.device;
  const wData = w instanceof QuantizedWeight ? w.data : w;
  for (const [name, t] of [
    ['w', wData],
    ['bias', bias],
    ['A', A],
    ['B', B],
    ['xLora', xLora],
  ] as const)
    if (t && t.device !== device)
      throw new Error(`lorakit: ${OP}: ${name} is on ${t.device} but x is on ${device}.`);
  expectFloat(OP, 'x', x);
  const inF = x.shape.at(-1);
  if (inF === undefined) throw new Error(`lorakit: ${OP}: x must have at least 1 dimension, got [].`);
  if (w instanceof QuantizedWeight) {
    if (w.disposed) throw new Error(`lorakit: ${OP}: the quantized weight was disposed.`);
  } else {
    expectDType(OP, 'w', w, 'f32', 'bf16');
    if (w.requiresGrad)
      throw new Error(
        `lorakit: ${OP}: w ${shapeString(w.shape)} requires grad; the base weight of a LoRA layer is frozen.`,
      );
    if (w.shape.length !== 2)
      throw new Error(`lorakit: ${OP}: w must be 2-D [out, in], got ${shapeString(w.shape)}.`);
  }
  const [out, wIn] = w.shape;
  if (wIn !== inF)
    throw new Error(
      `lorakit: ${OP}: x ${shapeString(x.shape)} does not match w ${shapeString(w.shape)}; x must be [..., ${wIn}].`,
    );
  if (bias) {
    expectFloat(OP, 'bias', bias);
    if (bias.shape.length !== 1 || bias.shape[0] !== out)
      throw new Error(
        `lorakit: ${OP}: bias ${shapeString(bias.shape)} does not match w ${shapeString(w.shape)}; expected [${out}].`,
      );
  }
  expectDType(OP, 'A', A, 'f32');
  expectDType(OP, 'B', B, 'f32');
  if (A.shape.length !== 2 || A.shape[1] !== inF)
    throw new Error(`lorakit: ${OP}: A ${shapeString(A.shape)} must be [r, ${inF}] (x's features).`);
  const r = A.shape[0];
  if (B.shape.length !== 2 || B.shape[0] !== out || B.shape[1] !== r)
    throw new Error(
      `lorakit: ${OP}: B ${shapeString(B.shape)} must be [${out}, ${r}] (w's outputs, A's rank ${r}).`,
    );
  if (!Number.isFinite(s)) throw new Error(`lorakit: ${OP}: the scale s must be a finite number, got ${s}.`);
  if (xLora) {
    if (xLora.dtype !== x.dtype)
      throw new Error(`lorakit: ${OP}: xLora must have x's dtype ${x.dtype}, got ${xLora.dtype}.`);
    if (xLora.shape.length !== x.shape.length || xLora.shape.some((d, i) => d !== x.shape[i]))
      throw new Error(
        `lorakit: ${OP}: xLora ${shapeString(xLora.shape)} must have x's shape ${shapeString(x.shape)}.`,
      );
  }
}

/**
 * One LoRA layer, base included: y = x·Wᵀ (+ bias) + s·(xl·Aᵀ)·Bᵀ with xl = xLora ?? x.
 *
 * - x [..., in]: activations (f32 on the CPU, f32 or bf16 on CUDA); y [..., out] has x's dtype.
 * - w [out, in]: the frozen base weight, a f32/bf16 tensor or a QuantizedWeight (NF4/FP4/int8).
 * - bias [out] or null (x's kind of float; it gets a gradient when it requires one).
 * - A [r, in], B [out, r]: the f32 LoRA factors; s: the LoRA scale (alpha / r, or alpha / √r).
 * - xLora: the input of the LoRA branch when it differs from x (dropout applied to x by the caller);
 *   it gets its own gradient, s·(g·B)·A, and x then gets only the base part, g·W.
 *
 * Gradients of A and B are f32; those of x and xLora have x's dtype. Inputs that need no gradient get
 * none, and the work for it is skipped.
 *
 * With `graphOnly`, y is recorded for backward but not computed (see add): only h, which dB needs, is.
 */
export function loraLinear(
  x: Tensor,
  w: Tensor | QuantizedWeight,
  bias: Tensor | null,
  A: Tensor,
  B: Tensor,
  s: number,
  xLora?: Tensor | null,
  graphOnly = false,
): Tensor {
  const xl0 = xLora ?? null;
  check(x, w, bias, A, B, s, xl0);
  const xl = xl0 ?? x;
  const device = x.device;
  const dtype = x.dtype;
  const gemm = kernel(device, 'gemm');
  const [out, inF] = w.shape;
  const r = A.shape[0];
  const rows = inF === 0 ? numel(x.shape.slice(0, -1)) : x.size / inF;

  const y = Tensor.empty([...x.shape.slice(0, -1), out], dtype, device);
  const Ac = factorIn(A, dtype);
  const Bc = factorIn(B, dtype);
  const h = keep(Tensor.empty([rows, r], dtype, device));
  try {
    gemm(h, xl, Ac, null, attrs(rows, r, inF, false, true)); // h = xl·Aᵀ [rows, r]
    // y = x·Wᵀ + bias + s·h·Bᵀ. Without a bias (an epilogue that needs beta = 0) the small product goes
    // first and the base GEMM adds it as C with beta = 1: the compute-bound base GEMM reads C almost for
    // free, where the memory-bound small one would read and write all of y again.
    // With graphOnly y is never read: backward needs only h.
    if (!graphOnly) {
      if (w instanceof QuantizedWeight || bias) {
        if (w instanceof QuantizedWeight) kernel(device, 'quantLinear')(y, x, w, bias, rows);
        else gemm(y, x, w, bias, attrs(rows, out, inF, false, true));
        gemm(y, h, Bc, null, attrs(rows, out, r, false, true, s, 1)); // y += s·h·Bᵀ
      } else {
        gemm(y, h, Bc, null, attrs(rows, out, r, false, true, s)); // y = s·h·Bᵀ
        gemm(y, x, w, null, attrs(rows, out, inF, false, true, 1, 1)); // y += x·Wᵀ
      }
    }

    if (needsRecord([x, bias, A, B, xl0])) {
      const wantX = x.requiresGrad;
      const wantXl = xl0 !== null && xl0.requiresGrad;
      const wantA = A.requiresGrad;
      const wantB = B.requiresGrad;
      const wantBias = bias !== null && bias.requiresGrad;
      // The LoRA part of x's gradient: into dx itself, or into xLora's own gradient.
      const loraDx = xl0 === null ? wantX : wantXl;
      // g·B feeds dA and the LoRA part of dx.
      const wantGB = wantA || loraDx;
      // dx needs W (the layer holds it; a dense one is retained like any saved tensor); dA needs xl;
      // dB needs h; g·B needs B; the LoRA part of dx needs A.
      const saved: Tensor[] = [];
      if (wantX && !(w instanceof QuantizedWeight)) saved.push(w);
      if (wantA) saved.push(xl);
      if (wantB) saved.push(h);
      if (wantGB) saved.push(Bc);
      if (loraDx) saved.push(Ac);
      record([x, bias, A, B, xl0], [y], saved, ([g], [gx, gBias, gA, gB_, gXl]) => {
        let dx: Tensor | null = null;
        let dBias: Tensor | null = null;
        let dA: Tensor | null = null;
        let dB: Tensor | null = null;
        let dXl: Tensor | null = null;
        const needX = gx && wantX;
        const needXl = gXl && wantXl;
        const needA = gA && wantA;
        const needLoraDx = xl0 === null ? needX : needXl;
        const gemm = kernel(device, 'gemm');
        let gb: Tensor | null = null; // g·B [rows, r]
        try {
          if (needA || needLoraDx) {
            gb = Tensor.empty([rows, r], dtype, device);
            gemm(gb, g, Bc, null, attrs(rows, r, out, false, false));
          }
          if (needX) {
            dx = Tensor.empty(x.shape, dtype, device); // dx = g·W (+ s·(g·B)·A)
            if (w instanceof QuantizedWeight) {
              if (w.disposed) throw new Error(`lorakit: ${OP} backward: the quantized weight was disposed.`);
              kernel(device, 'quantLinearBackward')(dx, g, w, rows);
              if (xl0 === null) gemm(dx, gb!, Ac, null, attrs(rows, inF, r, false, false, s, 1));
            } else if (xl0 === null) {
              // As in forward: the small product first, the base GEMM accumulates onto it.
              gemm(dx, gb!, Ac, null, attrs(rows, inF, r, false, false, s));
              gemm(dx, g, w, null, attrs(rows, inF, out, false, false, 1, 1));
            } else gemm(dx, g, w, null, attrs(rows, inF, out, false, false));
          }
          if (needXl) {
            dXl = Tensor.empty(xl.shape, dtype, device); // dxl = s·(g·B)·A
            gemm(dXl, gb!, Ac, null, attrs(rows, inF, r, false, false, s));
          }
          if (needA) {
            dA = Tensor.empty(A.shape, 'f32', device); // dA = s·(g·B)ᵀ·xl [r, in]
            gemm(dA, gb!, xl, null, attrs(r, inF, rows, true, false, s));
          }
          if (gB_ && wantB) {
            dB = Tensor.empty(B.shape, 'f32', device); // dB = s·gᵀ·h [out, r]
            gemm(dB, g, h, null, attrs(out, r, rows, true, false, s));
          }
          if (gBias && wantBias) {
            dBias = Tensor.empty(bias!.shape, bias!.dtype, device); // dbias = column sums of g
            kernel(device, 'sumColumns')(dBias, g, rows, out);
          }
        } finally {
          gb?.dispose();
        }
        return [dx, dBias, dA, dB, dXl];
      });
    }
  } finally {
    // Saved tensors were retained by the tape; drop this op's own references.
    h.dispose();
    Ac.dispose();
    Bc.dispose();
  }
  return y;
}
