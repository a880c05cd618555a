// Optimizer updates (in place, never recorded) with torch.optim's semantics, and the squared norm
// used for gradient clipping.
import { kernel } from '../backend/kernels.js';
import { Tensor } from '../tensor/tensor.js';
import type { AdamWOptions, AdamWSlot } from './spec/optim.js';
import { expectDType, sameDevice } from './util.js';

export type { AdamWOptions, AdamWSlot } from './spec/optim.js';

export interface SgdOptions {
  lr: number;
  weightDecay: number;
  momentum?: number;
  /** Momentum buffer, zero-initialized by the caller before the first step (required when momentum > 0). */
  buf?: Tensor;
}

function checkState(op: string, param: Tensor, named: Record<string, Tensor>): void {
  expectDType(op, 'param', param, 'f32');
  for (const [name, t] of Object.entries(named)) {
    sameDevice(op, param, t);
    expectDType(op, name, t, 'f32');
    if (t.size !== param.size)
      throw new Error(`lorakit: ${op}: ${name} has ${t.size} elements but the parameter has ${param.size}.`);
  }
}

function checkNumbers(op: string, values: Record<string, number>): void {
  for (const [name, v] of Object.entries(values))
    if (!Number.isFinite(v)) throw new Error(`lorakit: ${op}: ${name} must be a finite number, got ${v}.`);
}

/**
 * One torch.optim.AdamW update of every slot, in place: p *= 1 − lr·wd; m = β1·m + (1 − β1)·g;
 * v = β2·v + (1 − β2)·g²; p −= lr/(1 − β1^step) · m / (sqrt(v)/sqrt(1 − β2^step) + eps). A slot's
 * bf16 copy, when given, receives the updated p. All slots on one device.
 */
export function adamwStep(slots: readonly AdamWSlot[], o: AdamWOptions): void {
  checkNumbers('adamwStep', {
    lr: o.lr,
    beta1: o.beta1,
    beta2: o.beta2,
    eps: o.eps,
    weightDecay: o.weightDecay,
  });
  if (!Number.isInteger(o.step) || o.step < 1)
    throw new Error(`lorakit: adamwStep: step must be an integer ≥ 1, got ${o.step}.`);
  if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1))
    throw new Error(`lorakit: adamwStep: betas must be in [0, 1), got ${o.beta1} and ${o.beta2}.`);
  if (slots.length === 0) return;
  for (const { param, m, v, grad, copy } of slots) {
    checkState('adamwStep', param, { grad, m, v });
    sameDevice('adamwStep', slots[0].param, param);
    if (copy) {
      sameDevice('adamwStep', param, copy);
      expectDType('adamwStep', 'copy', copy, 'bf16');
      if (copy.size !== param.size)
        throw new Error(
          `lorakit: adamwStep: copy has ${copy.size} elements but the parameter has ${param.size}.`,
        );
    }
  }
  // A compute copy the kernel does not rewrite would go stale: drop it.
  for (const { param, copy } of slots)
    if (param.computeCopy && param.computeCopy !== copy) param.dropComputeCopy();
  kernel(slots[0].param.device, 'adamwStep')(slots, o);
}

/**
 * One torch.optim.SGD update, in place (dampening 0, no Nesterov): d = g + wd·p; with momentum,
 * buf = momentum·buf + d and d = buf; p −= lr·d.
 */
export function sgdStep(param: Tensor, grad: Tensor, o: SgdOptions): void {
  const momentum = o.momentum ?? 0;
  checkState('sgdStep', param, o.buf ? { grad, buf: o.buf } : { grad });
  checkNumbers('sgdStep', { lr: o.lr, weightDecay: o.weightDecay, momentum });
  if (momentum !== 0 && !o.buf) throw new Error('lorakit: sgdStep: momentum needs a momentum buffer (buf).');
  param.dropComputeCopy(); // the SGD kernel does not rewrite it
  kernel(param.device, 'sgdStep')(
    param,
    momentum !== 0 ? (o.buf ?? null) : null,
    grad,
    o.lr,
    o.weightDecay,
    momentum,
  );
}

/**
 * Σ t² over all the tensors (the global gradient norm used by clipping). The CPU accumulates in double;
 * a GPU sums each tensor in fp32 and reads all the sums back at once, so a step waits once, not once
 * per parameter. Asynchronous because WebGPU's read back is.
 */
export async function gradNormSquared(ts: Tensor | readonly Tensor[]): Promise<number> {
  const list = ts instanceof Tensor ? [ts] : ts;
  if (list.length === 0) return 0;
  for (const t of list) expectDType('gradNormSquared', 't', t, 'f32');
  sameDevice('gradNormSquared', ...list);
  return kernel(list[0].device, 'sumSquares')(list);
}
