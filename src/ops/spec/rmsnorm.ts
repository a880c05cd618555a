// RMSNorm (Llama/HF semantics): y = x / sqrt(mean(x²) + eps) · weight, normalized in fp32.
import { cuda, host, op, type OpGroup } from './dsl.js';

export const rmsnorm = {
  ops: {
    /** y [rows, D], rstd [rows] <- x [rows, D] (any leading dims), weight [D] */
    rmsnormForward: op('y:float rstd:f32 = x:float weight:float eps'),
    /** dx [rows, D] and/or dweight [D] (null when not wanted) <- dy, x, weight, rstd saved by forward */
    rmsnormBackward: op('dx?:float dweight?:f32 = dy:float x:float weight:float rstd:f32'),
  },
  cpu: {
    rmsnormForwardF32: host('y:f32 rstd:f32 x:f32 weight:f32 rows dim eps'),
    rmsnormBackwardF32: host('dx?:f32 dweight?:f32 dy:f32 x:f32 weight:f32 rstd:f32 rows dim'),
  },
  cuda: {
    /** y, x [rows, dim] and w [dim] of dtype t (f32 or bf16); f32 rstd [rows]. */
    rmsnormForward: cuda(
      'lkc::rmsnorm_forward',
      'y:ptr rstd:float* x:ptr w:ptr t:floatType rows:count dim:dim eps:f32',
      { of: ['rows'], perBlock: 8, what: 'rmsnorm' },
    ),
    /**
     * dx (or 0), dy, x [rows, dim] and w [dim] of dtype t; dw f32 [dim] accumulated (+=, or 0). The
     * kernel always writes dx: without one it gets a scratch.
     */
    rmsnormBackward: cuda(
      'glue::rmsnorm_backward',
      'dx?:ptr dw?:float* dy:ptr x:ptr w:ptr t:floatType rstd:float* rows:count dim:dim',
    ),
  },
} as const satisfies OpGroup;
