import type { DType } from '../tensor/dtype.js';
import type { Device, Tensor } from '../tensor/tensor.js';
import { BACKENDS } from './backends.js';
import { useBackend } from './kernels.js';
import { prepareWebGpu } from './webgpu/gpu.js';

/**
 * Makes a device ready for tensors and ops: the CPU always is; CUDA registers its memory and kernels
 * on first use and throws one clear sentence when it cannot run here (not built, or no GPU).
 */
export function useDevice(device: Device): void {
  useBackend(device);
}

/**
 * useDevice for every device, WebGPU included, whose adapter and device open asynchronously: the
 * one call a program that may run on any device makes before its first tensor there.
 */
export async function prepareDevice(device: Device): Promise<void> {
  if (device === 'webgpu') await prepareWebGpu();
  useDevice(device);
}

/**
 * Activation-checkpoint offloading: keeps a device tensor in pinned host memory until it is next used
 * (or prefetched), freeing its device memory meanwhile. No-op where tensors already live on the host.
 */
export function offload(t: Tensor): void {
  BACKENDS[t.device].offload?.(t);
}

/** Starts copying an offloaded tensor back so that its next use does not wait. No-op on the host. */
export function prefetch(t: Tensor): void {
  BACKENDS[t.device].prefetch?.(t);
}

/** The float dtypes a device computes in (activations, frozen weights). */
export function floatDTypes(device: Device): readonly DType[] {
  return BACKENDS[device].floatDTypes;
}

/**
 * The dtype activations have on a device unless a model asks for another: f32 on the CPU (exact, and
 * the CPU kernels are f32); bf16 on CUDA, where tensor-core GEMMs read bf16 and activations move at
 * half the bytes (a model loaded with dtype float32 on CUDA computes in f32 instead: CausalLM's
 * activationDType). Trainable weights, their gradients and optimizer state stay f32 everywhere.
 */
export function activationDType(device: Device): DType {
  return BACKENDS[device].activationDType;
}

/** The device's name in messages ("CPU", "GPU"). */
export function deviceLabel(device: Device): string {
  return BACKENDS[device].label;
}

const isDevice = (value: string): value is Device => Object.hasOwn(BACKENDS, value);

export function parseDevice(value: string, where: string): Device {
  if (isDevice(value)) return value;
  throw new Error(`lorakit: ${where} must be ${Object.keys(BACKENDS).join(' or ')}, got '${value}'.`);
}
