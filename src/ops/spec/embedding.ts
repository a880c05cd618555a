// Token embedding lookup: table [V, D] (f32 or bf16) gathered by i32 ids into activation rows.
import { cuda, host, op, type OpGroup } from './dsl.js';

const grid = { of: ['N'], perBlock: 8, what: 'embedding' };

export const embedding = {
  ops: {
    /** out [N, D] (the activation dtype) <- table [V, D] f32|bf16, ids [N] i32 */
    embeddingForward: op('out:float = table:f32|bf16 ids:i32'),
    /** dtable [V, D] f32 = Σ over tokens of dy rows scattered to their ids (zeroed first) <- dy [N, D], ids [N] */
    embeddingBackward: op('dtable:f32 = dy:float ids:i32'),
  },
  cpu: {
    embeddingForwardF32: host('out:f32 table:f32 ids:i32 n vocab dim'),
    embeddingForwardBf16: host('out:f32 table:u16 ids:i32 n vocab dim'),
    embeddingBackwardF32: host('dtable:f32 dy:f32 ids:i32 n vocab dim'),
  },
  cuda: {
    /**
     * out [N, C] of outType = table[ids] with table [V, C] of tableType: bf16 -> bf16, f32 -> bf16
     * (rounded) or f32 -> f32 (exact); other pairs throw. Ids outside [0, V) give zero rows.
     */
    embeddingForward: cuda(
      'lkc::embedding_forward',
      'out:ptr outType:floatType ids:int32_t* table:ptr tableType:floatType N:count C:dim V:count',
      grid,
    ),
    /** dtable [V, C] f32 += scatter of dout [N, C] of dtype t (f32 or bf16; zero dtable first for a fresh gradient). */
    embeddingBackward: cuda(
      'lkc::embedding_backward',
      'dtable:float* dout:ptr t:floatType ids:int32_t* N:count C:dim V:count',
      grid,
    ),
  },
} as const satisfies OpGroup;
