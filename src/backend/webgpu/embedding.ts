// WebGPU kernels of the token embedding (src/ops/spec/embedding.ts): forward gathers rows of an f32 or
// bf16 table [V, D] by i32 ids into f32 rows, one thread per output element; backward zeroes dtable
// [V, D] f32 and adds the dy rows at their ids. WebGPU cannot raise an error from a kernel: an id
// outside [0, V) gives a zero row forward and no gradient (the op checks ids that live on the host).
//
// The scatter is deterministic, and bit for bit the CPU's: as native/cpu/embedding.cc, each thread
// owns one column of every row and walks the tokens in order, so repeated ids never race and add up
// in the same order on both devices (f32 atomics would add them in whatever order threads arrive).
import type { Kernels } from '../kernels.js';
import { elementwiseKernels, groups256, INDEX } from './elementwise.js';
import { dispatch, linearGroups, type KernelSpec } from './kernel.js';

const EMBEDDING_FORWARD: KernelSpec = {
  name: 'embeddingForward',
  inputs: ['table', 'ids'],
  outputs: ['out'],
  params: ['n:u32', 'vocab:u32', 'dim:u32'],
  source: `${INDEX}
  if (i >= P.n * P.dim) { return; }
  let id = ld_ids(i / P.dim);
  var v = 0.0;
  if (id >= 0 && u32(id) < P.vocab) { v = ld_table(u32(id) * P.dim + i % P.dim); }
  st_out(i, v);
}`,
};

// One thread per column, tokens in order. 64-thread workgroups: the grid is only D threads wide, so
// small groups spread it over more of the GPU.
const EMBEDDING_BACKWARD: KernelSpec = {
  name: 'embeddingBackward',
  inputs: ['dy', 'ids'],
  outputs: ['dtable'],
  params: ['n:u32', 'vocab:u32', 'dim:u32'],
  source: /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let d = (wid.x + wid.y * nwg.x) * 64u + li;
  if (d >= P.dim) { return; }
  for (var t = 0u; t < P.n; t++) {
    let id = ld_ids(t);
    if (id >= 0 && u32(id) < P.vocab) {
      let j = u32(id) * P.dim + d;
      st_dtable(j, ld_dtable(j) + ld_dy(t * P.dim + d));
    }
  }
}`,
};

export const embeddingKernels = {
  embeddingForward: (out, table, ids) => {
    if (out.dtype !== 'f32')
      throw new Error(`lorakit: the WebGPU embedding kernel writes f32 rows, not ${out.dtype}.`);
    if (table.dtype !== 'f32' && table.dtype !== 'bf16')
      throw new Error(`lorakit: the WebGPU embedding kernel reads f32 or bf16 tables, not ${table.dtype}.`);
    if (ids.dtype !== 'i32')
      throw new Error(`lorakit: the WebGPU embedding kernel takes i32 ids, got ${ids.dtype}.`);
    const [vocab, dim] = table.shape;
    const n = ids.size;
    dispatch(EMBEDDING_FORWARD, { table, ids, out }, { n, vocab, dim }, groups256(n * dim));
  },
  embeddingBackward: (dtable, dy, ids) => {
    if (dtable.dtype !== 'f32' || dy.dtype !== 'f32')
      throw new Error(
        `lorakit: the WebGPU embedding backward kernel computes in f32, got dtable ${dtable.dtype} and dy ${dy.dtype}.`,
      );
    if (ids.dtype !== 'i32')
      throw new Error(`lorakit: the WebGPU embedding kernel takes i32 ids, got ${ids.dtype}.`);
    const [vocab, dim] = dtable.shape;
    elementwiseKernels.fill(dtable, 0);
    dispatch(
      EMBEDDING_BACKWARD,
      { dy, ids, dtable },
      { n: ids.size, vocab, dim },
      linearGroups(Math.ceil(dim / 64)),
    );
  },
} satisfies Kernels;
