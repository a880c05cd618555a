// CPU embedding lookup and its gradient (native/cpu/embedding.cc): f32 or bf16 tables, f32 rows.
import type {} from '../../ops/embedding.js';
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';

declare module './addon.js' {
  interface CpuAddon {
    embeddingForwardF32(
      out: Float32Array,
      table: Float32Array,
      ids: Int32Array,
      n: number,
      vocab: number,
      dim: number,
    ): void;
    embeddingForwardBf16(
      out: Float32Array,
      table: Uint16Array,
      ids: Int32Array,
      n: number,
      vocab: number,
      dim: number,
    ): void;
    embeddingBackwardF32(
      dtable: Float32Array,
      dy: Float32Array,
      ids: Int32Array,
      n: number,
      vocab: number,
      dim: number,
    ): void;
  }
}

export const embeddingKernels = {
  embeddingForward: (out, table, ids) => {
    const [V, D] = table.shape;
    if (table.dtype === 'bf16')
      cpu.embeddingForwardBf16(out.as('f32'), table.as('bf16'), ids.as('i32'), ids.size, V, D);
    else cpu.embeddingForwardF32(out.as('f32'), table.as('f32'), ids.as('i32'), ids.size, V, D);
  },
  embeddingBackward: (dtable, dy, ids) => {
    const [V, D] = dtable.shape;
    cpu.embeddingBackwardF32(dtable.as('f32'), dy.as('f32'), ids.as('i32'), ids.size, V, D);
  },
} satisfies Kernels;
