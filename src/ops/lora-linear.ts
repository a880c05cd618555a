// The fused LoRA linear op: the LoRA layers that read one input (q, k, v; gate, up; or a single layer),
// base included, as one differentiable op.
//
//   y_i = x·W_iᵀ (+ bias_i) + s_i·(xl·A_iᵀ)·B_iᵀ,   xl = xLora ?? x
//
// The layers' A factors are stacked into one A [R, in] (R = Σ r_i), so the group needs one product
// with xl forward and, backward, one dA GEMM and one LoRA input gradient; every base GEMM then
// accumulates into that one dx (beta = 1), with no gradient sums between the layers. The low-rank
// activations are kept transposed, hᵀ = A·xlᵀ [R, rows], so that each layer's part is a row block of
// it (a view); likewise gbᵀ = s·(g·B)ᵀ backward. One tape entry for the group. The kernels are called
// directly: shapes and dtypes are checked once, at the top. Nothing here reads tensor data on the
// host, so it runs on any device.
import { kernel } from '../backend/kernels.js';
import { isGraphOnly, needsRecord, record } from '../autograd/tape.js';
import { QuantizedWeight } from '../quant/weight.js';
import { keep, numel, shapeString, Tensor } from '../tensor/tensor.js';
import type { GemmAttrs } from './matmul.js';
import { expectDType, expectFloat } from './util.js';

const OP = 'loraLinear';

/** A LoRA adapter's factors: A [r, in], B [out, r] (f32, trainable), and its scale s. */
export interface LoraFactors {
  A: Tensor;
  B: Tensor;
  s: number;
}

/** One layer of a group that shares an input: its frozen base and, when it has one, its LoRA adapter. */
export interface SharedInputLayer {
  w: Tensor | QuantizedWeight;
  bias: Tensor | null;
  lora: LoraFactors | null;
}

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

/**
 * The A factors stacked [Σ r, in] in the activations' dtype, owned by the caller. In another dtype
 * (bf16 on CUDA) each factor's compute copy is a row block of one buffer, so once made (and until a
 * factor changes) the stack is a view and costs nothing. In the factors' own dtype (f32) the factors
 * are copied into a fresh stack (R × in elements) unless there is only one.
 */
function stackedFactors(As: readonly Tensor[], dtype: Tensor['dtype']): Tensor {
  if (As.length === 1) return factorIn(As[0], dtype);
  // Kept out of the enclosing scope: the caller disposes it, and the tape may still hold it.
  const { device } = As[0];
  const inF = As[0].shape[1];
  const R = As.reduce((n, a) => n + a.shape[0], 0);
  if (As[0].dtype === dtype) {
    const stack = keep(Tensor.empty([R, inF], dtype, device));
    let at = 0;
    for (const a of As) {
      Tensor.copyElements(stack, at, a, 0, a.size);
      at += a.size;
    }
    return stack;
  }
  const copies = As.map((a) => a.computeCopy);
  if (copies.every((c): c is Tensor => c?.dtype === dtype)) {
    const span = Tensor.spanRows(copies);
    if (span) return keep(span);
  }
  const stack = keep(Tensor.empty([R, inF], dtype, device));
  let r0 = 0;
  for (const a of As) {
    const c = keep(stack.sliceRows(r0, r0 + a.shape[0]));
    kernel(device, 'cast')(c, a);
    a.dropComputeCopy();
    a.computeCopy = c;
    r0 += a.shape[0];
  }
  return stack;
}

function check(x: Tensor, layers: readonly SharedInputLayer[], xLora: Tensor | null): void {
  const device = x.device;
  if (layers.length === 0) throw new Error(`lorakit: ${OP}: needs at least one layer.`);
  expectFloat(OP, 'x', x);
  const inF = x.shape.at(-1);
  if (inF === undefined) throw new Error(`lorakit: ${OP}: x must have at least 1 dimension, got [].`);
  if (xLora) {
    if (xLora.device !== device)
      throw new Error(`lorakit: ${OP}: xLora is on ${xLora.device} but x is on ${device}.`);
    if (xLora.dtype !== x.dtype)
      throw new Error(`lorakit: ${OP}: xLora must have x's dtype ${x.dtype}, got ${xLora.dtype}.`);
    if (xLora.shape.length !== x.shape.length || xLora.shape.some((d, i) => d !== x.shape[i]))
      throw new Error(
        `lorakit: ${OP}: xLora ${shapeString(xLora.shape)} must have x's shape ${shapeString(x.shape)}.`,
      );
  }
  layers.forEach(({ w, bias, lora }, i) => {
    // Name the layer only in a group: a single layer's messages read as before.
    const op = layers.length === 1 ? OP : `${OP} (layer ${i} of ${layers.length})`;
    const wData = w instanceof QuantizedWeight ? w.data : w;
    for (const [name, t] of [
      ['w', wData],
      ['bias', bias],
      ['A', lora?.A],
      ['B', lora?.B],
    ] as const)
      if (t && t.device !== device)
        throw new Error(`lorakit: ${op}: ${name} is on ${t.device} but x is on ${device}.`);
    if (w instanceof QuantizedWeight) {
      if (w.disposed) throw new Error(`lorakit: ${op}: the quantized weight was disposed.`);
    } else {
      expectDType(op, 'w', w, 'f32', 'bf16');
      if (w.requiresGrad)
        throw new Error(
          `lorakit: ${op}: w ${shapeString(w.shape)} requires grad; the base weight of a LoRA layer is frozen.`,
        );
      if (w.shape.length !== 2)
        throw new Error(`lorakit: ${op}: w must be 2-D [out, in], got ${shapeString(w.shape)}.`);
    }
    const [out, wIn] = w.shape;
    if (wIn !== inF)
      throw new Error(
        `lorakit: ${op}: x ${shapeString(x.shape)} does not match w ${shapeString(w.shape)}; x must be [..., ${wIn}].`,
      );
    if (bias) {
      expectFloat(op, 'bias', bias);
      if (bias.shape.length !== 1 || bias.shape[0] !== out)
        throw new Error(
          `lorakit: ${op}: bias ${shapeString(bias.shape)} does not match w ${shapeString(w.shape)}; expected [${out}].`,
        );
    }
    if (!lora) return;
    const { A, B, s } = lora;
    expectDType(op, 'A', A, 'f32');
    expectDType(op, 'B', B, 'f32');
    if (A.shape.length !== 2 || A.shape[1] !== inF)
      throw new Error(`lorakit: ${op}: A ${shapeString(A.shape)} must be [r, ${inF}] (x's features).`);
    const r = A.shape[0];
    if (B.shape.length !== 2 || B.shape[0] !== out || B.shape[1] !== r)
      throw new Error(
        `lorakit: ${op}: B ${shapeString(B.shape)} must be [${out}, ${r}] (w's outputs, A's rank ${r}).`,
      );
    if (!Number.isFinite(s))
      throw new Error(`lorakit: ${op}: the scale s must be a finite number, got ${s}.`);
  });
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
 * Inside checkpointOutput's recompute y is recorded for backward but not computed (see add): only h,
 * which dB needs, is.
 */
export function loraLinear(
  x: Tensor,
  w: Tensor | QuantizedWeight,
  bias: Tensor | null,
  A: Tensor,
  B: Tensor,
  s: number,
  xLora?: Tensor | null,
): Tensor {
  return loraLinears(x, [{ w, bias, lora: { A, B, s } }], xLora)[0];
}

/**
 * Layers that read one input x, as one op: y_i = x·W_iᵀ (+ bias_i) (+ s_i·(xl·A_iᵀ)·B_iᵀ for a layer
 * with LoRA factors), each y_i [..., out_i]. Arguments as loraLinear's, per layer; a layer may have no
 * adapter (its base alone, still summing its input gradient in place). xLora is the LoRA input of
 * every layer, so layers with dropout (a mask each) cannot share one op.
 */
export function loraLinears(x: Tensor, layers: readonly SharedInputLayer[], xLora?: Tensor | null): Tensor[] {
  const xl0 = xLora ?? null;
  check(x, layers, xl0);
  const xl = xl0 ?? x;
  const device = x.device;
  const dtype = x.dtype;
  const gemm = kernel(device, 'gemm');
  const inF = x.shape.at(-1)!;
  const rows = inF === 0 ? numel(x.shape.slice(0, -1)) : x.size / inF;
  // Each adapted layer's rows in the stacks (A, hᵀ, gbᵀ): [r0, r0 + r).
  const loraRows: { r0: number; r: number }[] = [];
  let R = 0;
  for (const { lora } of layers) {
    const r = lora ? lora.A.shape[0] : 0;
    loraRows.push({ r0: R, r });
    R += r;
  }
  const As = layers.flatMap(({ lora }) => (lora ? [lora.A] : []));

  const ys = layers.map(({ w }) => Tensor.empty([...x.shape.slice(0, -1), w.shape[0]], dtype, device));
  const Ac = As.length ? stackedFactors(As, dtype) : null; // [R, in]
  const Bcs = layers.map(({ lora }) => (lora ? factorIn(lora.B, dtype) : null));
  const hT = Ac ? keep(Tensor.empty([R, rows], dtype, device)) : null; // hᵀ = A·xlᵀ [R, rows]
  /** Row block [r0, r0 + r) of a stack, for the duration of fn. */
  const block = <T>(stack: Tensor, i: number, fn: (v: Tensor) => T): T => {
    const { r0, r } = loraRows[i];
    const v = stack.sliceRows(r0, r0 + r);
    try {
      return fn(v);
    } finally {
      v.dispose();
    }
  };
  try {
    if (Ac) gemm(hT!, Ac, xl, null, attrs(R, rows, inF, false, true));
    // y = x·Wᵀ + bias + s·h·Bᵀ. Without a bias (an epilogue that needs beta = 0) the small product goes
    // first and the base GEMM adds it as C with beta = 1: the compute-bound base GEMM reads C almost for
    // free, where the memory-bound small one would read and write all of y again.
    // Inside checkpointOutput's recompute y is never read: backward needs only hᵀ.
    if (!isGraphOnly())
      layers.forEach(({ w, bias, lora }, i) => {
        const y = ys[i];
        const out = w.shape[0];
        const r = loraRows[i].r;
        const lowRank = (beta: number) =>
          block(hT!, i, (h) => gemm(y, h, Bcs[i]!, null, attrs(rows, out, r, true, true, lora!.s, beta)));
        if (w instanceof QuantizedWeight || bias || !lora) {
          if (w instanceof QuantizedWeight) kernel(device, 'quantLinear')(y, x, w, bias, rows);
          else gemm(y, x, w, bias, attrs(rows, out, inF, false, true));
          if (lora) lowRank(1); // y += s·h·Bᵀ
        } else {
          lowRank(0); // y = s·h·Bᵀ
          gemm(y, x, w, null, attrs(rows, out, inF, false, true, 1, 1)); // y += x·Wᵀ
        }
      });

    // Inputs: x, xLora, then bias, A, B of each layer.
    const inputs = [x, xl0, ...layers.flatMap(({ bias, lora }) => [bias, lora?.A ?? null, lora?.B ?? null])];
    if (needsRecord(inputs)) {
      const wantX = x.requiresGrad;
      const wantXl = xl0 !== null && xl0.requiresGrad;
      const wantA = layers.map(({ lora }) => lora !== null && lora.A.requiresGrad);
      const wantB = layers.map(({ lora }) => lora !== null && lora.B.requiresGrad);
      // The LoRA part of x's gradient: into dx itself, or into xLora's own gradient.
      const loraDx = Ac !== null && (xl0 === null ? wantX : wantXl);
      // gbᵀ feeds dA and the LoRA part of dx.
      const wantGB = loraDx || wantA.some(Boolean);
      // dx needs each W (the layer holds it; a dense one is retained like any saved tensor); dA needs xl;
      // dB needs hᵀ; gbᵀ needs B; the LoRA part of dx needs A.
      const saved: Tensor[] = [];
      if (wantX) for (const { w } of layers) if (!(w instanceof QuantizedWeight)) saved.push(w);
      if (wantA.some(Boolean)) saved.push(xl);
      if (wantB.some(Boolean)) saved.push(hT!);
      if (wantGB) for (const b of Bcs) if (b) saved.push(b);
      if (loraDx) saved.push(Ac!);
      record(inputs, ys, saved, (gs, needs) => {
        const needX = needs[0] && wantX;
        const needXl = needs[1] && wantXl;
        const needA = layers.map((_, i) => needs[3 + 3 * i] && wantA[i]);
        const needLoraDx = Ac !== null && (xl0 === null ? needX : needXl);
        const grads: (Tensor | null)[] = inputs.map(() => null);
        const gemm = kernel(device, 'gemm');
        let gbT: Tensor | null = null; // s·(g·B)ᵀ [R, rows], stacked
        try {
          if (needLoraDx || needA.some(Boolean)) {
            gbT = Tensor.empty([R, rows], dtype, device);
            layers.forEach(({ w, lora }, i) => {
              if (lora)
                block(gbT!, i, (v) =>
                  gemm(v, Bcs[i]!, gs[i], null, attrs(loraRows[i].r, rows, w.shape[0], true, true, lora.s)),
                );
            });
          }
          if (needX) {
            // dx = Σ g_i·W_i (+ the LoRA part): the first product writes, the others accumulate.
            const dx = Tensor.empty(x.shape, dtype, device);
            let accumulate = false;
            if (xl0 === null && needLoraDx) {
              gemm(dx, gbT!, Ac!, null, attrs(rows, inF, R, true, false)); // (g·B)·A, stacked
              accumulate = true;
            }
            layers.forEach(({ w }, i) => {
              if (w instanceof QuantizedWeight) {
                if (w.disposed)
                  throw new Error(`lorakit: ${OP} backward: the quantized weight was disposed.`);
                kernel(device, 'quantLinearBackward')(dx, gs[i], w, rows, accumulate);
              } else
                gemm(dx, gs[i], w, null, attrs(rows, inF, w.shape[0], false, false, 1, accumulate ? 1 : 0));
              accumulate = true;
            });
            grads[0] = dx;
          }
          if (needXl && needLoraDx) {
            const dXl = Tensor.empty(xl.shape, dtype, device); // dxl = s·(g·B)·A
            gemm(dXl, gbT!, Ac!, null, attrs(rows, inF, R, true, false));
            grads[1] = dXl;
          }
          if (needA.some(Boolean)) {
            // dA = s·(g·B)ᵀ·xl [R, in], stacked; each layer's gradient is its row block.
            const dA = Tensor.empty([R, inF], 'f32', device);
            gemm(dA, gbT!, xl, null, attrs(R, inF, rows, false, false));
            layers.forEach((_, i) => {
              if (needA[i]) grads[3 + 3 * i] = dA.sliceRows(loraRows[i].r0, loraRows[i].r0 + loraRows[i].r);
            });
            dA.dispose(); // the row blocks hold its memory
          }
          layers.forEach(({ w, bias, lora }, i) => {
            const out = w.shape[0];
            if (needs[4 + 3 * i] && wantB[i]) {
              const dB = Tensor.empty(lora!.B.shape, 'f32', device); // dB = s·gᵀ·h [out, r]
              block(hT!, i, (h) =>
                gemm(dB, gs[i], h, null, attrs(out, loraRows[i].r, rows, true, true, lora!.s)),
              );
              grads[4 + 3 * i] = dB;
            }
            if (needs[2 + 3 * i] && bias?.requiresGrad) {
              const dBias = Tensor.empty(bias.shape, bias.dtype, device); // column sums of g
              kernel(device, 'sumColumns')(dBias, gs[i], rows, out);
              grads[2 + 3 * i] = dBias;
            }
          });
        } finally {
          gbT?.dispose();
        }
        return grads;
      });
    }
  } finally {
    // Saved tensors were retained by the tape; drop this op's own references.
    hT?.dispose();
    Ac?.dispose();
    for (const b of Bcs) b?.dispose();
  }
  return ys;
}
