import { shapeString, Tensor, type Device } from '../tensor/tensor.js';
import type { DType } from '../tensor/dtype.js';

/** Throws a clear error unless t has the given dtype. */
export function expectDType(op: string, name: string, t: Tensor, ...dtypes: DType[]): void {
  if (!dtypes.includes(t.dtype))
    throw new Error(`lorakit: ${op}: ${name} must be ${dtypes.join(' or ')}, got ${t.dtype}.`);
}

/** Throws a clear error unless t has exactly this shape (-1 matches any size). */
export function expectShape(op: string, name: string, t: Tensor, shape: readonly number[]): void {
  const ok = t.shape.length === shape.length && shape.every((d, i) => d === -1 || d === t.shape[i]);
  if (!ok)
    throw new Error(
      `lorakit: ${op}: ${name} has shape ${shapeString(t.shape)}, expected ${shapeString(shape)}.`,
    );
}

export function sameDevice(op: string, ...ts: (Tensor | null | undefined)[]): void {
  const first = ts.find((t): t is Tensor => !!t);
  for (const t of ts)
    if (t && first && t.device !== first.device)
      throw new Error(`lorakit: ${op}: tensors are on different devices (${first.device} and ${t.device}).`);
}

/** Throws a clear error unless t holds activations this device computes on: f32 (CPU), f32 or bf16 (GPU). */
export function expectFloat(op: string, name: string, t: Tensor): void {
  if (t.device === 'cpu') expectDType(op, name, t, 'f32');
  else expectDType(op, name, t, 'f32', 'bf16');
}

/**
 * The dtype activations have on a device unless a model asks for another: f32 on the CPU (exact, and
 * the CPU kernels are f32); bf16 on CUDA, where tensor-core GEMMs read bf16 and activations move at
 * half the bytes (a model loaded with dtype float32 on CUDA computes in f32 instead: CausalLM's
 * activationDType). Trainable weights, their gradients and optimizer state stay f32 everywhere.
 */
export function activationDType(device: Device): DType {
  return device === 'cpu' ? 'f32' : 'bf16';
}

/** A new tensor of t's dtype on t's device. */
export function emptyLike(t: Tensor, shape: readonly number[] = t.shape): Tensor {
  return Tensor.empty(shape, t.dtype, t.device);
}

/** A new f32 tensor on t's device (statistics a kernel saves: rstd, logsumexp, losses). */
export function emptyF32(t: Tensor, shape: readonly number[]): Tensor {
  return Tensor.empty(shape, 'f32', t.device);
}
