// WebGPU DoRA weight norm (src/ops/spec/dora.ts): out[r] = ‖w[r] + s·delta[r]‖, or its reciprocal,
// one workgroup per row, each thread the squares of its strided columns, then a tree in shared memory.
// A dense w is f32 or bf16; a quantized one is read through quant-weight.ts's weight(r, c), the CPU's
// dequantized values, never dequantized whole. Terms and sums in f32.
import { QuantizedWeight } from '../../quant/weight.js';
import type { Kernels } from '../kernels.js';
import { dispatch, expectF32, type KernelSpec, linearGroups } from './kernel.js';
import {
  QUANT_FORMATS,
  SCALES,
  WEIGHT_PARAMS,
  weightArgs,
  weightSource,
  type Format,
} from './quant-weight.js';

/** Threads of a row's workgroup: rows narrower than a few hundred leave most of 256 idle. */
const rowThreads = (cols: number): number => (cols <= 512 ? 64 : 256);

// weight(r, c) is dense w or a quantized weight's reader; the rest is the row reduction.
const ROW_NORM = /* wgsl */ `
var<workgroup> part: array<f32, WG>;
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= P.rows) { return; }
  var acc = 0.0;
  for (var c = li; c < P.cols; c += WG) {
    let v = weight(r, c) + P.s * ld_delta(r * P.cols + c);
    acc += v * v;
  }
  part[li] = acc;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (li < k) { part[li] += part[li + k]; }
    workgroupBarrier();
  }
  if (li == 0u) {
    let n = sqrt(part[0]);
    st_out(r, select(n, 1.0 / n, P.inverse != 0u));
  }
}`;

const PARAMS = ['rows:u32', 's:f32', 'inverse:u32'];

const DENSE: KernelSpec = {
  name: 'weightNorm_dense',
  inputs: ['w', 'delta'],
  outputs: ['out'],
  params: [...PARAMS, 'cols:u32'],
  source: `fn weight(r: u32, c: u32) -> f32 { return ld_w(r * P.cols + c); }\n${ROW_NORM}`,
};

const QUANTIZED = Object.fromEntries(
  QUANT_FORMATS.map((format) => [
    format,
    {
      name: `weightNorm_${format}`,
      inputs: ['data', ...SCALES[format], 'delta'],
      outputs: ['out'],
      params: [...PARAMS, ...WEIGHT_PARAMS],
      source: `${weightSource(format)}\n${ROW_NORM}`,
    },
  ]),
) as unknown as Record<Format, KernelSpec>;

export const doraKernels = {
  // out [rows] f32 <- w [rows, cols] (f32, bf16 or quantized), delta [rows, cols] f32
  weightNorm: (out, w, delta, s, inverse) => {
    expectF32('weightNorm', out, delta);
    const [rows, cols] = w.shape;
    const common = { rows, s, inverse: inverse ? 1 : 0 };
    const constants = { WG: rowThreads(cols) };
    if (w instanceof QuantizedWeight) {
      const { format, tensors, params } = weightArgs(w);
      dispatch(
        QUANTIZED[format],
        { ...tensors, delta, out },
        { ...common, ...params },
        linearGroups(rows),
        constants,
      );
      return;
    }
    if (w.dtype !== 'f32' && w.dtype !== 'bf16')
      throw new Error(`lorakit: the WebGPU weightNorm kernel reads f32 or bf16 weights, got ${w.dtype}.`);
    dispatch(DENSE, { w, delta, out }, { ...common, cols }, linearGroups(rows), constants);
  },
} satisfies Kernels;
