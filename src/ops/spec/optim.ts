// Optimizer updates (in place, never recorded) with torch.optim's semantics, and the squared norm
// used for gradient clipping.
import type { Tensor } from '../../tensor/tensor.js';
import { cuda, host, hostReduction, op, reduction, type OpGroup } from './dsl.js';

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1 on the first update (torch's state['step'] after its increment). */
  step: number;
}

/** One tensor AdamW updates: the parameter, its state and gradient (all f32, one size). */
export interface AdamWSlot {
  param: Tensor;
  m: Tensor;
  v: Tensor;
  grad: Tensor;
  /** The parameter's bf16 compute copy (Tensor.computeCopy), rewritten from the updated values; or null. */
  copy: Tensor | null;
}

export const optim = {
  ops: {
    /** Every slot's param, m, v (and copy) updated in place from its grad; one call for a model's tensors. */
    adamwStep: op('slots:AdamWSlots o:AdamWOptions'),
    /** param (and buf, when given) updated in place from grad */
    sgdStep: op('param:f32 buf?:f32 = grad:f32 lr weightDecay momentum'),
    /** Σ over all the tensors of Σ x² (one value read back, however many tensors) */
    sumSquares: reduction('xs:tensors'),
  },
  cpu: {
    adamwStepF32: host('param:f32 m:f32 v:f32 grad:f32 lr beta1 beta2 eps weightDecay step n'),
    sgdStepF32: host('param:f32 buf?:f32 grad:f32 lr weightDecay momentum n'),
    sumSquaresF32: hostReduction('x:f32 n'),
  },
  cuda: {
    /**
     * torch.optim.AdamW on many tensors at once (one launch per 64): `table` holds 6 numbers per tensor,
     * [p, m, v, pBf16, g, n], with p, m, v, g f32 [n] and pBf16 (0: none) a bf16 [n] that receives the
     * updated p; gradScale f32 [1] on the device (a clip coefficient) or 0.
     */
    adamwStep: cuda(
      'glue::adamw_step',
      'table:table gradScale?:float* lr:f32 beta1:f32 beta2:f32 eps:f32 weightDecay:f32 step:int[1..2147483647]',
    ),
    /** torch.optim.SGD on f32 p, g [n] with optional momentum buffer (0 = none). */
    sgdStep: cuda(
      'lkc::sgd_step',
      'p:float* buf?:float* g:float* n:count lr:f32 weightDecay:f32 momentum:f32',
    ),
    /** acc[0] += Σ x² over x [n] of dtype t (fp32 atomics); acc is one f32, zeroed by the caller. */
    sumSquares: cuda('lkc::sum_squares', 'acc:float* x:ptr t:dtype n:count'),
  },
} as const satisfies OpGroup;
