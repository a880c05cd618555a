// WebGPU kernels of cross-entropy over the vocabulary and of the fused output head + loss
// (src/ops/spec/cross-entropy.ts), f32, as the CPU backend computes them: a row whose target is −100
// has no loss (lse 0, rowLoss 0, gradient 0); loss = Σ over kept rows of lse − logits[target], summed on
// the device; dlogits = gradLoss[0] · (softmax − onehot), gradLoss read where it lives.
//
// linearCrossEntropyForward never holds all [N, V] logits: the rows that have a target are listed on
// the device (a scan), then taken a chunk at a time: logits = h wᵀ through the small tiled GEMM below,
// each row's loss, and with dhUnit the unit-gradient softmax − onehot (over the logits) times w,
// scattered back to the rows. The host does not know how many rows are kept, so it dispatches chunks
// for all N rows and workgroups past the kept count return at once.
import { IGNORE_INDEX } from '../../ops/spec/cross-entropy.js';
import { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import { INDEX, groups256 } from './elementwise.js';
import { dispatch, linearGroups, type KernelSpec } from './kernel.js';

/** The most bytes of logits the fused head holds at a time. */
const CHUNK_BYTES = 64 * 1024 * 1024;

const ROW_MAIN = /* wgsl */ `
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = wid.x + wid.y * nwg.x;`;

// log Σ_c exp(logits[base + c]), c < V, by one workgroup: an online (max, sum) per thread over a
// strided share of the row, then a tree in workgroup memory. Starts from a finite "max" so that no −inf
// enters the arithmetic.
const ROW_LOGSUMEXP = /* wgsl */ `
const NEG = -3.0e38f;
var<workgroup> maxes: array<f32, 256>;
var<workgroup> sums: array<f32, 256>;
fn rowLogSumExp(base: u32, V: u32, li: u32) -> f32 {
  var m = NEG;
  var s = 0.0;
  for (var c = li; c < V; c += 256u) {
    let x = ld_logits(base + c);
    if (x > m) {
      s = s * exp(m - x) + 1.0;
      m = x;
    } else {
      s += exp(x - m);
    }
  }
  maxes[li] = m;
  sums[li] = s;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w) {
      let m1 = maxes[li];
      let m2 = maxes[li + w];
      let mm = max(m1, m2);
      sums[li] = sums[li] * exp(m1 - mm) + sums[li + w] * exp(m2 - mm);
      maxes[li] = mm;
    }
    workgroupBarrier();
  }
  return maxes[0] + log(sums[0]);
}`;

// One workgroup per row: lse and the row's loss.
const FORWARD_ROWS: KernelSpec = {
  name: 'crossEntropyRows',
  inputs: ['logits', 'targets'],
  outputs: ['lse', 'rowLoss'],
  params: ['rows:u32', 'V:u32'],
  source: /* wgsl */ `${ROW_LOGSUMEXP}
var<workgroup> targetShared: i32;
${ROW_MAIN}
  if (r >= P.rows) { return; }
  if (li == 0u) { targetShared = ld_targets(r); }
  let t = workgroupUniformLoad(&targetShared);
  if (t == ${IGNORE_INDEX}i) {
    if (li == 0u) {
      st_lse(r, 0.0);
      st_rowLoss(r, 0.0);
    }
    return;
  }
  let l = rowLogSumExp(r * P.V, P.V, li);
  if (li == 0u) {
    st_lse(r, l);
    st_rowLoss(r, l - ld_logits(r * P.V + u32(t)));
  }
}`,
};

// loss[0] = Σ rowLoss, by one workgroup (a fixed order: the same sum every run).
const SUM_LOSS: KernelSpec = {
  name: 'crossEntropySum',
  inputs: ['rowLoss'],
  outputs: ['loss'],
  params: ['rows:u32'],
  source: /* wgsl */ `
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  for (var i = li; i < P.rows; i += 256u) { s += ld_rowLoss(i); }
  part[li] = s;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (li < w) { part[li] += part[li + w]; }
    workgroupBarrier();
  }
  if (li == 0u) { st_loss(0u, part[0]); }
}`,
};

// One thread per element of dlogits (which may be logits itself).
const BACKWARD: KernelSpec = {
  name: 'crossEntropyBackward',
  inputs: ['logits', 'targets', 'lse', 'gradLoss'],
  outputs: ['dlogits'],
  params: ['n:u32', 'V:u32'],
  source: /* wgsl */ `${INDEX}
  if (i >= P.n) { return; }
  let r = i / P.V;
  let t = ld_targets(r);
  var d = 0.0;
  if (t != ${IGNORE_INDEX}i) {
    let g = ld_gradLoss(0u);
    d = g * exp(ld_logits(i) - ld_lse(r));
    if (u32(t) == i % P.V) { d -= g; }
  }
  st_dlogits(i, d);
}`,
};

// kept[0] = how many rows have a target, kept[1 …] = those rows in order (one workgroup, a prefix sum
// per block of 256 rows); ignored rows get rowLoss 0 here.
const KEPT_ROWS: KernelSpec = {
  name: 'linearCrossEntropyKeptRows',
  inputs: ['targets'],
  outputs: ['kept', 'rowLoss'],
  params: ['rows:u32'],
  source: /* wgsl */ `
var<workgroup> prefix: array<u32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  var base = 0u;
  for (var r0 = 0u; r0 < P.rows; r0 += 256u) {
    let r = r0 + li;
    var kept = 0u;
    if (r < P.rows) {
      if (ld_targets(r) != ${IGNORE_INDEX}i) { kept = 1u; } else { st_rowLoss(r, 0.0); }
    }
    prefix[li] = kept;
    workgroupBarrier();
    for (var w = 1u; w < 256u; w <<= 1u) {
      var below = 0u;
      if (li >= w) { below = prefix[li - w]; }
      workgroupBarrier();
      prefix[li] += below;
      workgroupBarrier();
    }
    if (kept == 1u) { st_kept(base + prefix[li], i32(r)); } // 1 + (inclusive prefix − 1)
    base += prefix[255];
    workgroupBarrier();
  }
  if (li == 0u) { st_kept(0u, i32(base)); }
}`,
};

// dhUnit rows of ignored targets are 0 (kept rows are written whole by the chunks).
const ZERO_IGNORED: KernelSpec = {
  name: 'linearCrossEntropyZeroIgnored',
  inputs: ['targets'],
  outputs: ['dh'],
  params: ['n:u32', 'D:u32'],
  source: /* wgsl */ `${INDEX}
  if (i >= P.n) { return; }
  if (ld_targets(i / P.D) == ${IGNORE_INDEX}i) { st_dh(i, 0.0); }
}`,
};

// c[M, N] = a[M, K] · b, b [N, K] (TRANS_B: c = a bᵀ) or [K, N]; M is at most P.M rows, as many as are
// kept from list index P.chunk0 on. GATHER_A: row m of a is row kept[1 + chunk0 + m]; SCATTER_C: row m
// of c is written to row kept[1 + chunk0 + m]. A 64 × 64 tile per workgroup, 4 × 4 per thread
// (rows ty + 16u, columns tx + 16v), K in steps of 16 through workgroup memory.
const GEMM: KernelSpec = {
  name: 'linearCrossEntropyGemm',
  inputs: ['a', 'b', 'kept'],
  outputs: ['c'],
  params: ['M:u32', 'N:u32', 'K:u32', 'chunk0:u32'],
  source: /* wgsl */ `
const TM = 64u;
const TN = 64u;
const TK = 16u;
const TP = 65u; // padded stride: the transposing stores do not hit one bank
var<workgroup> As: array<f32, TK * TP>;
var<workgroup> Bs: array<f32, TK * TP>;
var<workgroup> rowsShared: u32;
fn listRow(m: u32) -> u32 { return u32(ld_kept(1u + P.chunk0 + m)); }
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  if (li == 0u) { rowsShared = u32(clamp(ld_kept(0u) - i32(P.chunk0), 0i, i32(P.M))); }
  let rows = workgroupUniformLoad(&rowsShared);
  let m0 = wid.y * TM;
  let n0 = wid.x * TN;
  if (m0 >= rows) { return; }
  let tx = li % 16u;
  let ty = li / 16u;
  // The a rows this thread loads (rows ty + 16q of the tile, column tx of each K step).
  var aRow: array<u32, 4>;
  for (var q = 0u; q < 4u; q++) {
    let m = m0 + ty + 16u * q;
    aRow[q] = 0xffffffffu;
    if (m < rows) {
      if (GATHER_A) { aRow[q] = listRow(m) * P.K; } else { aRow[q] = m * P.K; }
    }
  }
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < P.K; k0 += TK) {
    for (var q = 0u; q < 4u; q++) {
      let m = ty + 16u * q;
      var x = 0.0;
      if (aRow[q] != 0xffffffffu && k0 + tx < P.K) { x = ld_a(aRow[q] + k0 + tx); }
      As[tx * TP + m] = x;
      if (TRANS_B) {
        let n = ty + 16u * q;
        var y = 0.0;
        if (n0 + n < P.N && k0 + tx < P.K) { y = ld_b((n0 + n) * P.K + k0 + tx); }
        Bs[tx * TP + n] = y;
      } else {
        let e = li + 256u * q;
        let k = e / TN;
        let n = e % TN;
        var y = 0.0;
        if (n0 + n < P.N && k0 + k < P.K) { y = ld_b((k0 + k) * P.N + n0 + n); }
        Bs[k * TP + n] = y;
      }
    }
    workgroupBarrier();
    // A runtime bound (the K tail): unrolled, lavapipe takes seconds to compile this loop.
    for (var kk = 0u; kk < min(TK, P.K - k0); kk++) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var u = 0u; u < 4u; u++) {
        av[u] = As[kk * TP + ty + 16u * u];
        bv[u] = Bs[kk * TP + tx + 16u * u];
      }
      for (var u = 0u; u < 4u; u++) {
        for (var v = 0u; v < 4u; v++) { acc[u * 4u + v] = fma(av[u], bv[v], acc[u * 4u + v]); }
      }
    }
    workgroupBarrier();
  }
  for (var u = 0u; u < 4u; u++) {
    let m = m0 + ty + 16u * u;
    if (m >= rows) { continue; }
    var row = m;
    if (SCATTER_C) { row = listRow(m); }
    for (var v = 0u; v < 4u; v++) {
      let n = n0 + tx + 16u * v;
      if (n < P.N) { st_c(row * P.N + n, acc[u * 4u + v]); }
    }
  }
}`,
};

// One workgroup per row j of a chunk (list index chunk0 + j): the loss of its row, and with GRAD the
// unit gradient softmax − onehot written over the row's logits.
const CHUNK_ROWS: KernelSpec = {
  name: 'linearCrossEntropyRows',
  inputs: ['targets', 'kept'],
  outputs: ['rowLoss', 'logits'],
  params: ['R:u32', 'V:u32', 'chunk0:u32'],
  source: /* wgsl */ `${ROW_LOGSUMEXP}
var<workgroup> rowShared: u32;
${ROW_MAIN}
  if (li == 0u) {
    rowShared = 0xffffffffu;
    if (r < P.R && i32(P.chunk0 + r) < ld_kept(0u)) { rowShared = u32(ld_kept(1u + P.chunk0 + r)); }
  }
  let row = workgroupUniformLoad(&rowShared);
  if (row == 0xffffffffu) { return; }
  let t = u32(ld_targets(row));
  let base = r * P.V;
  let xt = ld_logits(base + t); // read before the GRAD pass overwrites it
  let l = rowLogSumExp(base, P.V, li);
  if (li == 0u) { st_rowLoss(row, l - xt); }
  if (GRAD) {
    for (var c = li; c < P.V; c += 256u) {
      st_logits(base + c, exp(ld_logits(base + c) - l) - select(0.0, 1.0, c == t));
    }
  }
}`,
};

function expect(op: string, name: string, t: Tensor, ...dtypes: string[]): void {
  if (!dtypes.includes(t.dtype))
    throw new Error(
      `lorakit: the WebGPU ${op} kernel takes ${name} as ${dtypes.join(' or ')}, got ${t.dtype}.`,
    );
}

/** Rows of logits the fused head computes at a time: all N when they fit CHUNK_BYTES, else as many as
 *  fit, rounded down to whole 64-row GEMM tiles. */
function chunkRows(N: number, V: number): number {
  const fit = Math.max(1, Math.floor(CHUNK_BYTES / (4 * V)));
  if (N <= fit) return N;
  return fit >= 64 ? fit - (fit % 64) : fit;
}

export const crossEntropyKernels = {
  crossEntropyForward: (loss, lse, rowLoss, logits, targets) => {
    const [N, V] = logits.shape;
    for (const [name, t] of [
      ['logits', logits],
      ['loss', loss],
      ['lse', lse],
    ] as const)
      expect('crossEntropyForward', name, t, 'f32');
    const rows = rowLoss ?? Tensor.empty([Math.max(1, N)], 'f32', 'webgpu');
    try {
      if (N > 0)
        dispatch(FORWARD_ROWS, { logits, targets, lse, rowLoss: rows }, { rows: N, V }, linearGroups(N));
      dispatch(SUM_LOSS, { rowLoss: rows, loss }, { rows: N }, [1]);
    } finally {
      if (rows !== rowLoss) rows.dispose(); // reused only by work recorded later
    }
  },
  crossEntropyBackward: (dlogits, logits, targets, lse, gradLoss) => {
    const [N, V] = logits.shape;
    expect('crossEntropyBackward', 'logits', logits, 'f32');
    expect('crossEntropyBackward', 'dlogits', dlogits, 'f32');
    const n = N * V;
    if (n === 0) return;
    dispatch(BACKWARD, { logits, targets, lse, gradLoss, dlogits }, { n, V }, groups256(n));
  },
  linearCrossEntropyForward: (rowLoss, dhUnit, h, w, targets) => {
    const [N, D] = h.shape;
    const V = w.shape[0];
    expect('linearCrossEntropyForward', 'h', h, 'f32');
    expect('linearCrossEntropyForward', 'w', w, 'f32', 'bf16');
    if (N === 0) return;
    const R = chunkRows(N, V);
    const kept = Tensor.empty([N + 1], 'i32', 'webgpu');
    const logits = Tensor.empty([R * V], 'f32', 'webgpu');
    try {
      dispatch(KEPT_ROWS, { targets, kept, rowLoss }, { rows: N }, [1]);
      if (dhUnit) dispatch(ZERO_IGNORED, { targets, dh: dhUnit }, { n: N * D, D }, groups256(N * D));
      const tiles = (n: number): number => Math.ceil(n / 64);
      for (let chunk0 = 0; chunk0 < N; chunk0 += R) {
        dispatch(GEMM, { a: h, b: w, kept, c: logits }, { M: R, N: V, K: D, chunk0 }, [tiles(V), tiles(R)], {
          GATHER_A: true,
          SCATTER_C: false,
          TRANS_B: true,
        });
        dispatch(CHUNK_ROWS, { targets, kept, rowLoss, logits }, { R, V, chunk0 }, linearGroups(R), {
          GRAD: dhUnit !== null,
        });
        if (dhUnit)
          dispatch(
            GEMM,
            { a: logits, b: w, kept, c: dhUnit },
            { M: R, N: D, K: V, chunk0 },
            [tiles(D), tiles(R)],
            { GATHER_A: false, SCATTER_C: true, TRANS_B: false },
          );
      }
    } finally {
      kept.dispose(); // reused only by work recorded later
      logits.dispose();
    }
  },
} satisfies Kernels;
