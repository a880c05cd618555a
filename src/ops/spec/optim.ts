// Optimizer updates (in place, never recorded) with torch.optim's semantics, and the squared norm
// used for gradient clipping.
import type { Tensor } from '../../tensor/tensor.js';
import {
  cpuCall,
  cpuReduction,
  cu,
  cudaCall,
  host,
  input,
  num,
  op,
  optOut,
  out,
  reduction,
  struct,
  tensors,
  type OpGroup,
} from './dsl.js';

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
    adamwStep: op(struct<readonly AdamWSlot[]>('slots'), struct<AdamWOptions>('o')),
    /** param (and buf, when given) updated in place from grad */
    sgdStep: op(
      out('param', 'f32'),
      optOut('buf', 'f32'),
      input('grad', 'f32'),
      num('lr'),
      num('weightDecay'),
      num('momentum'),
    ),
    /** Σ over all the tensors of Σ x² (one value read back, however many tensors) */
    sumSquares: reduction(tensors('xs')),
  },
  cpu: {
    adamwStepF32: cpuCall(
      host.f32('param'),
      host.f32('m'),
      host.f32('v'),
      host.f32('grad'),
      host.num('lr'),
      host.num('beta1'),
      host.num('beta2'),
      host.num('eps'),
      host.num('weightDecay'),
      host.num('step'),
      host.num('n'),
    ),
    sgdStepF32: cpuCall(
      host.f32('param'),
      host.optF32('buf'),
      host.f32('grad'),
      host.num('lr'),
      host.num('weightDecay'),
      host.num('momentum'),
      host.num('n'),
    ),
    sumSquaresF32: cpuReduction(host.f32('x'), host.num('n')),
  },
  cuda: {
    /**
     * torch.optim.AdamW on many tensors at once (one launch per 64): `table` holds 6 numbers per tensor,
     * [p, m, v, pBf16, g, n], with p, m, v, g f32 [n] and pBf16 (0: none) a bf16 [n] that receives the
     * updated p; gradScale f32 [1] on the device (a clip coefficient) or 0.
     */
    adamwStep: cudaCall('glue::adamw_step', [
      cu.table('table'),
      cu.optPtr('gradScale', 'float'),
      cu.f32('lr'),
      cu.f32('beta1'),
      cu.f32('beta2'),
      cu.f32('eps'),
      cu.f32('weightDecay'),
      cu.int('step', 1, 2147483647),
    ]),
    /** torch.optim.SGD on f32 p, g [n] with optional momentum buffer (0 = none). */
    sgdStep: cudaCall('lkc::sgd_step', [
      cu.ptr('p', 'float'),
      cu.optPtr('buf', 'float'),
      cu.ptr('g', 'float'),
      cu.count('n'),
      cu.f32('lr'),
      cu.f32('weightDecay'),
      cu.f32('momentum'),
    ]),
    /** acc[0] += Σ x² over x [n] of dtype t (fp32 atomics); acc is one f32, zeroed by the caller. */
    sumSquares: cudaCall('lkc::sum_squares', [
      cu.ptr('acc', 'float'),
      cu.ptr('x'),
      cu.dtype('t'),
      cu.count('n'),
    ]),
  },
} as const satisfies OpGroup;
