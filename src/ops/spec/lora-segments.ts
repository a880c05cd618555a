// The LoRA term of many adapters over one batch of rows (serving: the rows of requests that use
// different adapters, after one base GEMM for all of them), as Punica's SGMV and S-LoRA do it.
import { cuda, op, type OpGroup } from './dsl.js';

/**
 * The segments of one call, one entry per adapter in the order of the factor lists: segment g covers
 * rows [starts[g], ends[g]) and scales its term by scales[g]. Segments are disjoint.
 */
export interface LoraSegmentsAttrs {
  starts: readonly number[];
  ends: readonly number[];
  scales: readonly number[];
}

export const loraSegments = {
  ops: {
    /**
     * y [N, out] += s_g·(x[rows of g]·A_gᵀ)·B_gᵀ for every segment g, in place; x [N, in] has y's dtype;
     * As[g] [r_g, in] and Bs[g] [out, r_g], each f32 or bf16. Rows in no segment keep their values.
     * Each row's result depends only on that row and its adapter.
     */
    loraSegments: op('y:float = x:float As:tensors Bs:tensors attrs:LoraSegmentsAttrs'),
  },
  cuda: {
    /**
     * y [rows, out] += s·(x·Aᵀ)·Bᵀ per segment, x and y of dtype t; `table` holds 6 numbers per
     * segment, [A, B, rank, scale, start, end], with A [rank, in] and B [out, rank] of dtype t on the
     * device. One launch for the shrink and one for the expand, whatever the number of segments.
     */
    loraSegments: cuda(
      'glue::lora_segments',
      'y:ptr x:ptr t:floatType table:table rows:count in:count out:count',
    ),
  },
} as const satisfies OpGroup;
