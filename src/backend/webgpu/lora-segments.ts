// WebGPU kernel of loraSegments (src/ops/spec/lora-segments.ts): y[start:end] += s·(x·Aᵀ)·Bᵀ for each
// segment, in place, in the CPU's arithmetic (src/backend/cpu/lora-segments.ts): h = x·Aᵀ summed in
// fp32 and kept in f32, then y = s·(h·Bᵀ) + y with the product summed in fp32. x and y f32; A, B f32
// or bf16 (read as stored). One dispatch per segment, each workgroup 8 rows of it; its shrink and
// expand share h in workgroup memory, so h never goes through a buffer:
//
//   shrink  x's rows staged 128 columns at a time; the r dot products of each row split over the
//           workgroup's threads (256 / r threads per rank index, columns interleaved), their partial
//           sums then added in a fixed order
//   expand  one thread per output column (strided), Σ over the rank in order
import type { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import { dispatch, linearGroups, type KernelSpec } from './kernel.js';

/** Rows of one workgroup. */
const ROWS = 8;
/** Columns of x staged at a time. */
const CHUNK = 128;
const THREADS = 256;

const LORA_SEGMENT: KernelSpec = {
  name: 'loraSegment',
  inputs: ['x', 'A', 'B'],
  outputs: ['y'],
  params: ['start:u32', 'end:u32', 'rank:u32', 'inF:u32', 'outF:u32', 's:f32', 'tiles:u32'],
  source: /* wgsl */ `
const ROWS = ${ROWS}u;
const CHUNK = ${CHUNK}u;
var<workgroup> xs: array<f32, ${ROWS * CHUNK}>;     // [row][column of the chunk]
var<workgroup> part: array<f32, ${ROWS * THREADS}>; // [split][row][rank], then h [row][rank]
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let tile = wid.x + wid.y * nwg.x;
  if (tile >= P.tiles) { return; }
  let r0 = P.start + tile * ROWS;
  let rows = min(ROWS, P.end - r0);
  let splits = ${THREADS}u / P.rank;
  let k = li % P.rank;
  let split = li / P.rank;
  let inSplit = split < splits;
  var acc: array<f32, ${ROWS}>;
  for (var c0 = 0u; c0 < P.inF; c0 += CHUNK) {
    let width = min(CHUNK, P.inF - c0);
    for (var t = li; t < ROWS * CHUNK; t += ${THREADS}u) {
      let row = t / CHUNK;
      let c = t % CHUNK;
      var v = 0.0;
      if (row < rows && c < width) { v = ld_x((r0 + row) * P.inF + c0 + c); }
      xs[t] = v;
    }
    workgroupBarrier();
    if (inSplit) {
      for (var c = split; c < width; c += splits) {
        let a = ld_A(k * P.inF + c0 + c);
        for (var row = 0u; row < ROWS; row++) { acc[row] = fma(xs[row * CHUNK + c], a, acc[row]); }
      }
    }
    workgroupBarrier();
  }
  if (inSplit) {
    for (var row = 0u; row < ROWS; row++) { part[(split * ROWS + row) * P.rank + k] = acc[row]; }
  }
  workgroupBarrier();
  // h[row][k] = Σ over the splits in order, into the first split's slots (each slot read and written by
  // one thread).
  for (var t = li; t < ROWS * P.rank; t += ${THREADS}u) {
    var h = part[t];
    for (var p = 1u; p < splits; p++) { h += part[p * ROWS * P.rank + t]; }
    part[t] = h;
  }
  workgroupBarrier();
  for (var o = li; o < P.outF; o += ${THREADS}u) {
    var sums: array<f32, ${ROWS}>;
    for (var j = 0u; j < P.rank; j++) {
      let b = ld_B(o * P.rank + j);
      for (var row = 0u; row < ROWS; row++) { sums[row] = fma(part[row * P.rank + j], b, sums[row]); }
    }
    for (var row = 0u; row < rows; row++) {
      let e = (r0 + row) * P.outF + o;
      st_y(e, P.s * sums[row] + ld_y(e));
    }
  }
}`,
};

export const loraSegmentsKernels = {
  loraSegments: (y, x, As, Bs, { starts, ends, scales }) => {
    for (const [name, t] of [
      ['x', x],
      ['y', y],
    ] as const)
      if (t.dtype !== 'f32')
        throw new Error(`lorakit: the WebGPU loraSegments kernel takes an f32 ${name}, got ${t.dtype}.`);
    const inF = x.shape.at(-1)!;
    const outF = y.shape.at(-1)!;
    As.forEach((A: Tensor, g) => {
      const B = Bs[g];
      const rank = A.shape[0];
      // A workgroup's h is ROWS × rank values with at least one thread per rank index.
      if (rank > THREADS)
        throw new Error(`lorakit: the WebGPU loraSegments kernel takes ranks up to ${THREADS}, got ${rank}.`);
      const rows = ends[g] - starts[g];
      if (rows <= 0) return;
      const tiles = Math.ceil(rows / ROWS);
      dispatch(
        LORA_SEGMENT,
        { x, A, B, y },
        { start: starts[g], end: ends[g], rank, inF, outF, s: scales[g], tiles },
        linearGroups(tiles),
      );
    });
  },
} satisfies Kernels;
