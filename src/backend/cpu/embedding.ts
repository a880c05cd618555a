// CPU embedding lookup and its gradient (native/cpu/embedding.cc): f32 or bf16 tables, f32 rows.
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';

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
