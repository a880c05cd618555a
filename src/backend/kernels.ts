import type { KernelOf } from '../ops/spec/dsl.js';
import type { Ops } from '../ops/spec/index.js';
import type { DType } from '../tensor/dtype.js';
import type { Device, Tensor } from '../tensor/tensor.js';
import { BACKENDS } from './backends.js';

/**
 * The op table every backend implements, derived from the op declarations (src/ops/spec/): each
 * backend implements them in src/backend/<device>/ and callers get the exact signature back, no
 * casts. Kernels write into preallocated outputs: outputs first, then inputs, then attributes.
 */
export type KernelTable = { [K in keyof Ops]: KernelOf<Ops[K]> };

export type KernelName = keyof KernelTable;

/** Some of the op table: what one group of a backend's kernels implements. */
export type Kernels = { [K in KernelName]?: KernelTable[K] };

/**
 * A device's implementation of the op table, and what ops and layers may ask of the device instead of
 * naming it. Every backend is made and registered the same way: `kernels()` runs on the device's first
 * use and returns its whole table (src/backend/<device>/index.ts).
 */
export interface Backend {
  /** The device's name in messages: "the CPU computes in f32". */
  readonly label: string;
  /** The float dtypes activations and frozen weights compute in. */
  readonly floatDTypes: readonly DType[];
  /** The one of them activations take unless a model asks for another. */
  readonly activationDType: DType;
  /** Readies the device (memory, kernels) and returns its kernels; throws one sentence when it cannot run here. */
  kernels(): Kernels;
  /** Keeps a tensor in host memory until its next use (activation checkpoints); absent: nothing moves. */
  offload?(t: Tensor): void;
  /** Starts bringing an offloaded tensor back. */
  prefetch?(t: Tensor): void;
}

const tables: Partial<Record<Device, Kernels>> = {};

/** The kernels of a device, readied on first use. */
export function useBackend(device: Device): Kernels {
  return (tables[device] ??= { ...BACKENDS[device].kernels() });
}

/** Replaces one kernel of a device (tests wrap kernels to count their calls). */
export function registerKernel<K extends KernelName>(device: Device, name: K, impl: KernelTable[K]): void {
  useBackend(device)[name] = impl;
}

/** Whether the device has a kernel for this op (a capability: DoRA needs weightNorm). */
export function hasKernel(device: Device, name: KernelName): boolean {
  return useBackend(device)[name] !== undefined;
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
  const impl = (tables[device] ?? useBackend(device))[name];
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
