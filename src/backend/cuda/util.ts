// What the CUDA kernels share: optional pointers, dtype checks and bf16 temporaries.
// Activations and frozen weights are bf16 (tensor cores, the speed mode) or f32 (exact fp32 math, the
// exactness mode): each op runs in the one dtype its float tensors share, with fp32 accumulation either
// way; trainable weights, their gradients and optimizer state are f32.
import { Tensor } from '../../tensor/tensor.js';
import { CUDA_DTYPE, type CudaAddon, type CudaDType } from './addon.js';
import { dt, ptr } from './device.js';

export const NULL = 0;

/** The pointer of an optional tensor (0: left out). */
export const opt = (t: Tensor | null): number => (t ? ptr(t) : NULL);

export function expect(t: Tensor, dtype: Tensor['dtype'], op: string, name: string): void {
  if (t.dtype !== dtype) throw new Error(`lorakit: ${op} on cuda: ${name} must be ${dtype}, got ${t.dtype}.`);
}

/**
 * The addon dtype of an op's float tensors (activations, frozen weights; null: an output left out),
 * which must all be f32 or all bf16: the kernels take one dtype per call.
 */
export function floatType(op: string, tensors: Record<string, Tensor | null>): CudaDType {
  const given = Object.entries(tensors).filter((e): e is [string, Tensor] => e[1] !== null);
  const dtype = given[0]?.[1].dtype;
  if ((dtype === 'f32' || dtype === 'bf16') && given.every(([, t]) => t.dtype === dtype))
    return CUDA_DTYPE[dtype];
  const names = given.map(([name]) => name).join(', ');
  const got = given.map(([name, t]) => `${name} ${t.dtype}`).join(', ');
  throw new Error(`lorakit: ${op} on cuda: ${names} must be all f32 or all bf16, got ${got}.`);
}

/** A tensor, or a temporary copy of one that the caller disposes (`owned`). */
export interface Temp {
  t: Tensor;
  owned: boolean;
}

/** t as bf16: t itself, or a temporary copy. */
export function asBf16(cu: CudaAddon, t: Tensor): Temp {
  if (t.dtype === 'bf16') return { t, owned: false };
  const c = Tensor.empty(t.shape, 'bf16', 'cuda');
  cu.cast(ptr(c), CUDA_DTYPE.bf16, ptr(t), dt(t), t.size);
  return { t: c, owned: true };
}

/** Runs fn, then frees the temporaries. */
export function withTemps<T>(temps: Temp[], fn: () => T): T {
  try {
    return fn();
  } finally {
    for (const x of temps) if (x.owned) x.t.dispose();
  }
}

/** A scalar the kernel reads on the device (a loss gradient): t itself, or a copy there. */
export function onDevice(t: Tensor): Temp {
  return t.device === 'cuda' ? { t, owned: false } : { t: t.toDevice('cuda'), owned: true };
}
