// WebGPU greedy pick (src/ops/spec/argmax.ts): one workgroup per row, each thread the best of its
// strided columns, then a tree in shared memory; ties to the lowest index, NaN never picked, a row
// starting with NaN gives 0 (argmaxFirst's scan). NaN is recognized by its bits.
import type { Kernels } from '../kernels.js';
import { dispatch, linearGroups, type KernelSpec } from './kernel.js';

const ARGMAX_ROWS: KernelSpec = {
  name: 'argmaxRows',
  inputs: ['x'],
  outputs: ['out'],
  params: ['rows:u32', 'cols:u32'],
  source: /* wgsl */ `
var<workgroup> bestV: array<f32, 256>;
var<workgroup> bestI: array<u32, 256>;
const NONE = 0xffffffffu;
// From the bits: WGSL lets compilers assume NaN never occurs, so v != v may fold to false.
fn isNan(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool { return bi == NONE || v > bv || (v == bv && i < bi); }
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= P.rows) { return; }
  var bv = 0.0;
  var bi = NONE;
  for (var c = li; c < P.cols; c += 256u) {
    let v = ld_x(r * P.cols + c);
    if (!isNan(v) && better(v, c, bv, bi)) { bv = v; bi = c; }
  }
  bestV[li] = bv;
  bestI[li] = bi;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w && bestI[li + w] != NONE && better(bestV[li + w], bestI[li + w], bestV[li], bestI[li])) {
      bestV[li] = bestV[li + w];
      bestI[li] = bestI[li + w];
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    let first = ld_x(r * P.cols);
    st_out(r, select(i32(bestI[0]), 0, isNan(first) || bestI[0] == NONE));
  }
}`,
};

export const argmaxKernels = {
  argmaxRows: (out, x) => {
    if (x.dtype !== 'f32' && x.dtype !== 'bf16')
      throw new Error(`lorakit: the WebGPU argmaxRows kernel reads f32 or bf16 rows, got ${x.dtype}.`);
    const cols = x.shape.at(-1)!;
    const rows = x.size / cols;
    dispatch(ARGMAX_ROWS, { x, out }, { rows, cols }, linearGroups(rows));
  },
} satisfies Kernels;
