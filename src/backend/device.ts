import type { Device, Tensor } from '../tensor/tensor.js';
import { offloadToHost, prefetchToDevice } from './cuda/device.js';
import { registerCudaKernels } from './cuda/kernels.js';

/**
 * Makes a device ready for tensors and ops: the CPU always is; CUDA registers its memory and kernels
 * on first use and throws one clear sentence when it cannot run here (not built, or no GPU).
 */
export function useDevice(device: Device): void {
  if (device === 'cuda') registerCudaKernels();
}

/**
 * Activation-checkpoint offloading: keeps a GPU tensor in pinned host memory until it is next used
 * (or prefetched), freeing its device memory meanwhile. No-op on the CPU.
 */
export function offload(t: Tensor): void {
  if (t.device === 'cuda') offloadToHost(t);
}

/** Starts copying an offloaded tensor back so that its next use does not wait. No-op on the CPU. */
export function prefetch(t: Tensor): void {
  if (t.device === 'cuda') prefetchToDevice(t);
}

export function parseDevice(value: string, where: string): Device {
  if (value === 'cpu' || value === 'cuda') return value;
  throw new Error(`lorakit: ${where} must be cpu or cuda, got '${value}'.`);
}
