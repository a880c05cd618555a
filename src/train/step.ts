// One optimizer step, in two halves a caller can put its own work between (a distributed run sums the
// target count before the first half and the gradients between them): the micro-batches' forward and
// backward, then clipping, the update and zeroing the gradients.
import { backward, noGrad } from '../autograd/tape.js';
import type { CausalLM } from '../models/llama.js';
import { copy, scale } from '../ops/elementwise.js';
import { keep, tidy, type Tensor } from '../tensor/tensor.js';
import { toDevice, type HostBatch } from './batching.js';
import { lossSum } from './loss.js';
import { clipGradNorm, type Optimizer } from './optimizer.js';

export interface StepContext {
  adapter: string;
  /** The run's seed and the step's number: each micro-batch's dropout seed follows from them. */
  seed: number;
  step: number;
  checkpointing: boolean;
  offloadCheckpoints: boolean;
}

/** Target tokens of the micro-batches: the loss is their summed NLL divided by this count. */
export function targetCount(micro: readonly HostBatch[]): number {
  return micro.reduce((n, b) => n + b.targetCount, 0);
}

/** Tokens of the micro-batches (padding excluded), for throughput. */
export function tokenCount(micro: readonly HostBatch[]): number {
  return micro.reduce((n, b) => n + b.segments.reduce((c, s) => c + (s > 0 ? 1 : 0), 0), 0);
}

/**
 * Forward and backward of each micro-batch, adding d(loss sum / divisor) into the gradients; returns
 * the summed NLL. `divisor` is the target count of the whole step (of every rank, when distributed).
 * The micro-batches' losses are read back after the last backward, so the step waits for the device
 * once (and WebGPU, which cannot block, reads them asynchronously).
 */
export async function accumulateGradients(
  model: CausalLM,
  micro: readonly HostBatch[],
  c: StepContext,
  divisor: number,
): Promise<number> {
  const totals: Tensor[] = [];
  try {
    micro.forEach((hb, k) => {
      if (hb.targetCount === 0) return;
      tidy(() => {
        const { batch, targets } = toDevice(hb);
        const total = lossSum(model, batch, targets, {
          ctx: { adapter: c.adapter, training: true, seed: (c.seed * 2654435761 + c.step * 97 + k) >>> 0 },
          checkpointing: c.checkpointing,
          offloadCheckpoints: c.offloadCheckpoints,
        });
        totals.push(keep(noGrad(() => copy(total))));
        backward(scale(total, 1 / Math.max(1, divisor)));
      });
    });
    let sum = 0;
    for (const t of totals) sum += (await t.toFloat32Async())[0];
    return sum;
  } finally {
    for (const t of totals) t.dispose();
  }
}

/** Clips the gradients to maxGradNorm (0: no clipping), updates at rate lr, zeroes them; returns the norm. */
export async function updateWeights(
  optimizer: Optimizer,
  params: readonly Tensor[],
  lr: number,
  maxGradNorm: number,
): Promise<number> {
  const gradNorm = await clipGradNorm([...params], maxGradNorm);
  optimizer.update(lr);
  optimizer.zeroGrad();
  return gradNorm;
}
