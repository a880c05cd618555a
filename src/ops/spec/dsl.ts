// How ops are declared (src/ops/spec/*.ts). An op is declared once: its kernel's arguments (outputs,
// then inputs, then attributes) with their dtypes, and the native entry points each backend's kernels
// call for it, each as one signature string. From these follow the kernel table's types
// (src/backend/kernels.ts), the addons' TypeScript interfaces (src/backend/<device>/addon.ts, by the
// type-level parsers below) and the CUDA addon's N-API wrappers (scripts/gen-bindings.mjs, by
// `parameters`). This file and the declarations import types only, so the build scripts can read them
// without loading an addon.
import type { QuantizedWeight } from '../../quant/weight.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { LoraSegmentsAttrs } from './lora-segments.js';
import type { GemmAttrs } from './matmul.js';
import type { AdamWOptions, AdamWSlot } from './optim.js';

/**
 * A signature: space-separated `name:kind` parameters in call order, `name?:kind` for one that may be
 * null (0 for a device pointer), a bare `name` for a number. Op signatures put their outputs before an
 * `=`: "y:float rstd:f32 = x:float weight:float eps:number".
 */
export type Signature = string;

/** One parameter of a signature: its name, kind and whether it may be left out. */
export interface Parameter {
  name: string;
  kind: string;
  optional: boolean;
  /** Op signatures: written by the kernel (before the `=`). */
  output: boolean;
}

/** The parameters of a signature (what the generator and the tests read). */
export function parameters(signature: Signature): Parameter[] {
  const tokens = signature.split(' ').filter((t) => t !== '');
  const eq = tokens.indexOf('=');
  return tokens
    .filter((t) => t !== '=')
    .map((token, i) => {
      const [head, kind = 'number'] = token.split(':');
      const optional = head.endsWith('?');
      return { name: optional ? head.slice(0, -1) : head, kind, optional, output: i < eq };
    });
}

// ---- ops --------------------------------------------------------------------------------------

/**
 * A tensor's dtypes: one dtype; 'float', the dtype the op computes in (f32 on the CPU, f32 or bf16 on
 * a GPU, one per call, shared by the op's float tensors); 'f32|bf16', either, each tensor its own
 * (frozen weights, GEMM operands); 'any', whatever the kernel converts.
 */
export type TensorKind = 'f32' | 'bf16' | 'i32' | 'u8' | 'float' | 'f32|bf16' | 'any';

/** Attributes that travel as one object, by the name a signature gives their kind. */
export interface StructKinds {
  GemmAttrs: GemmAttrs;
  AdamWSlots: readonly AdamWSlot[];
  AdamWOptions: AdamWOptions;
  LoraSegmentsAttrs: LoraSegmentsAttrs;
}

/** What each non-tensor kind of a kernel parameter is in TypeScript. */
interface KernelKinds extends StructKinds {
  number: number;
  boolean: boolean;
  tensors: readonly Tensor[];
  quantized: QuantizedWeight;
  weight: Tensor | QuantizedWeight;
}

type KernelValue<K> = K extends TensorKind ? Tensor : K extends keyof KernelKinds ? KernelKinds[K] : never;

type KernelParam<T> = T extends '='
  ? []
  : T extends `${string}?:${infer K}`
    ? [KernelValue<K> | null]
    : T extends `${string}:${infer K}`
      ? [KernelValue<K>]
      : [number];

/** The TypeScript parameters of a signature's kernel (a signature not known as a literal: none fit). */
export type KernelParams<S> = string extends S
  ? never
  : S extends `${infer H} ${infer R}`
    ? [...KernelParam<H>, ...KernelParams<R>]
    : S extends ''
      ? []
      : KernelParam<S>;

/** A declared signature and what a call returns. */
export interface Declared<S extends Signature, R extends string> {
  readonly signature: S;
  readonly returns: R;
}

const declaring =
  <R extends string>(returns: R) =>
  <const S extends Signature>(signature: S): Declared<S, R> => ({ signature, returns });

/** An op: what its kernels take, and whether they return one number read back to the host. */
export type OpSpec = Declared<Signature, 'void' | 'number'>;

/** A kernel that writes its outputs. */
export const op = declaring('void');
/** A kernel that returns one number (a reduction read back; a promise where reads cannot block: WebGPU). */
export const reduction = declaring('number');

/** The TypeScript signature of an op's kernels. */
export type KernelOf<S extends OpSpec> = (
  ...args: KernelParams<S['signature']>
) => S['returns'] extends 'number' ? number | Promise<number> : void;

// ---- CUDA entry points ------------------------------------------------------------------------

/**
 * Kinds of a CUDA entry point's parameters: device pointers (`ptr`: void*, or `float*`, `int32_t*`,
 * `uint8_t*`, `int8_t*`), dtype codes (`dtype`; `floatType`: f32 or bf16 only), sizes (`count`: an
 * int64_t, `dim`: an int), `f32` and `flag` attributes, `int[lo..hi]`, `probability` (in [0, 1]),
 * `seed` (any integer a double holds) and `table` (a Float64Array of host numbers).
 */
export interface CudaBinding<S extends Signature = Signature, R extends 'void' | 'size' = 'void' | 'size'> {
  /** The C++ function the wrapper calls with the parameters in order (and the stream last). */
  readonly fn: string;
  readonly signature: S;
  /** 'size': returns a byte count and takes no stream (workspace sizes); 'void': enqueues kernels. */
  readonly returns: R;
  /** Launches with one block per `perBlock` of these sizes' product: checked to fit a 32-bit grid. */
  readonly checkRows?: { readonly of: readonly string[]; readonly perBlock: number; readonly what: string };
}

/** A CUDA entry point that enqueues kernels: `fn(params..., stream)`. */
export const cuda = <const S extends Signature>(
  fn: string,
  signature: S,
  checkRows?: CudaBinding['checkRows'],
): CudaBinding<S, 'void'> => ({ fn, signature, returns: 'void', ...(checkRows ? { checkRows } : {}) });

/** A CUDA entry point that returns a workspace size in bytes: `fn(params...)`. */
export const cudaSize = <const S extends Signature>(fn: string, signature: S): CudaBinding<S, 'size'> => ({
  fn,
  signature,
  returns: 'size',
});

/** One parameter's JS value, given the type of a dtype code: pointers, sizes and numbers are numbers. */
type CudaValue<T, DType> = T extends `${string}:${'dtype' | 'floatType'}`
  ? DType
  : T extends `${string}:flag`
    ? boolean
    : T extends `${string}:table`
      ? Float64Array
      : number;

/** The TypeScript parameters of a CUDA entry point's signature. */
export type CudaParams<S, DType> = string extends S
  ? never
  : S extends `${infer H} ${infer R}`
    ? [CudaValue<H, DType>, ...CudaParams<R, DType>]
    : S extends ''
      ? []
      : [CudaValue<S, DType>];

// ---- CPU entry points -------------------------------------------------------------------------

/**
 * A CPU entry point (native/cpu: typed arrays over native memory). Kinds: `f32`, `u16` (bf16 bits),
 * `i32`, `u8`, `f32|u16` (a GEMM operand), `bool`, `quant` (a quantized weight as
 * QuantizedWeight.args() spreads it: 11 values); a bare name is a number.
 */
export type CpuBinding = Declared<Signature, 'void' | 'number'>;

export const host = declaring('void');
/** A CPU entry point that returns a number. */
export const hostReduction = declaring('number');

/** How many JS values a CPU parameter of this kind takes. */
export const hostArity = (kind: string): number => (kind === 'quant' ? 11 : 1);

/** The typed array each array kind of a CPU parameter is. */
interface HostArrays {
  f32: Float32Array;
  u16: Uint16Array;
  i32: Int32Array;
  u8: Uint8Array;
  'f32|u16': Float32Array | Uint16Array;
}

type HostArray<K> = K extends keyof HostArrays ? HostArrays[K] : never;

type HostParam<T, Quant extends unknown[]> = T extends `${string}:quant`
  ? Quant
  : T extends `${string}:bool`
    ? [boolean]
    : T extends `${string}?:${infer K}`
      ? [HostArray<K> | null]
      : T extends `${string}:${infer K}`
        ? [HostArray<K>]
        : [number];

/** The TypeScript parameters of a CPU entry point's signature (a quantized weight: the given tuple). */
export type HostParams<S, Quant extends unknown[]> = string extends S
  ? never
  : S extends `${infer H} ${infer R}`
    ? [...HostParam<H, Quant>, ...HostParams<R, Quant>]
    : S extends ''
      ? []
      : HostParam<S, Quant>;

/** What one op group declares: its ops, and the native entry points each backend's kernels call. */
export interface OpGroup {
  readonly ops: Readonly<Record<string, OpSpec>>;
  readonly cpu?: Readonly<Record<string, CpuBinding>>;
  readonly cuda?: Readonly<Record<string, CudaBinding>>;
}
