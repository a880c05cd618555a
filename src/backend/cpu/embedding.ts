// CPU embedding lookup and its gradient (native/cpu/embedding.cc): f32 or bf16 tables, f32 rows.
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';
import { f32 } from './arrays.js';

export const embeddingKernels = {
  embeddingForward: (out, table, ids) => {
    const [V, D] = table.shape;
    if (table.dtype === 'bf16')
      cpu.embeddingForwardBf16(f32(out), table.as('bf16'), ids.as('i32'), ids.size, V, D);
    else cpu.embeddingForwardF32(f32(out), f32(table), ids.as('i32'), ids.size, V, D);
  },
  embeddingBackward: (dtable, dy, ids) => {
    const [V, D] = dtable.shape;
    cpu.embeddingBackwardF32(f32(dtable), f32(dy), ids.as('i32'), ids.size, V, D);
  },
} satisfies Kernels;
