// Token embedding lookup: table [V, D] (f32 or bf16) gathered by i32 ids into activation rows.
import { cpuCall, cu, cudaCall, host, input, op, out, type OpGroup } from './dsl.js';

const cpuLookup = (table: 'f32' | 'u16') =>
  cpuCall(
    host.f32('out'),
    host[table]('table'),
    host.i32('ids'),
    host.num('n'),
    host.num('vocab'),
    host.num('dim'),
  );

export const embedding = {
  ops: {
    /** out [N, D] (the activation dtype) <- table [V, D] f32|bf16, ids [N] i32 */
    embeddingForward: op(out('out', 'float'), input('table', 'f32|bf16'), input('ids', 'i32')),
    /** dtable [V, D] f32 = Σ over tokens of dy rows scattered to their ids (zeroed first) <- dy [N, D], ids [N] */
    embeddingBackward: op(out('dtable', 'f32'), input('dy', 'float'), input('ids', 'i32')),
  },
  cpu: {
    embeddingForwardF32: cpuLookup('f32'),
    embeddingForwardBf16: cpuLookup('u16'),
    embeddingBackwardF32: cpuCall(
      host.f32('dtable'),
      host.f32('dy'),
      host.i32('ids'),
      host.num('n'),
      host.num('vocab'),
      host.num('dim'),
    ),
  },
  cuda: {
    /**
     * out [N, C] of outType = table[ids] with table [V, C] of tableType: bf16 -> bf16, f32 -> bf16
     * (rounded) or f32 -> f32 (exact); other pairs throw. Ids outside [0, V) give zero rows.
     */
    embeddingForward: cudaCall(
      'lkc::embedding_forward',
      [
        cu.ptr('out'),
        cu.floatType('outType'),
        cu.ptr('ids', 'int32_t'),
        cu.ptr('table'),
        cu.floatType('tableType'),
        cu.count('N'),
        cu.dim('C'),
        cu.count('V'),
      ],
      { of: ['N'], perBlock: 8, what: 'embedding' },
    ),
    /** dtable [V, C] f32 += scatter of dout [N, C] of dtype t (f32 or bf16; zero dtable first for a fresh gradient). */
    embeddingBackward: cudaCall(
      'lkc::embedding_backward',
      [
        cu.ptr('dtable', 'float'),
        cu.ptr('dout'),
        cu.floatType('t'),
        cu.ptr('ids', 'int32_t'),
        cu.count('N'),
        cu.dim('C'),
        cu.count('V'),
      ],
      { of: ['N'], perBlock: 8, what: 'embedding' },
    ),
  },
} as const satisfies OpGroup;
