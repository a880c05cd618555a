// RMSNorm (Llama/HF semantics): y = x / sqrt(mean(x²) + eps) · weight, normalized in fp32.
import { cpuCall, cu, cudaCall, host, input, num, op, optOut, out, type OpGroup } from './dsl.js';

export const rmsnorm = {
  ops: {
    /** y [rows, D], rstd [rows] <- x [rows, D] (any leading dims), weight [D] */
    rmsnormForward: op(
      out('y', 'float'),
      out('rstd', 'f32'),
      input('x', 'float'),
      input('weight', 'float'),
      num('eps'),
    ),
    /** dx [rows, D] and/or dweight [D] (null when not wanted) <- dy, x, weight, rstd saved by forward */
    rmsnormBackward: op(
      optOut('dx', 'float'),
      optOut('dweight', 'f32'),
      input('dy', 'float'),
      input('x', 'float'),
      input('weight', 'float'),
      input('rstd', 'f32'),
    ),
  },
  cpu: {
    rmsnormForwardF32: cpuCall(
      host.f32('y'),
      host.f32('rstd'),
      host.f32('x'),
      host.f32('weight'),
      host.num('rows'),
      host.num('dim'),
      host.num('eps'),
    ),
    rmsnormBackwardF32: cpuCall(
      host.optF32('dx'),
      host.optF32('dweight'),
      host.f32('dy'),
      host.f32('x'),
      host.f32('weight'),
      host.f32('rstd'),
      host.num('rows'),
      host.num('dim'),
    ),
  },
  cuda: {
    /** y, x [rows, dim] and w [dim] of dtype t (f32 or bf16); f32 rstd [rows]. */
    rmsnormForward: cudaCall(
      'lkc::rmsnorm_forward',
      [
        cu.ptr('y'),
        cu.ptr('rstd', 'float'),
        cu.ptr('x'),
        cu.ptr('w'),
        cu.floatType('t'),
        cu.count('rows'),
        cu.dim('dim'),
        cu.f32('eps'),
      ],
      { of: ['rows'], perBlock: 8, what: 'rmsnorm' },
    ),
    /**
     * dx (or 0), dy, x [rows, dim] and w [dim] of dtype t; dw f32 [dim] accumulated (+=, or 0). The
     * kernel always writes dx: without one it gets a scratch.
     */
    rmsnormBackward: cudaCall('glue::rmsnorm_backward', [
      cu.optPtr('dx'),
      cu.optPtr('dw', 'float'),
      cu.ptr('dy'),
      cu.ptr('x'),
      cu.ptr('w'),
      cu.floatType('t'),
      cu.ptr('rstd', 'float'),
      cu.count('rows'),
      cu.dim('dim'),
    ]),
  },
} as const satisfies OpGroup;
