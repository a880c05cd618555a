// Causal attention with grouped-query heads (GQA), padding and packed sequences, flash-attention style:
// no [B, H, T, T] probability tensor is ever stored; forward keeps the per-row logsumexp and backward
// rebuilds each row's probabilities from it.
import { kernel } from '../backend/kernels.js';
import { needsRecord, record } from '../autograd/tape.js';
import { keep, shapeString, Tensor } from '../tensor/tensor.js';
import { emptyF32, emptyLike, expectDType, expectFloat, sameDevice } from './util.js';

export interface AttentionOptions {
  /** Multiplies q·kᵀ before the softmax; defaults to 1/sqrt(D). */
  scale?: number;
  /**
   * The output and logsumexp of an earlier forward on these same inputs (a checkpointed block's first
   * run, see checkpoint): the op records its backward on them instead of computing them again.
   */
  reuse?: AttentionResult;
  /** Receives this forward's output and logsumexp, retained for the receiver (who disposes them). */
  keep?: (result: AttentionResult) => void;
}

/** What attention's backward needs from its forward besides the inputs: out [B, Tq, Hq, D], lse [B, Hq, Tq] f32. */
export interface AttentionResult {
  out: Tensor;
  lse: Tensor;
}

function checkInputs(q: Tensor, k: Tensor, v: Tensor, segments: Tensor): void {
  const op = 'attention';
  sameDevice(op, q, k, v, segments);
  expectFloat(op, 'q', q);
  expectDType(op, 'k', k, q.dtype);
  expectDType(op, 'v', v, q.dtype);
  expectDType(op, 'segments', segments, 'i32');
  if (q.shape.length !== 4)
    throw new Error(`lorakit: attention: q must be [B, Tq, Hq, D], got ${shapeString(q.shape)}.`);
  if (k.shape.length !== 4)
    throw new Error(`lorakit: attention: k must be [B, Tk, Hkv, D], got ${shapeString(k.shape)}.`);
  const [B, Tq, Hq, D] = q.shape;
  const [Bk, Tk, Hkv, Dk] = k.shape;
  if (v.shape.length !== 4 || v.shape.some((d, i) => d !== k.shape[i]))
    throw new Error(
      `lorakit: attention: v has shape ${shapeString(v.shape)}, expected k's shape ${shapeString(k.shape)}.`,
    );
  if (Bk !== B || Dk !== D)
    throw new Error(
      `lorakit: attention: k ${shapeString(k.shape)} does not match q ${shapeString(q.shape)} (batch and head size D must agree).`,
    );
  if (Hkv === 0 || Hq % Hkv !== 0)
    throw new Error(
      `lorakit: attention: query heads (${Hq}) must be a multiple of key/value heads (${Hkv}).`,
    );
  if (D === 0)
    throw new Error(`lorakit: attention: head size D must be at least 1, got q ${shapeString(q.shape)}.`);
  if (Tq > Tk)
    throw new Error(
      `lorakit: attention: q has more positions (${Tq}) than k (${Tk}); queries must be the last Tq keys.`,
    );
  if (segments.shape.length !== 2 || segments.shape[0] !== B || segments.shape[1] !== Tk)
    throw new Error(
      `lorakit: attention: segments has shape ${shapeString(segments.shape)}, expected [${B}, ${Tk}] (batch, key positions).`,
    );
  if (!segments.onHost) return; // batches are checked on the host before they are copied
  const ids = segments.as('i32');
  for (let i = 0; i < ids.length; i++)
    if (ids[i] < 0)
      throw new Error(
        `lorakit: attention: segments[${Math.floor(i / Tk)}, ${i % Tk}] is ${ids[i]}; ids must be 0 (padding) or positive.`,
      );
}

/**
 * Causal scaled-dot-product attention, softmax(q·kᵀ·scale + mask)·v.
 *
 * q [B, Tq, Hq, D], k and v [B, Tk, Hkv, D] (f32), Hq a multiple of Hkv: query head h reads kv head
 * h / (Hq / Hkv). Tq ≤ Tk: query row i sits at key position Tk − Tq + i (Tq < Tk decodes against a KV
 * cache). segments [B, Tk] (i32): 0 marks padding, positive ids mark packed sequences; a query attends
 * to key j only if j is at or before its own position and carries the same segment id. Padded queries
 * output zeros and get zero gradient. Returns [B, Tq, Hq, D]; differentiable w.r.t. q, k and v.
 */
export function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  segments: Tensor,
  opts: AttentionOptions = {},
): Tensor {
  checkInputs(q, k, v, segments);
  const [B, Tq, Hq, D] = q.shape;
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(scale))
    throw new Error(`lorakit: attention: scale must be a finite number, got ${scale}.`);
  const { reuse } = opts;
  if (reuse) checkReuse(reuse, q);
  // Reused, the output is a fresh view of the earlier one: this call's caller owns it as usual.
  const out = reuse ? reuse.out.reshape(reuse.out.shape) : emptyLike(q);
  const lse = reuse ? reuse.lse : emptyF32(q, [B, Hq, Tq]);
  if (!reuse) kernel(q.device, 'attentionForward')(out, lse, q, k, v, segments, scale);
  opts.keep?.({ out: out.retain(), lse: lse.retain() });
  if (needsRecord([q, k, v]))
    record([q, k, v], [out], [q, k, v, segments, out, lse], ([g], [gq, gk, gv]) => {
      const dq = emptyLike(q);
      const dk = emptyLike(k);
      const dv = emptyLike(v);
      kernel(q.device, 'attentionBackward')(dq, dk, dv, g, q, k, v, segments, out, lse, scale);
      const keepOrDrop = (t: Tensor, needed: boolean): Tensor | null => {
        if (needed) return t;
        t.dispose();
        return null;
      };
      return [keepOrDrop(dq, gq), keepOrDrop(dk, gk), keepOrDrop(dv, gv)];
    });
  // lse belongs to the tape alone (it retained it if recording): out of every scope, this handle dropped.
  if (!reuse) keep(lse).dispose();
  return out;
}

function checkReuse({ out, lse }: AttentionResult, q: Tensor): void {
  const [B, Tq, Hq] = q.shape;
  const sameShape = out.shape.length === q.shape.length && out.shape.every((d, i) => d === q.shape[i]);
  if (!sameShape || out.dtype !== q.dtype || out.device !== q.device)
    throw new Error(
      `lorakit: attention: the reused output ${shapeString(out.shape)} ${out.dtype} does not match q ${shapeString(q.shape)} ${q.dtype}.`,
    );
  if (lse.dtype !== 'f32' || lse.device !== q.device || lse.size !== B * Hq * Tq)
    throw new Error(
      `lorakit: attention: the reused logsumexp must be f32 [${B}, ${Hq}, ${Tq}] on ${q.device}.`,
    );
}
