// WebGPU kernels of the transformer block's norms and gates, f32 as the CPU backend computes them:
//   RMSNorm (src/ops/spec/rmsnorm.ts): y = w · (x · rstd), rstd = 1/sqrt(mean(x²) + eps) per row, one
//     workgroup per row reducing in shared memory. Backward: dx = rstd · (w·dy − x̂ · mean(w·dy·x̂)) per
//     row the same way; dweight = Σ_rows dy·x̂ (written, not accumulated), a deterministic column
//     reduction: row chunks into partial sums, then the partials added in chunk order.
//   RoPE (src/ops/spec/rope.ts): HF rotate_half on x [rows, H, Dh] with cos/sin [P, half], positions
//     [rows] i32; one thread per rotated pair (so out may alias x), dims ≥ 2·half copied. Backward
//     rotates by −θ. WebGPU cannot raise an error from a kernel: a position outside [0, P) reads no
//     table and leaves its head unrotated (the op checks positions that live on the host).
//   SwiGLU (src/ops/spec/swiglu.ts): out = silu(g) · u, one thread per element; backward
//     dup = dy · silu(g), dgate = dy · u · σ(g) · (1 + g·(1 − σ(g))), either may be left out.
import { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import { elementwiseKernels, groups256, INDEX } from './elementwise.js';
import { dispatch, expectF32, type KernelSpec, linearGroups } from './kernel.js';

// ---- RMSNorm ------------------------------------------------------------------------------------------

/** Threads of a row's workgroup: rows narrower than a few hundred leave most of 256 idle. */
const rowThreads = (dim: number): number => (dim <= 512 ? 64 : 256);

// Σ over the row's WG strided partials (in `part`), a tree in shared memory; every thread gets the total.
const ROW_HEAD = /* wgsl */ `
var<workgroup> part: array<f32, WG>;
fn rowTotal(li: u32, s: f32) -> f32 {
  part[li] = s;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w >>= 1u) {
    if (li < w) { part[li] += part[li + w]; }
    workgroupBarrier();
  }
  return part[0];
}
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= P.rows) { return; }
  let base = r * P.dim;`;

const RMSNORM_FORWARD: KernelSpec = {
  name: 'rmsnormForward',
  inputs: ['x', 'weight'],
  outputs: ['y', 'rstd'],
  params: ['rows:u32', 'dim:u32', 'eps:f32'],
  source: `${ROW_HEAD}
  var s = 0.0;
  for (var c = li; c < P.dim; c += WG) { let v = ld_x(base + c); s += v * v; }
  let rs = 1.0 / sqrt(rowTotal(li, s) / f32(P.dim) + P.eps);
  if (li == 0u) { st_rstd(r, rs); }
  for (var c = li; c < P.dim; c += WG) { st_y(base + c, ld_weight(c) * (ld_x(base + c) * rs)); }
}`,
};

const RMSNORM_BACKWARD_DX: KernelSpec = {
  name: 'rmsnormBackwardDx',
  inputs: ['dy', 'x', 'weight', 'rstd'],
  outputs: ['dx'],
  params: ['rows:u32', 'dim:u32'],
  source: `${ROW_HEAD}
  let rs = ld_rstd(r);
  var s = 0.0;
  for (var c = li; c < P.dim; c += WG) { s += ld_weight(c) * ld_dy(base + c) * (ld_x(base + c) * rs); }
  let mean = rowTotal(li, s) / f32(P.dim);
  for (var c = li; c < P.dim; c += WG) {
    st_dx(base + c, rs * (ld_weight(c) * ld_dy(base + c) - (ld_x(base + c) * rs) * mean));
  }
}`,
};

// Σ dy·x̂ over the rows [chunk · chunkRows, …) of 64 columns: 4 lanes of rows per column, summed in
// shared memory; workgroup (column tile, chunk). Reads stay coalesced along the row.
const RMSNORM_DWEIGHT_PARTIAL: KernelSpec = {
  name: 'rmsnormDweightPartial',
  inputs: ['dy', 'x', 'rstd'],
  outputs: ['out'],
  params: ['rows:u32', 'dim:u32', 'chunkRows:u32'],
  source: /* wgsl */ `
var<workgroup> acc: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let col = wid.x * 64u + (li % 64u);
  let lane = li / 64u;
  let r0 = wid.y * P.chunkRows;
  let r1 = min(P.rows, r0 + P.chunkRows);
  var s = 0.0;
  if (col < P.dim) {
    for (var r = r0 + lane; r < r1; r += 4u) {
      let j = r * P.dim + col;
      s += ld_dy(j) * (ld_x(j) * ld_rstd(r));
    }
  }
  acc[li] = s;
  workgroupBarrier();
  if (lane == 0u && col < P.dim) {
    st_out(wid.y * P.dim + col, (acc[li] + acc[li + 64u]) + (acc[li + 128u] + acc[li + 192u]));
  }
}`,
};

/** Row chunks of the dweight reduction: at least 32 rows each, at most 256 chunks. */
function dweightChunks(rows: number): { chunks: number; chunkRows: number } {
  const chunkRows = Math.max(32, Math.ceil(rows / 256));
  return { chunks: Math.max(1, Math.ceil(rows / chunkRows)), chunkRows };
}

function rmsnormDweight(
  dweight: Tensor,
  dy: Tensor,
  x: Tensor,
  rstd: Tensor,
  rows: number,
  dim: number,
): void {
  const { chunks, chunkRows } = dweightChunks(rows);
  const grid: [number, number] = [Math.max(1, Math.ceil(dim / 64)), chunks];
  if (chunks === 1) {
    dispatch(RMSNORM_DWEIGHT_PARTIAL, { dy, x, rstd, out: dweight }, { rows, dim, chunkRows }, grid);
    return;
  }
  // Freed at once: the pool hands it out again only to work recorded after this.
  const partial = Tensor.empty([chunks, dim], 'f32', 'webgpu');
  try {
    dispatch(RMSNORM_DWEIGHT_PARTIAL, { dy, x, rstd, out: partial }, { rows, dim, chunkRows }, grid);
    elementwiseKernels.sumColumns(dweight, partial, chunks, dim);
  } finally {
    partial.dispose();
  }
}

// ---- RoPE ---------------------------------------------------------------------------------------------

const ROPE: KernelSpec = {
  name: 'rope',
  inputs: ['x', 'cos', 'sin', 'positions'],
  outputs: ['out'],
  params: ['rows:u32', 'heads:u32', 'dim:u32', 'half:u32', 'maxPositions:u32', 'sign:f32'],
  source: `${INDEX}
  // Dh − half threads per head: k < half rotates the pair (k, k + half), the rest copy dim k + half.
  let perHead = P.dim - P.half;
  if (i >= P.rows * P.heads * perHead) { return; }
  let head = i / perHead;
  let k = i % perHead;
  let base = head * P.dim;
  if (k >= P.half) {
    st_out(base + k + P.half, ld_x(base + k + P.half));
    return;
  }
  let x1 = ld_x(base + k);
  let x2 = ld_x(base + k + P.half);
  let p = ld_positions(head / P.heads);
  if (p < 0 || u32(p) >= P.maxPositions) {
    st_out(base + k, x1);
    st_out(base + k + P.half, x2);
    return;
  }
  let t = u32(p) * P.half + k;
  let c = ld_cos(t);
  let s = P.sign * ld_sin(t);
  st_out(base + k, x1 * c - x2 * s);
  st_out(base + k + P.half, x2 * c + x1 * s);
}`,
};

function rope(out: Tensor, x: Tensor, cos: Tensor, sin: Tensor, positions: Tensor, sign: number): void {
  expectF32('rope', out, x, cos, sin);
  if (positions.dtype !== 'i32')
    throw new Error(`lorakit: the WebGPU rope kernel takes i32 positions, got ${positions.dtype}.`);
  const [B, T, heads, dim] = x.shape;
  const [maxPositions, half] = cos.shape;
  const rows = B * T;
  const threads = rows * heads * (dim - half);
  dispatch(
    ROPE,
    { x, cos, sin, positions, out },
    { rows, heads, dim, half, maxPositions, sign },
    groups256(threads),
  );
}

// ---- SwiGLU -------------------------------------------------------------------------------------------

const SWIGLU_FORWARD: KernelSpec = {
  name: 'swigluForward',
  inputs: ['gate', 'up'],
  outputs: ['out'],
  params: ['n:u32'],
  source: `${INDEX}
  if (i >= P.n) { return; }
  let g = ld_gate(i);
  st_out(i, g / (1.0 + exp(-g)) * ld_up(i));
}`,
};

// One spec per set of wanted gradients: a null output has no binding.
function swigluBackwardSpec(dgate: boolean, dup: boolean): KernelSpec {
  return {
    name: `swigluBackward${dgate ? 'G' : ''}${dup ? 'U' : ''}`,
    inputs: ['dy', 'gate', 'up'],
    outputs: [...(dgate ? ['dgate'] : []), ...(dup ? ['dup'] : [])],
    params: ['n:u32'],
    source: `${INDEX}
  if (i >= P.n) { return; }
  let g = ld_gate(i);
  let d = ld_dy(i);
  let sig = 1.0 / (1.0 + exp(-g));
  ${dup ? 'st_dup(i, d * (g * sig));' : ''}
  ${dgate ? 'st_dgate(i, d * ld_up(i) * (sig * fma(g, 1.0 - sig, 1.0)));' : ''}
}`,
  };
}
const SWIGLU_BACKWARD = {
  both: swigluBackwardSpec(true, true),
  gate: swigluBackwardSpec(true, false),
  up: swigluBackwardSpec(false, true),
};

// ---- the table ----------------------------------------------------------------------------------------

export const normKernels = {
  rmsnormForward: (y, rstd, x, weight, eps) => {
    expectF32('rmsnorm', y, rstd, x, weight);
    const rows = rstd.size;
    const dim = weight.size;
    dispatch(RMSNORM_FORWARD, { x, weight, y, rstd }, { rows, dim, eps }, linearGroups(rows), {
      WG: rowThreads(dim),
    });
  },
  rmsnormBackward: (dx, dweight, dy, x, weight, rstd) => {
    expectF32('rmsnorm backward', dx, dweight, dy, x, weight, rstd);
    const rows = rstd.size;
    const dim = weight.size;
    if (dx)
      dispatch(RMSNORM_BACKWARD_DX, { dy, x, weight, rstd, dx }, { rows, dim }, linearGroups(rows), {
        WG: rowThreads(dim),
      });
    if (dweight) rmsnormDweight(dweight, dy, x, rstd, rows, dim);
  },
  ropeForward: (out, x, cos, sin, positions) => rope(out, x, cos, sin, positions, 1),
  ropeBackward: (dx, dy, cos, sin, positions) => rope(dx, dy, cos, sin, positions, -1),
  swigluForward: (out, gate, up) => {
    expectF32('swiglu', out, gate, up);
    dispatch(SWIGLU_FORWARD, { gate, up, out }, { n: out.size }, groups256(out.size));
  },
  swigluBackward: (dgate, dup, dy, gate, up) => {
    expectF32('swiglu backward', dgate, dup, dy, gate, up);
    const n = dy.size;
    if (dgate && dup) dispatch(SWIGLU_BACKWARD.both, { dy, gate, up, dgate, dup }, { n }, groups256(n));
    else if (dgate) dispatch(SWIGLU_BACKWARD.gate, { dy, gate, up, dgate }, { n }, groups256(n));
    else if (dup) dispatch(SWIGLU_BACKWARD.up, { dy, gate, up, dup }, { n }, groups256(n));
  },
} satisfies Kernels;
