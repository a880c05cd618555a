// Examples -> model batches: right padding, or packing several examples into one row whose sequences
// never attend to each other (segment ids) and whose positions restart per sequence.
import type { Batch } from '../models/llama.js';
import { Tensor } from '../tensor/tensor.js';
import { IGNORE, type Example } from './example.js';

/** One batch on the host: [B, T] arrays. targets[t] is the label of token t+1 of the same sequence. */
export interface HostBatch {
  B: number;
  T: number;
  ids: Int32Array;
  positions: Int32Array;
  segments: Int32Array;
  targets: Int32Array;
  /** Number of targets that are not IGNORE. */
  targetCount: number;
}

/** Lays out rows, each a list of examples placed one after another. */
function layout(rows: Example[][]): HostBatch {
  const B = rows.length;
  const T = Math.max(1, ...rows.map((r) => r.reduce((n, e) => n + e.ids.length, 0)));
  const ids = new Int32Array(B * T);
  const positions = new Int32Array(B * T);
  const segments = new Int32Array(B * T);
  const targets = new Int32Array(B * T).fill(IGNORE);
  let targetCount = 0;
  rows.forEach((row, b) => {
    let t = b * T;
    row.forEach((ex, s) => {
      for (let i = 0; i < ex.ids.length; i++, t++) {
        ids[t] = ex.ids[i];
        positions[t] = i;
        segments[t] = s + 1;
        if (i + 1 < ex.ids.length && ex.labels[i + 1] !== IGNORE) {
          targets[t] = ex.labels[i + 1];
          targetCount++;
        }
      }
    });
  });
  return { B, T, ids, positions, segments, targets, targetCount };
}

/** One example per row, right-padded to the longest. */
export function padBatch(examples: Example[]): HostBatch {
  return layout(examples.map((e) => [e]));
}

/**
 * Packs examples, in order, into rows of at most maxSeqLen tokens (first fit on the current row;
 * examples are never split), then groups rows into batches of batchSize.
 */
export function packBatches(examples: Example[], maxSeqLen: number, batchSize: number): HostBatch[] {
  const rows: Example[][] = [];
  let row: Example[] = [];
  let used = 0;
  for (const e of examples) {
    if (used + e.ids.length > maxSeqLen && row.length > 0) {
      rows.push(row);
      row = [];
      used = 0;
    }
    row.push(e);
    used += e.ids.length;
  }
  if (row.length) rows.push(row);
  const batches: HostBatch[] = [];
  for (let i = 0; i < rows.length; i += batchSize) batches.push(layout(rows.slice(i, i + batchSize)));
  return batches;
}

/** Device tensors for a host batch. The caller disposes them (they are created in its scope). */
export function toDevice(hb: HostBatch): { batch: Batch; targets: Tensor } {
  const shape = [hb.B, hb.T];
  return {
    batch: {
      ids: Tensor.from(hb.ids, shape, 'i32'),
      positions: Tensor.from(hb.positions, shape, 'i32'),
      segments: Tensor.from(hb.segments, shape, 'i32'),
    },
    targets: Tensor.from(hb.targets, [hb.B * hb.T], 'i32'),
  };
}
