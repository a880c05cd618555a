import type { Device } from '../tensor/tensor.js';

/**
 * The op table every backend implements. Each op module declares its kernels here by declaration
 * merging (`declare module '../backend/kernels.js' { interface KernelTable { name: (...) => void } }`)
 * and registers one implementation per device; callers get the exact signature back, no casts.
 * Kernels write into preallocated outputs: outputs first, then inputs, then attributes.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface KernelTable {}

export type KernelName = keyof KernelTable;

const tables: Record<Device, Partial<KernelTable>> = { cpu: {}, cuda: {} };

export function registerKernel<K extends KernelName>(device: Device, name: K, impl: KernelTable[K]): void {
  tables[device][name] = impl;
}

export function kernel<K extends KernelName>(device: Device, name: K): KernelTable[K] {
  const impl = tables[device][name];
  if (impl === undefined) throw new Error(`lorakit: op '${String(name)}' has no ${device} kernel.`);
  return impl;
}
