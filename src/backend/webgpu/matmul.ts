// The WebGPU GEMM (src/ops/spec/matmul.ts), as the CPU backend computes it (native/cpu/gemm.cc):
//
//   C[i] = alpha·op(A[i])·op(B[i]) + beta·C[i] (+ bias [n] on every row),  i < batch
//
// row-major: A[i] [m, k] ([k, m] with transA), B[i] [k, n] ([n, k] with transB), C[i] [m, n]; item i
// of X starts i·strideX elements in (0 broadcasts X). A and B are f32 or bf16 (frozen weights, decoded
// by ld_), C and bias f32; accumulation in f32. beta = 0 never reads C (it may hold NaN garbage);
// k = 0 or alpha = 0 is C = beta·C + bias without reading A or B.
//
// One workgroup of 256 threads computes a BM × BN tile of C: per step along k it stages a BM × BK
// block of op(A) and a BK × BN block of op(B) in workgroup memory, k-major, and each thread
// accumulates a 4 × 4 block of outputs spread 16 apart (rows ty + 16·i, columns tx + 16·j), so that
// the 16 threads of a row read consecutive words. The transposes are resolved in the tile loads, each
// mapping threads along the operand's contiguous dimension; out-of-range elements load as 0 and edge
// tiles store only their valid part. transA, transB and beta ≠ 0 are specialization constants; the
// bias is a separate kernel, since an unbound tensor has no accessor to compile against.
import type { Tensor } from '../../tensor/tensor.js';
import type { GemmAttrs } from '../../ops/spec/matmul.js';
import type { Kernels } from '../kernels.js';
import { dispatch, type KernelSpec } from './kernel.js';

const BM = 64;
const BN = 64;
const BK = 16;
const THREADS = 256;
/** Threads along a tile's columns (and rows): each owns 4 × 4 outputs 16 apart. */
const TX = 16;
// Row pitch of the staged blocks: one word of padding spreads the k-strided stores of the
// non-transposed loads over the memory banks.
const SA = BM + 1;
const SB = BN + 1;
const MAX_GROUPS = 65535;

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

// Stages one operand's block, `rows` (m or n) by BK (k), k-major with pitch `pitch` in `tile`. Where
// `flag` holds, the operand's k is its contiguous dimension (A as stored, a transposed B) and threads
// go along k; otherwise along rows. atRowMajor / atTransposed: the element index of (r, k) in the item
// for the two layouts.
function stage(
  tile: string,
  ld: string,
  rows: number,
  pitch: number,
  flag: string,
  atRowMajor: string,
  atTransposed: string,
  size: string,
  base: string,
  row0: string,
): string {
  return `    for (var p = 0u; p < ${(rows * BK) / THREADS}u; p++) {
      let kk = select(li / ${rows}u + p * ${THREADS / rows}u, li % ${BK}u, ${flag});
      let rr = select(li % ${rows}u, li / ${BK}u + p * ${THREADS / BK}u, ${flag});
      let r = ${row0} + rr;
      let k = k0 + kk;
      var v = 0.0;
      if (r < ${size} && k < P.k) { v = ${ld}(${base} + select(${atTransposed}, ${atRowMajor}, ${flag})); }
      ${tile}[kk * ${pitch}u + rr] = v;
    }`;
}

// c(row, col) = alpha·sum + bias[col] + beta·c(row, col), c read only when beta ≠ 0 (as the CPU).
const epilogue = (sum: string, bias: boolean): string => `{
        var v = P.alpha * ${sum};
        ${bias ? 'v += ld_bias(col);' : ''}
        let at = cBase + row * P.n + col;
        if (BETA) { v += P.beta * ld_c(at); }
        st_c(at, v);
      }`;

// The outputs in row ty + 16·i of the tile, columns tx + 16·j (acc's lane j).
const store = (acc: string, i: number, bias: boolean): string => `  {
    let row = m0 + ty + ${i * TX}u;
    for (var j = 0u; j < 4u && row < P.m; j++) {
      let col = n0 + tx + j * ${TX}u;
      if (col >= P.n) { break; }
      ${epilogue(`${acc}[j]`, bias)}
    }
  }`;

function gemmSource(bias: boolean): string {
  const read4 = (tile: string, pitch: number, lane: string): string =>
    `vec4f(${range(4)
      .map((i) => `${tile}[kk * ${pitch}u + ${lane} + ${i * TX}u]`)
      .join(', ')})`;
  return /* wgsl */ `
var<workgroup> As: array<f32, ${BK * SA}>;
var<workgroup> Bs: array<f32, ${BK * SB}>;

@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let item = P.batch0 + wid.z;
  let m0 = (P.tileM0 + wid.y) * ${BM}u;
  let n0 = (P.tileN0 + wid.x) * ${BN}u;
  let aBase = item * P.strideA;
  let bBase = item * P.strideB;
  let cBase = item * P.strideC;
  let tx = li % ${TX}u;
  let ty = li / ${TX}u;
  // Four named accumulators rather than an array: some shader compilers keep indexed arrays in memory.
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  for (var k0 = 0u; k0 < P.k; k0 += ${BK}u) {
    // op(A)(r, k): A[r, k] as stored, or A[k, r] with transA
${stage('As', 'ld_a', BM, SA, '!TRANS_A', 'r * P.k + k', 'k * P.m + r', 'P.m', 'aBase', 'm0')}
    // op(B)ᵀ(r, k) = op(B)(k, r): B[r, k] as stored with transB, else B[k, r]
${stage('Bs', 'ld_b', BN, SB, 'TRANS_B', 'r * P.k + k', 'k * P.n + r', 'P.n', 'bBase', 'n0')}
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
      let a = ${read4('As', SA, 'ty')};
      let b = ${read4('Bs', SB, 'tx')};
      acc0 = fma(vec4f(a.x), b, acc0);
      acc1 = fma(vec4f(a.y), b, acc1);
      acc2 = fma(vec4f(a.z), b, acc2);
      acc3 = fma(vec4f(a.w), b, acc3);
    }
    workgroupBarrier();
  }
${range(4)
  .map((i) => store(`acc${i}`, i, bias))
  .join('\n')}
}`;
}

const params = [
  'm:u32',
  'n:u32',
  'k:u32',
  'alpha:f32',
  'beta:f32',
  'strideA:u32',
  'strideB:u32',
  'strideC:u32',
  'batch0:u32',
  'tileM0:u32',
  'tileN0:u32',
];

const GEMM: KernelSpec = {
  name: 'gemm',
  inputs: ['a', 'b'],
  outputs: ['c'],
  params,
  source: gemmSource(false),
};

const GEMM_BIAS: KernelSpec = {
  name: 'gemmBias',
  inputs: ['a', 'b', 'bias'],
  outputs: ['c'],
  params,
  source: gemmSource(true),
};

/** Most rows of C the skinny kernel takes (one accumulator lane each). */
const SKINNY_ROWS = 4;

// C with at most 4 rows (decode's x·Wᵀ, a GEMV): the tiled kernel would leave most of each tile
// idle, so here each workgroup computes COLS columns for all rows at once, its threads split in S
// slices along k per column and the slices summed in a tree. Threads go along B's contiguous
// dimension: along k when transB (COLS = 8, S = 32), else along columns (COLS = 32, S = 8). The
// rows of op(A) are few and read by every column, so they come from the cache; each lane of acc is
// one row (rows past m stay 0).
function skinnySource(bias: boolean): string {
  // Lane r of the A column at k: op(A)(r, k), behind a branch on the uniform m so absent rows are not read.
  const aLane = (r: number): string => {
    const load = `a.${'xyzw'[r]} = ld_a(aBase + select(${r}u * P.k + k, k * P.m + ${r}u, TRANS_A));`;
    return r === 0 ? `      ${load}` : `      if (P.m > ${r}u) { ${load} }`;
  };
  return /* wgsl */ `
var<workgroup> part: array<vec4f, ${THREADS}>;

@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let item = P.batch0 + wid.z;
  let aBase = item * P.strideA;
  let bBase = item * P.strideB;
  let cBase = item * P.strideC;
  let c = select(li % COLS, li / S, TRANS_B);
  let s = select(li / COLS, li % S, TRANS_B);
  let col = (P.tileN0 + wid.x) * COLS + c;
  var acc = vec4f(0.0);
  if (col < P.n) {
    for (var k = s; k < P.k; k += S) {
      let b = ld_b(bBase + select(k * P.n + col, col * P.k + k, TRANS_B));
      var a = vec4f(0.0);
${range(SKINNY_ROWS).map(aLane).join('\n')}
      acc = fma(a, vec4f(b), acc);
    }
  }
  part[s * COLS + c] = acc;
  workgroupBarrier();
  for (var w = S / 2u; w > 0u; w >>= 1u) {
    if (s < w) { part[s * COLS + c] += part[(s + w) * COLS + c]; }
    workgroupBarrier();
  }
  if (s == 0u && col < P.n) {
    let sums = part[c];
    for (var row = 0u; row < P.m; row++) {
      ${epilogue('sums[row]', bias)}
    }
  }
}`;
}

const SKINNY: KernelSpec = {
  name: 'gemmSkinny',
  inputs: ['a', 'b'],
  outputs: ['c'],
  params,
  source: skinnySource(false),
};

const SKINNY_BIAS: KernelSpec = {
  name: 'gemmSkinnyBias',
  inputs: ['a', 'b', 'bias'],
  outputs: ['c'],
  params,
  source: skinnySource(true),
};

function check(c: Tensor, a: Tensor, b: Tensor, bias: Tensor | null): void {
  if (c.dtype !== 'f32')
    throw new Error(`lorakit: the WebGPU gemm kernel writes f32 outputs; c is ${c.dtype}.`);
  for (const [name, t] of [
    ['a', a],
    ['b', b],
  ] as const)
    if (t.dtype !== 'f32' && t.dtype !== 'bf16')
      throw new Error(`lorakit: the WebGPU gemm kernel reads f32 or bf16 operands; ${name} is ${t.dtype}.`);
  if (bias && bias.dtype !== 'f32')
    throw new Error(`lorakit: the WebGPU gemm kernel takes an f32 bias; bias is ${bias.dtype}.`);
}

function gemm(c: Tensor, a: Tensor, b: Tensor, bias: Tensor | null, g: GemmAttrs): void {
  check(c, a, b, bias);
  let { batch, m } = g;
  const { n, transA, transB, alpha, beta, strideA, strideB, strideC } = g;
  if (batch <= 0 || m === 0 || n === 0) return;
  // alpha = 0 is C = beta·C + bias, as on the CPU: A and B are not read (an Inf there adds no NaN).
  const k = alpha === 0 ? 0 : g.k;
  // A shared B with row-major A and C: the batch is just more rows of one GEMM (fewer edge tiles).
  if (batch > 1 && strideB === 0 && !transA && strideA === m * g.k && strideC === m * n) {
    m *= batch;
    batch = 1;
  }
  const tensors: Record<string, Tensor> = bias ? { a, b, bias, c } : { a, b, c };
  const shape = { m, n, k, alpha, beta, strideA, strideB, strideC };
  const flags = { TRANS_A: transA, TRANS_B: transB, BETA: beta !== 0 };
  if (m <= SKINNY_ROWS) {
    const cols = transB ? THREADS / 32 : 32;
    const groups = Math.ceil(n / cols);
    for (let batch0 = 0; batch0 < batch; batch0 += MAX_GROUPS)
      for (let tileN0 = 0; tileN0 < groups; tileN0 += MAX_GROUPS)
        dispatch(
          bias ? SKINNY_BIAS : SKINNY,
          tensors,
          { ...shape, batch0, tileM0: 0, tileN0 },
          [Math.min(MAX_GROUPS, groups - tileN0), 1, Math.min(MAX_GROUPS, batch - batch0)],
          { ...flags, COLS: cols, S: THREADS / cols },
        );
    return;
  }
  const tilesM = Math.ceil(m / BM);
  const tilesN = Math.ceil(n / BN);
  // Grids past 65535 workgroups in a dimension go in several dispatches.
  for (let batch0 = 0; batch0 < batch; batch0 += MAX_GROUPS)
    for (let tileM0 = 0; tileM0 < tilesM; tileM0 += MAX_GROUPS)
      for (let tileN0 = 0; tileN0 < tilesN; tileN0 += MAX_GROUPS)
        dispatch(
          bias ? GEMM_BIAS : GEMM,
          tensors,
          { ...shape, batch0, tileM0, tileN0 },
          [
            Math.min(MAX_GROUPS, tilesN - tileN0),
            Math.min(MAX_GROUPS, tilesM - tileM0),
            Math.min(MAX_GROUPS, batch - batch0),
          ],
          flags,
        );
}

export const matmulKernels = { gemm } satisfies Kernels;
