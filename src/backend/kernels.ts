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

/**
 * Observes every kernel call on a device while set (profiling): called before the kernel runs, it
 * returns the function to call after it.
 */
export type KernelTracer = (name: KernelName) => () => void;
const tracers: Partial<Record<Device, KernelTracer>> = {};

/** Sets (or, with null, removes) the tracer of a device's kernel calls. */
export function traceKernels(device: Device, tracer: KernelTracer | null): void {
  if (tracer) tracers[device] = tracer;
  else delete tracers[device];
}

export function kernel<K extends KernelName>(device: Device, name: K): KernelTable[K] {
  const impl = tables[device][name];
  if (impl === undefined) throw new Error(`lorakit: op '${String(name)}' has no ${device} kernel.`);
  const tracer = tracers[device];
  return tracer ? traced(impl, name, tracer) : impl;
}

// The kernel wrapped by the tracer. Every KernelTable member is a function (kernels return void or a
// number), which TypeScript cannot see through an indexed type: hence the one cast.
function traced<K extends KernelName>(impl: KernelTable[K], name: K, tracer: KernelTracer): KernelTable[K] {
  const f = impl as (...args: unknown[]) => unknown;
  return ((...args: unknown[]) => {
    const done = tracer(name);
    try {
      return f(...args);
    } finally {
      done();
    }
  }) as KernelTable[K];
}
