// Tensors as the typed arrays the CPU addon takes (checked dtypes; host memory).
import type { Tensor } from '../../tensor/tensor.js';

export const f32 = (t: Tensor): Float32Array => t.as('f32');
export const optF32 = (t: Tensor | null): Float32Array | null => t?.as('f32') ?? null;
/** f32 values or bf16 bits, as the GEMM reads either. */
export const f32OrBf16 = (t: Tensor): Float32Array | Uint16Array =>
  t.dtype === 'bf16' ? t.as('bf16') : t.as('f32');
