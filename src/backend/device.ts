import type { Device } from '../tensor/tensor.js';
import { registerCudaKernels } from './cuda/kernels.js';

/**
 * Makes a device ready for tensors and ops: the CPU always is; CUDA registers its memory and kernels
 * on first use and throws one clear sentence when it cannot run here (not built, or no GPU).
 */
export function useDevice(device: Device): void {
  if (device === 'cuda') registerCudaKernels();
}

export function parseDevice(value: string, where: string): Device {
  if (value === 'cpu' || value === 'cuda') return value;
  throw new Error(`lorakit: ${where} must be cpu or cuda, got '${value}'.`);
}
