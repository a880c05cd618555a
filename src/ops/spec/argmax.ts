// Greedy decoding's pick on the device: each row's first largest index, so a server reads back one
// int per sequence instead of a row of logits.
import { cuda, op, type OpGroup } from './dsl.js';

export const argmax = {
  ops: {
    /**
     * out [rows] i32 = the first index of the largest value of each row of x [rows, V], as the scan
     * `best = 0; for i ≥ 1: if x[i] > x[best] best = i` finds it (NaN never picked; a row starting with
     * NaN gives 0).
     */
    argmaxRows: op('out:i32 = x:float'),
  },
  cuda: {
    /** out [rows] i32 <- x [rows, cols] of dtype t (f32 or bf16). */
    argmaxRows: cuda('lkc::argmax_rows', 'out:int32_t* x:ptr t:floatType rows:count cols:count'),
  },
} as const satisfies OpGroup;
