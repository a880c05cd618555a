// WebGPU kernels of the elementwise ops (src/ops/spec/elementwise.ts): f32 math, one thread per
// element (per output word for bf16 outputs), as the CPU backend computes them.
import type { Kernels } from '../kernels.js';
import { dispatch, expectF32, type KernelSpec, linearGroups } from './kernel.js';

/** The element index of this thread in a 1-D grid of 256-thread workgroups (linearGroups). */
export const INDEX = /* wgsl */ `
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + li;`;

/** Workgroups for n threads of a 256-wide 1-D kernel (INDEX). */
export const groups256 = (n: number): [number, number] => linearGroups(Math.ceil(n / 256));

const binary = (name: string, expr: string): KernelSpec => ({
  name,
  inputs: ['a', 'b'],
  outputs: ['out'],
  params: ['n:u32', 'nb:u32'],
  source: `${INDEX}
  if (i >= P.n) { return; }
  let x = ld_a(i);
  let y = ld_b(i % P.nb);
  st_out(i, ${expr});
}`,
});

const ADD = binary('add', 'x + y');
const MUL = binary('mul', 'x * y');

const AXPY: KernelSpec = {
  name: 'axpy',
  inputs: ['x'],
  outputs: ['y'],
  params: ['n:u32', 'alpha:f32'],
  source: `${INDEX}
  if (i >= P.n) { return; }
  st_y(i, fma(P.alpha, ld_x(i), ld_y(i)));
}`,
};

const SCALE: KernelSpec = {
  name: 'scale',
  inputs: ['x'],
  outputs: ['out'],
  params: ['n:u32', 'alpha:f32'],
  source: `${INDEX}
  if (i >= P.n) { return; }
  st_out(i, P.alpha * ld_x(i));
}`,
};

// One workgroup per row: a strided partial sum per thread, then a tree in shared memory.
const SUM_ROWS: KernelSpec = {
  name: 'sumRows',
  inputs: ['x'],
  outputs: ['out'],
  params: ['rows:u32', 'cols:u32'],
  source: `
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= P.rows) { return; }
  var s = 0.0;
  for (var c = li; c < P.cols; c += 256u) { s += ld_x(r * P.cols + c); }
  part[li] = s;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w) { part[li] += part[li + w]; }
    workgroupBarrier();
  }
  if (li == 0u) { st_out(r, part[0]); }
}`,
};

// One thread per column, rows in order (the CPU's GEMM with a ones vector sums in row order too).
const SUM_COLUMNS: KernelSpec = {
  name: 'sumColumns',
  inputs: ['x'],
  outputs: ['out'],
  params: ['rows:u32', 'cols:u32'],
  source: `${INDEX}
  if (i >= P.cols) { return; }
  var s = 0.0;
  for (var r = 0u; r < P.rows; r++) { s += ld_x(r * P.cols + i); }
  st_out(i, s);
}`,
};

const CAST_TO_F32: KernelSpec = {
  name: 'castToF32',
  inputs: ['x'],
  outputs: ['out'],
  params: ['n:u32'],
  source: `${INDEX}
  if (i >= P.n) { return; }
  st_out(i, ld_x(i));
}`,
};

// f32 -> bf16, round to nearest even (NaN stays NaN), one thread per output word: element e of the
// tensor is half (P.out_off + e) & 1 of word (P.out_off + e) >> 1.
const CAST_TO_BF16: KernelSpec = {
  name: 'castToBf16',
  inputs: ['x'],
  outputs: ['out'],
  params: ['n:u32'],
  source: `
fn bf16Bits(f: f32) -> u32 {
  let u = bitcast<u32>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) { return (u >> 16u) | 0x40u; }
  return (u + 0x7fffu + ((u >> 16u) & 1u)) >> 16u;
}
${INDEX}
  let w = (P.out_off >> 1u) + i;
  let first = w * 2u;
  if (first >= P.out_off + P.n) { return; }
  var v = ldw_out(w);
  for (var h = 0u; h < 2u; h++) {
    let j = first + h;
    if (j >= P.out_off && j < P.out_off + P.n) {
      v = (v & ~(0xffffu << (h * 16u))) | (bf16Bits(ld_x(j - P.out_off)) << (h * 16u));
    }
  }
  stw_out(w, v);
}`,
};

// out = scalar[0] · x, the scalar read on the device (the gradient of a sum, a loss's scale).
const SCALE_BY_SCALAR: KernelSpec = {
  name: 'scaleByScalar',
  inputs: ['x', 'scalar'],
  outputs: ['out'],
  params: ['n:u32'],
  source: `${INDEX}
  if (i >= P.n) { return; }
  st_out(i, ld_scalar(0u) * ld_x(i));
}`,
};

const FILL: KernelSpec = {
  name: 'fill',
  inputs: [],
  outputs: ['out'],
  params: ['n:u32', 'value:f32'],
  source: `${INDEX}
  if (i >= P.n) { return; }
  st_out(i, P.value);
}`,
};

export const elementwiseKernels = {
  add: (out, a, b) => dispatch(ADD, { a, b, out }, { n: a.size, nb: b.size }, groups256(a.size)),
  mul: (out, a, b) => dispatch(MUL, { a, b, out }, { n: a.size, nb: b.size }, groups256(a.size)),
  axpy: (y, x, alpha) => {
    expectF32('axpy', y);
    dispatch(AXPY, { x, y }, { n: y.size, alpha }, groups256(y.size));
  },
  scale: (out, x, alpha) => dispatch(SCALE, { x, out }, { n: x.size, alpha }, groups256(x.size)),
  sumRows: (out, x, rows, cols) => {
    expectF32('sumRows', out);
    dispatch(SUM_ROWS, { x, out }, { rows, cols }, linearGroups(rows));
  },
  cast: (out, x) => {
    if (out.dtype === 'f32' && (x.dtype === 'f32' || x.dtype === 'bf16'))
      dispatch(CAST_TO_F32, { x, out }, { n: x.size }, groups256(x.size));
    else if (out.dtype === 'bf16' && x.dtype === 'f32')
      dispatch(CAST_TO_BF16, { x, out }, { n: x.size }, groups256(Math.ceil(x.size / 2) + 1));
    else
      throw new Error(
        `lorakit: the WebGPU backend casts f32 and bf16 to f32, and f32 to bf16, not ${x.dtype} to ${out.dtype}.`,
      );
  },
  fill: (out, value) => {
    expectF32('fill', out);
    dispatch(FILL, { out }, { n: out.size, value }, groups256(out.size));
  },
  scaleByScalar: (out, x, scalar) =>
    dispatch(SCALE_BY_SCALAR, { x, scalar, out }, { n: x.size }, groups256(x.size)),
  sumColumns: (out, x, rows, cols) => dispatch(SUM_COLUMNS, { x, out }, { rows, cols }, groups256(cols)),
} satisfies Kernels;
