import { floatDTypes } from '../backend/device.js';
import { Tensor } from '../tensor/tensor.js';
import type { DType } from '../tensor/dtype.js';

/** Throws a clear error unless t has the given dtype. */
export function expectDType(op: string, name: string, t: Tensor, ...dtypes: DType[]): void {
  if (!dtypes.includes(t.dtype))
    throw new Error(`lorakit: ${op}: ${name} must be ${dtypes.join(' or ')}, got ${t.dtype}.`);
}

export function sameDevice(op: string, ...ts: (Tensor | null | undefined)[]): void {
  const first = ts.find((t): t is Tensor => !!t);
  for (const t of ts)
    if (t && first && t.device !== first.device)
      throw new Error(`lorakit: ${op}: tensors are on different devices (${first.device} and ${t.device}).`);
}

/** Throws a clear error unless t holds activations its device computes on (f32 on the CPU; f32 or bf16 on a GPU). */
export function expectFloat(op: string, name: string, t: Tensor): void {
  expectDType(op, name, t, ...floatDTypes(t.device));
}

/** A new tensor of t's dtype on t's device. */
export function emptyLike(t: Tensor, shape: readonly number[] = t.shape): Tensor {
  return Tensor.empty(shape, t.dtype, t.device);
}

/** A new f32 tensor on t's device (statistics a kernel saves: rstd, logsumexp, losses). */
export function emptyF32(t: Tensor, shape: readonly number[]): Tensor {
  return Tensor.empty(shape, 'f32', t.device);
}
