// The words op declarations are written in (src/ops/spec/*.ts). An op is declared once: its kernel's
// arguments (outputs, then inputs, then attributes) with their dtypes, and the native entry points
// each backend calls for it. From these the kernel table's types (src/backend/kernels.ts), the addons'
// TypeScript interfaces (src/backend/<device>/addon.ts) and the CUDA addon's N-API wrappers
// (scripts/gen-bindings.mjs) follow. This file and the declarations import types only, so the build
// scripts can read them without loading any addon.
import type { QuantizedWeight } from '../../quant/weight.js';
import type { Tensor } from '../../tensor/tensor.js';

// ---- kernel arguments --------------------------------------------------------------------------

/**
 * The dtypes a tensor argument takes: one dtype; 'float', the dtype the op computes in (f32 on the
 * CPU, f32 or bf16 on a GPU, one per call, shared by the op's float tensors); 'f32|bf16', either,
 * each tensor its own (frozen weights, GEMM operands); 'any', whatever the kernel converts.
 */
export type ElementSpec = 'f32' | 'bf16' | 'i32' | 'u8' | 'float' | 'f32|bf16' | 'any';

export interface TensorArg {
  readonly kind: 'tensor';
  readonly name: string;
  /** Written by the kernel (outputs, in-place updates) or only read. */
  readonly role: 'out' | 'in';
  readonly dtype: ElementSpec;
  /** May be null: an output not wanted, an input left out (a bias). */
  readonly optional: boolean;
}
/** A list of tensors (one call for a model's parameters). */
export interface TensorsArg {
  readonly kind: 'tensors';
  readonly name: string;
}
/** A quantized frozen weight (quant/weight.ts). */
export interface QuantizedArg {
  readonly kind: 'quantized';
  readonly name: string;
}
/** A frozen weight, dense or quantized. */
export interface WeightArg {
  readonly kind: 'weight';
  readonly name: string;
}
export interface NumberArg {
  readonly kind: 'number';
  readonly name: string;
}
export interface BooleanArg {
  readonly kind: 'boolean';
  readonly name: string;
}
/** Attributes that travel as one object, of type T. */
export interface StructArg<T> {
  readonly kind: 'struct';
  readonly name: string;
  /** Type only: never set. */
  readonly type?: T;
}

export type KernelArg =
  TensorArg | TensorsArg | QuantizedArg | WeightArg | NumberArg | BooleanArg | StructArg<unknown>;

export interface OpSpec<
  A extends readonly KernelArg[] = readonly KernelArg[],
  R extends 'void' | 'number' = 'void' | 'number',
> {
  readonly args: A;
  /** What the kernel returns: nothing, or one number read back to the host. */
  readonly returns: R;
}

const tensor = <O extends boolean>(name: string, role: 'out' | 'in', dtype: ElementSpec, optional: O) =>
  ({ kind: 'tensor', name, role, dtype, optional }) as const;

/** An output (or a tensor updated in place). */
export const out = (name: string, dtype: ElementSpec) => tensor(name, 'out', dtype, false);
/** An output that may be left out (null). */
export const optOut = (name: string, dtype: ElementSpec) => tensor(name, 'out', dtype, true);
export const input = (name: string, dtype: ElementSpec) => tensor(name, 'in', dtype, false);
/** An input that may be left out (null). */
export const optInput = (name: string, dtype: ElementSpec) => tensor(name, 'in', dtype, true);
export const tensors = (name: string) => ({ kind: 'tensors', name }) as const;
export const quantized = (name: string) => ({ kind: 'quantized', name }) as const;
export const weight = (name: string) => ({ kind: 'weight', name }) as const;
export const num = (name: string) => ({ kind: 'number', name }) as const;
export const bool = (name: string) => ({ kind: 'boolean', name }) as const;
export const struct = <T>(name: string): StructArg<T> => ({ kind: 'struct', name });

/** A kernel that writes its outputs. */
export const op = <const A extends readonly KernelArg[]>(...args: A): OpSpec<A, 'void'> => ({
  args,
  returns: 'void',
});
/** A kernel that returns one number (a reduction read back). */
export const reduction = <const A extends readonly KernelArg[]>(...args: A): OpSpec<A, 'number'> => ({
  args,
  returns: 'number',
});

// ---- the kernel table's types, derived ---------------------------------------------------------

type KernelParam<A> = A extends { kind: 'tensor'; optional: true }
  ? Tensor | null
  : A extends { kind: 'tensor' }
    ? Tensor
    : A extends { kind: 'tensors' }
      ? readonly Tensor[]
      : A extends { kind: 'quantized' }
        ? QuantizedWeight
        : A extends { kind: 'weight' }
          ? Tensor | QuantizedWeight
          : A extends { kind: 'number' }
            ? number
            : A extends { kind: 'boolean' }
              ? boolean
              : A extends StructArg<infer T>
                ? T
                : never;

type KernelParams<A extends readonly unknown[]> = { -readonly [I in keyof A]: KernelParam<A[I]> };

/** The TypeScript signature of an op's kernels. */
export type KernelOf<S extends OpSpec> = (
  ...args: KernelParams<S['args']>
) => S['returns'] extends 'number' ? number : void;

// ---- native entry points -----------------------------------------------------------------------

/** One parameter of a CUDA addon entry point, as the N-API wrapper reads and checks it. */
export type CudaParam =
  /** A device pointer, never null; `to` is the C++ pointee (void: any). */
  | { readonly kind: 'ptr'; readonly name: string; readonly to: CPointee }
  /** A device pointer or 0 (null). */
  | { readonly kind: 'optPtr'; readonly name: string; readonly to: CPointee }
  /** A dtype code (lkc::DType); 'floatType' only f32 or bf16. */
  | { readonly kind: 'dtype' | 'floatType'; readonly name: string }
  /** A size: an int64_t ('count') or an int ('dim'). */
  | { readonly kind: 'count' | 'dim'; readonly name: string }
  /** A float attribute. */
  | { readonly kind: 'f32'; readonly name: string }
  | { readonly kind: 'flag'; readonly name: string }
  /** An int in [lo, hi]. */
  | { readonly kind: 'int'; readonly name: string; readonly lo: number; readonly hi: number }
  /** A probability in [0, 1], as a float. */
  | { readonly kind: 'probability'; readonly name: string }
  /** Any integer a double holds exactly, as a uint64_t (dropout seeds). */
  | { readonly kind: 'seed'; readonly name: string }
  /** A Float64Array of host numbers (adamwStep's table). */
  | { readonly kind: 'table'; readonly name: string };

export type CPointee = 'void' | 'float' | 'int32_t' | 'uint8_t' | 'int8_t';

export interface CudaBinding<
  P extends readonly CudaParam[] = readonly CudaParam[],
  R extends 'void' | 'size' = 'void' | 'size',
> {
  /** The C++ function the wrapper calls with the parameters in order (and the stream last). */
  readonly fn: string;
  readonly params: P;
  /** 'size': returns a byte count and takes no stream (workspace sizes); 'void': enqueues kernels. */
  readonly returns: R;
  /** Launches with one block per `perBlock` of these sizes' product: checked to fit a 32-bit grid. */
  readonly checkRows?: { readonly of: readonly string[]; readonly perBlock: number; readonly what: string };
}

const cudaParam = {
  ptr: (name: string, to: CPointee = 'void') => ({ kind: 'ptr', name, to }) as const,
  optPtr: (name: string, to: CPointee = 'void') => ({ kind: 'optPtr', name, to }) as const,
  dtype: (name: string) => ({ kind: 'dtype', name }) as const,
  floatType: (name: string) => ({ kind: 'floatType', name }) as const,
  count: (name: string) => ({ kind: 'count', name }) as const,
  dim: (name: string) => ({ kind: 'dim', name }) as const,
  f32: (name: string) => ({ kind: 'f32', name }) as const,
  flag: (name: string) => ({ kind: 'flag', name }) as const,
  int: (name: string, lo: number, hi: number) => ({ kind: 'int', name, lo, hi }) as const,
  probability: (name: string) => ({ kind: 'probability', name }) as const,
  seed: (name: string) => ({ kind: 'seed', name }) as const,
  table: (name: string) => ({ kind: 'table', name }) as const,
};
export { cudaParam as cu };

/** A CUDA entry point that enqueues kernels: `fn(params..., stream)`. */
export const cudaCall = <const P extends readonly CudaParam[]>(
  fn: string,
  params: P,
  checkRows?: CudaBinding['checkRows'],
): CudaBinding<P, 'void'> => ({ fn, params, returns: 'void', ...(checkRows ? { checkRows } : {}) });

/** A CUDA entry point that returns a workspace size in bytes: `fn(params...)`. */
export const cudaSize = <const P extends readonly CudaParam[]>(
  fn: string,
  params: P,
): CudaBinding<P, 'size'> => ({
  fn,
  params,
  returns: 'size',
});

/** One parameter of a CPU addon entry point (native/cpu: typed arrays over native memory). */
export type CpuParam =
  | {
      readonly kind: 'f32' | 'u16' | 'i32' | 'u8' | 'f32|u16';
      readonly name: string;
      readonly optional: boolean;
    }
  | { readonly kind: 'number' | 'boolean'; readonly name: string }
  /** A quantized weight as QuantizedWeight.args() spreads it (11 values). */
  | { readonly kind: 'quant'; readonly name: string };

export interface CpuBinding<
  P extends readonly CpuParam[] = readonly CpuParam[],
  R extends 'void' | 'number' = 'void' | 'number',
> {
  readonly params: P;
  readonly returns: R;
}

const array = <K extends 'f32' | 'u16' | 'i32' | 'u8' | 'f32|u16'>(kind: K) => ({
  req: (name: string) => ({ kind, name, optional: false }) as const,
  opt: (name: string) => ({ kind, name, optional: true }) as const,
});
const cpuParam = {
  f32: array('f32').req,
  optF32: array('f32').opt,
  u16: array('u16').req,
  i32: array('i32').req,
  u8: array('u8').req,
  /** f32 values or bf16 bits (GEMM operands). */
  f32OrBf16: array('f32|u16').req,
  num: (name: string) => ({ kind: 'number', name }) as const,
  bool: (name: string) => ({ kind: 'boolean', name }) as const,
  quant: (name: string) => ({ kind: 'quant', name }) as const,
};
export { cpuParam as host };

export const cpuCall = <const P extends readonly CpuParam[]>(...params: P): CpuBinding<P, 'void'> => ({
  params,
  returns: 'void',
});
export const cpuReduction = <const P extends readonly CpuParam[]>(...params: P): CpuBinding<P, 'number'> => ({
  params,
  returns: 'number',
});

/** What one op group declares: its ops, and the native entry points each backend's kernels call. */
export interface OpGroup {
  readonly ops: Readonly<Record<string, OpSpec>>;
  readonly cpu?: Readonly<Record<string, CpuBinding>>;
  readonly cuda?: Readonly<Record<string, CudaBinding>>;
}
