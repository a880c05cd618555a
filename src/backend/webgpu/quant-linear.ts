// WebGPU kernels of the quantized linear op (src/ops/spec/quant-linear.ts): y = x·Wᵀ (+ bias) and
// dx (+)= g·W for a frozen W [out, in] stored as src/quant/weight.ts lays it out, never dequantized
// whole. One tiled GEMM (64×64 outputs a workgroup, 4×4 a thread, k in steps of 16 through shared
// memory) dequantizes W's elements as it loads them into its B tile, with the CPU's fp32 formulas
// (quant-weight.ts), so every weight it multiplies is the CPU's dequantized value bit for bit.
//
// Products and sums in fp32 (FMA), k ascending; the bias, or dx's old value when accumulating, added
// to the sum once. One pipeline per way of storing the absmax (their bindings differ); the direction,
// the code book, the bias and accumulation are uniform parameters, since each pipeline takes seconds to
// build on a software adapter.
import type { QuantizedWeight } from '../../quant/weight.js';
import { keep, Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import { dispatch, expectF32, type KernelSpec } from './kernel.js';
import {
  QUANT_FORMATS,
  SCALES,
  WEIGHT_PARAMS,
  weightArgs,
  weightSource,
  type Format,
} from './quant-weight.js';

const TILE = 64;
const MAX_GROUPS = 65535;

// C [M, N] (+)= A [M, K] · B [K, N] with B(k, n) = W[n, k] (P.forward: y = x·Wᵀ) or W[k, n] (dx = g·W).
// The inner loop runs to the tile's real depth (a bound the compiler cannot unroll, which keeps the
// pipeline quick to build); B's loads follow W's rows, along k or along n.
const GEMM = /* wgsl */ `
var<workgroup> As: array<f32, 1024>; // [16 k][64 rows of A]
var<workgroup> Bs: array<f32, 1024>; // [16 k][64 columns of C]
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  let m0 = wid.y * 64u;
  let n0 = wid.x * 64u;
  let forward = P.forward != 0u;
  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < P.K; k0 += 16u) {
    for (var j = 0u; j < 4u; j++) {
      let t = li + j * 256u;
      let am = t / 16u;
      let ak = t % 16u;
      var a = 0.0;
      if (m0 + am < P.M && k0 + ak < P.K) { a = ld_a((m0 + am) * P.K + k0 + ak); }
      As[ak * 64u + am] = a;
      let bn = select(t % 64u, t / 16u, forward);
      let bk = select(t / 64u, t % 16u, forward);
      var b = 0.0;
      if (n0 + bn < P.N && k0 + bk < P.K) {
        b = weight(select(k0 + bk, n0 + bn, forward), select(n0 + bn, k0 + bk, forward));
      }
      Bs[bk * 64u + bn] = b;
    }
    workgroupBarrier();
    let depth = min(16u, P.K - k0);
    for (var k = 0u; k < depth; k++) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        av[i] = As[k * 64u + lid.y + 16u * i];
        bv[i] = Bs[k * 64u + lid.x + 16u * i];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(av[i], bv[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let r = m0 + lid.y + 16u * i;
    if (r >= P.M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + lid.x + 16u * j;
      if (n >= P.N) { continue; }
      var v = acc[i][j];
      if (P.hasBias != 0u) { v += ld_bias(n); }
      if (P.accumulate != 0u) { v += ld_c(r * P.N + n); }
      st_c(r * P.N + n, v);
    }
  }
}`;

const SPECS = Object.fromEntries(
  QUANT_FORMATS.map((format) => [
    format,
    {
      name: `quantLinear_${format}`,
      inputs: ['a', 'data', ...SCALES[format], 'bias'],
      outputs: ['c'],
      params: ['M:u32', 'N:u32', 'K:u32', ...WEIGHT_PARAMS, 'forward:u32', 'hasBias:u32', 'accumulate:u32'],
      source: `${weightSource(format)}\n${GEMM}`,
    },
  ]),
) as unknown as Record<Format, KernelSpec>;

// Bound as the bias when there is none (never read), so that one pipeline serves both cases.
let noBias: Tensor | null = null;
function noBiasTensor(): Tensor {
  if (!noBias || noBias.disposed) noBias = keep(Tensor.zeros([1], 'f32', 'webgpu'));
  return noBias;
}

// c [M, N] (+)= a [M, K] · (Wᵀ or W) (+ bias), over a grid of 64×64 output tiles.
function gemm(
  op: string,
  c: Tensor,
  a: Tensor,
  w: QuantizedWeight,
  bias: Tensor | null,
  dims: { M: number; N: number; K: number },
  forward: boolean,
  accumulate: boolean,
): void {
  const { M, N } = dims;
  if (M === 0 || N === 0) return;
  const rowTiles = Math.ceil(M / TILE);
  const columnTiles = Math.ceil(N / TILE);
  if (rowTiles > MAX_GROUPS || columnTiles > MAX_GROUPS)
    throw new Error(
      `lorakit: the WebGPU ${op} kernel takes at most ${MAX_GROUPS * TILE} rows and output features, got ${M} and ${N}.`,
    );
  const { format, tensors, params } = weightArgs(w);
  dispatch(
    SPECS[format],
    { a, c, ...tensors, bias: bias ?? noBiasTensor() },
    {
      ...dims,
      ...params,
      forward: forward ? 1 : 0,
      hasBias: bias ? 1 : 0,
      accumulate: accumulate ? 1 : 0,
    },
    [columnTiles, rowTiles],
  );
}
export const quantLinearKernels = {
  quantLinear: (y, x, w, bias, m) => {
    expectF32('quantLinear', y, x, bias);
    const [out, inF] = w.shape;
    gemm('quantLinear', y, x, w, bias, { M: m, N: out, K: inF }, true, false);
  },
  quantLinearBackward: (dx, g, w, m, accumulate) => {
    expectF32('quantLinearBackward', dx, g);
    const [out, inF] = w.shape;
    gemm('quantLinearBackward', dx, g, w, null, { M: m, N: inF, K: out }, false, accumulate);
  },
} satisfies Kernels;
