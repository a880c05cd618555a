// Optimizers over the trainable tensors: AdamW and SGD with torch semantics, state kept per tensor.
import { adamwStep, gradNormSquared, sgdStep, type AdamWSlot } from '../ops/optim.js';
import { scale } from '../ops/elementwise.js';
import { keep, Tensor } from '../tensor/tensor.js';

export type OptimizerName = 'adamw' | 'sgd';

export interface OptimizerOptions {
  name: OptimizerName;
  weightDecay: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  momentum?: number;
}

/** Optimizer state of one tensor: AdamW's m and v, or SGD's momentum buffer. */
interface Slot {
  m: Tensor | null;
  v: Tensor | null;
}

export class Optimizer {
  /** Number of steps taken (AdamW's bias correction uses it). */
  step = 0;
  private readonly slots = new Map<string, Slot>();

  constructor(
    readonly params: [string, Tensor][],
    readonly opts: OptimizerOptions,
  ) {}

  private slot(name: string, like: Tensor): Slot {
    let s = this.slots.get(name);
    if (!s) {
      const adam = this.opts.name === 'adamw';
      s = {
        m: adam || (this.opts.momentum ?? 0) > 0 ? keep(Tensor.zeros(like.shape, 'f32', like.device)) : null,
        v: adam ? keep(Tensor.zeros(like.shape, 'f32', like.device)) : null,
      };
      this.slots.set(name, s);
    }
    return s;
  }

  /** Applies one update with learning rate lr to every parameter that has a gradient. */
  update(lr: number): void {
    this.step++;
    const adam: AdamWSlot[] = [];
    for (const [name, p] of this.params) {
      if (!p.grad) continue;
      const s = this.slot(name, p);
      if (this.opts.name === 'adamw') {
        adam.push({ param: p, m: s.m!, v: s.v!, grad: p.grad, copy: p.computeCopy });
        continue;
      }
      sgdStep(p, p.grad, {
        lr,
        weightDecay: this.opts.weightDecay,
        momentum: this.opts.momentum ?? 0,
        buf: s.m ?? undefined,
      });
    }
    if (adam.length > 0)
      adamwStep(adam, {
        lr,
        beta1: this.opts.beta1 ?? 0.9,
        beta2: this.opts.beta2 ?? 0.999,
        eps: this.opts.eps ?? 1e-8,
        weightDecay: this.opts.weightDecay,
        step: this.step,
      });
  }

  zeroGrad(): void {
    for (const [, p] of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** State tensors for checkpoints, under stable names. */
  state(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [name, s] of this.slots) {
      if (s.m) out[`${name}.m`] = s.m;
      if (s.v) out[`${name}.v`] = s.v;
    }
    return out;
  }

  /** Restores state saved by state(); `step` comes from the checkpoint's JSON. */
  loadState(tensors: Map<string, Tensor>, step: number): void {
    this.step = step;
    for (const [name, p] of this.params) {
      const s = this.slot(name, p);
      for (const key of ['m', 'v'] as const) {
        const dst = s[key];
        if (!dst) continue;
        const src = tensors.get(`${name}.${key}`);
        if (!src || src.size !== dst.size)
          throw new Error(`lorakit: the checkpoint's optimizer state lacks '${name}.${key}'.`);
        dst.copyFrom(src);
      }
    }
  }

  dispose(): void {
    for (const s of this.slots.values()) {
      s.m?.dispose();
      s.v?.dispose();
    }
    this.slots.clear();
  }
}

/**
 * Scales all gradients so their global L2 norm is at most maxNorm (torch's clip_grad_norm_: factor
 * maxNorm / (norm + 1e-6), only when below 1). Returns the norm before clipping; maxNorm 0 only measures.
 */
export async function clipGradNorm(params: Tensor[], maxNorm: number): Promise<number> {
  const norm = Math.sqrt(await gradNormSquared(params.flatMap((p) => (p.grad ? [p.grad] : []))));
  const factor = maxNorm / (norm + 1e-6);
  if (maxNorm > 0 && factor < 1)
    for (const p of params) {
      if (!p.grad) continue;
      const scaled = keep(scale(p.grad, factor));
      p.grad.dispose();
      p.grad = scaled;
    }
  return norm;
}
