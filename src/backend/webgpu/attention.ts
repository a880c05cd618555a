// WebGPU kernels of causal attention (src/ops/spec/attention.ts), f32, flash-attention style: a
// workgroup takes a 16 × 16 tile of (query row, key) pairs at a time, scores and probabilities live only
// in workgroup memory, and no T × T buffer exists.
//
// Semantics (as native/cpu/attention.cc): q, out, dout [B, Tq, Hq, D]; k, v [B, Tk, Hkv, D]; segments
// [B, Tk] i32; lse [B, Hq, Tq]. Query row i sits at key position p = Tk − Tq + i and attends to key j
// iff j ≤ p and segments[b, j] == segments[b, p] ≠ 0. Query head h reads kv head h / (Hq / Hkv). A
// padded query row (segment 0) outputs zeros, has lse = −inf and gets zero gradient.
//
// Forward: one workgroup per (16 query rows, b, h), an online softmax over the key tiles those rows can
// reach. Backward (FlashAttention-2, deterministic, no atomics): a small pass stores each row's lse and
// Δ = rowsum(dO ∘ O); then dq per query tile over its key tiles, and dk, dv per key tile over the query
// tiles (and the query heads of its kv group) that can see it. Thread (r, c) of a tile owns score
// (r, c) and, of a row's D-vector accumulator, columns c, c + 16, …; D is loaded in chunks of DC
// columns, so any D ≤ 256 fits in 16 KiB of workgroup memory (the WebGPU default limit).
import { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import { attentionSizes } from '../sizes.js';
import { INDEX, groups256 } from './elementwise.js';
import { dispatch, linearGroups, type KernelSpec } from './kernel.js';

/** Query rows and keys per tile (the 256 threads of a workgroup are one 16 × 16 tile). */
const TILE = 16;
const MAX_HEAD_DIM = 256;

// Shared by every attention kernel: tile sizes, the "masked" score (finite, so that no −inf enters the
// arithmetic: WGSL implementations need not honour infinities), and element indices of q/out/dout
// rows and k/v rows.
const COMMON = /* wgsl */ `
const BQ = 16u;
const BK = 16u;
const DCP = DC + 1u; // padded row stride where threads read along rows: no bank conflicts
const CPT = DC / 16u; // accumulator columns per thread per chunk
const NEG = -1e30f;
fn qRow(b: u32, i: u32, h: u32) -> u32 { return ((b * P.Tq + i) * P.Hq + h) * P.D; }
fn kRow(b: u32, j: u32, hk: u32) -> u32 { return ((b * P.Tk + j) * P.Hkv + hk) * P.D; }
fn segAt(b: u32, j: u32) -> i32 { return ld_segments(b * P.Tk + j); }`;

/**
 * WGSL filling tile `sh` ([rows × DC], row stride `stride`) with columns [d0, d0 + DC) of rows
 * `first + rr` of tensor `x` (zero past `limit` rows or past D); `row` maps a row to its element index.
 */
function loadTile(sh: string, stride: string, x: string, first: string, limit: string, row: string): string {
  return `
    for (var e = li; e < 16u * DC; e += 256u) {
      let rr = e / DC;
      let dd = e % DC;
      var val = 0.0;
      if (${first} + rr < ${limit} && d0 + dd < P.D) { val = ld_${x}(${row.replaceAll('ROW', `${first} + rr`)} + d0 + dd); }
      ${sh}[rr * ${stride} + dd] = val;
    }`;
}

// Workgroup (query tile, b·Hq + h): the tile's segment ids, then the lowest key any of its rows sees
// (a parallel scan of the keys before its last row; each thread stops at its first match).
const QUERY_TILE_SETUP = /* wgsl */ `
  let bh = wid.y + wid.z * nwg.y;
  if (bh >= P.Bh) { return; }
  let b = bh / P.Hq;
  let h = bh % P.Hq;
  let hk = h / (P.Hq / P.Hkv);
  let i0 = wid.x * BQ;
  let off = P.Tk - P.Tq;
  let r = li / 16u;
  let c = li % 16u;
  if (li < BQ) {
    var s = 0i;
    if (i0 + li < P.Tq) { s = segAt(b, off + i0 + li); }
    segQ[li] = s;
  }
  if (li == 0u) { atomicStore(&loAtomic, P.Tk); }
  workgroupBarrier();
  let hi = off + min(i0 + BQ, P.Tq); // keys past the tile's last row are in its future
  for (var j = li; j < hi; j += 256u) {
    let s = segAt(b, j);
    var found = false;
    if (s != 0i) {
      for (var x = 0u; x < BQ; x++) { found = found || segQ[x] == s; }
    }
    if (found) { atomicMin(&loAtomic, j); break; }
  }
  workgroupBarrier();
  if (li == 0u) { loShared = atomicLoad(&loAtomic); }
  let lo = workgroupUniformLoad(&loShared);
  let i = i0 + r;
  let pos = off + i;
  let sr = segQ[r];`;

const QUERY_TILE_SHARED = /* wgsl */ `
var<workgroup> segQ: array<i32, BQ>;
var<workgroup> segK: array<i32, BK>;
var<workgroup> loAtomic: atomic<u32>;
var<workgroup> loShared: u32;`;

const MAIN = /* wgsl */ `
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {`;

const FORWARD: KernelSpec = {
  name: 'attentionForward',
  inputs: ['q', 'k', 'v', 'segments'],
  outputs: ['out', 'lse'],
  params: [
    'Bh:u32',
    'Tq:u32',
    'Tk:u32',
    'Hq:u32',
    'Hkv:u32',
    'D:u32',
    'chunks:u32',
    'scale:f32',
    'negInf:f32',
  ],
  source: /* wgsl */ `${COMMON}
var<workgroup> qs: array<f32, BQ * DC>;
var<workgroup> kvs: array<f32, BK * DCP>;
var<workgroup> ps: array<f32, BQ * BK>;
${QUERY_TILE_SHARED}
${MAIN}
${QUERY_TILE_SETUP}
  var m = NEG;
  var l = 0.0;
  var acc: array<f32, NJ>;
  if (NCH == 1u) {
    let d0 = 0u;
    ${loadTile('qs', 'DC', 'q', 'i0', 'P.Tq', 'qRow(b, ROW, h)')}
  }
  for (var j0 = (lo / BK) * BK; j0 < hi; j0 += BK) {
    if (li < BK) {
      var s = 0i;
      if (j0 + li < P.Tk) { s = segAt(b, j0 + li); }
      segK[li] = s;
    }
    // s = q_r · k_c
    var s = 0.0;
    for (var ch = 0u; ch < P.chunks; ch++) {
      let d0 = ch * DC;
      workgroupBarrier();
      if (NCH > 1u) {
        ${loadTile('qs', 'DC', 'q', 'i0', 'P.Tq', 'qRow(b, ROW, h)')}
      }
      ${loadTile('kvs', 'DCP', 'k', 'j0', 'P.Tk', 'kRow(b, ROW, hk)')}
      workgroupBarrier();
      for (var dd = 0u; dd < min(DC, P.D - d0); dd++) { s = fma(qs[r * DC + dd], kvs[c * DCP + dd], s); }
    }
    let j = j0 + c;
    let valid = sr != 0i && j <= pos && segK[c] == sr;
    let sv = select(NEG, s * P.scale, valid);
    ps[r * BK + c] = sv;
    workgroupBarrier();
    // The online softmax: the row's new max, this tile's probabilities against it, and the rescale of
    // what the earlier tiles summed.
    var mt = m;
    for (var x = 0u; x < BK; x++) { mt = max(mt, ps[r * BK + x]); }
    workgroupBarrier();
    ps[r * BK + c] = select(0.0, exp(sv - mt), valid);
    workgroupBarrier();
    var rowSum = 0.0;
    for (var x = 0u; x < BK; x++) { rowSum += ps[r * BK + x]; }
    let alpha = exp(m - mt);
    l = l * alpha + rowSum;
    m = mt;
    for (var u = 0u; u < NJ; u++) { acc[u] *= alpha; }
    // acc += P V
    for (var ch = 0u; ch < P.chunks; ch++) {
      let d0 = ch * DC;
      workgroupBarrier();
      ${loadTile('kvs', 'DCP', 'v', 'j0', 'P.Tk', 'kRow(b, ROW, hk)')}
      workgroupBarrier();
      for (var u = 0u; u < CPT; u++) {
        if (d0 + 16u * u >= P.D) { break; } // a column group wholly past D: nothing to add
        var a = acc[ch * CPT + u];
        for (var x = 0u; x < BK; x++) { a = fma(ps[r * BK + x], kvs[x * DCP + c + 16u * u], a); }
        acc[ch * CPT + u] = a;
      }
    }
  }
  if (i < P.Tq) {
    let valid = sr != 0i; // a row that is not padding sees at least its own key: l > 0
    let inv = select(0.0, 1.0 / l, valid);
    for (var u = 0u; u < NJ; u++) {
      let d = c + 16u * u;
      if (d < P.D) { st_out(qRow(b, i, h) + d, acc[u] * inv); }
    }
    if (c == 0u) { st_lse(bh * P.Tq + i, select(P.negInf, m + log(l), valid)); }
  }
}`,
};

// stats[b, h, i] = (lse, Δ = dO · O) of each query row, lse 0 for padded rows (whose probabilities
// the backward masks to 0 by segment, so no −inf is ever subtracted).
const ROW_STATS: KernelSpec = {
  name: 'attentionRowStats',
  inputs: ['dout', 'out', 'lse', 'segments'],
  outputs: ['stats'],
  params: ['n:u32', 'Tq:u32', 'Tk:u32', 'Hq:u32', 'D:u32'],
  source: /* wgsl */ `${INDEX}
  if (i >= P.n) { return; }
  let b = i / (P.Hq * P.Tq);
  let h = (i / P.Tq) % P.Hq;
  let t = i % P.Tq;
  let row = ((b * P.Tq + t) * P.Hq + h) * P.D;
  var delta = 0.0;
  for (var d = 0u; d < P.D; d++) { delta = fma(ld_dout(row + d), ld_out(row + d), delta); }
  let padded = ld_segments(b * P.Tk + P.Tk - P.Tq + t) == 0i;
  st_stats(2u * i, select(ld_lse(i), 0.0, padded));
  st_stats(2u * i + 1u, delta);
}`,
};

// dq per query tile: P = exp(S·scale − lse), dS = P ∘ (dO Vᵀ − Δ)·scale, dq = Σ over key tiles dS K.
const BACKWARD_DQ: KernelSpec = {
  name: 'attentionBackwardDq',
  inputs: ['q', 'k', 'v', 'dout', 'segments', 'stats'],
  outputs: ['dq'],
  params: ['Bh:u32', 'Tq:u32', 'Tk:u32', 'Hq:u32', 'Hkv:u32', 'D:u32', 'chunks:u32', 'scale:f32'],
  source: /* wgsl */ `${COMMON}
var<workgroup> qs: array<f32, BQ * DC>;
var<workgroup> dos: array<f32, BQ * DC>;
var<workgroup> ks: array<f32, BK * DCP>;
var<workgroup> vs: array<f32, BK * DCP>;
var<workgroup> ds: array<f32, BQ * BK>;
${QUERY_TILE_SHARED}
${MAIN}
${QUERY_TILE_SETUP}
  var lseR = 0.0;
  var deltaR = 0.0;
  if (i < P.Tq) {
    lseR = ld_stats(2u * (bh * P.Tq + i));
    deltaR = ld_stats(2u * (bh * P.Tq + i) + 1u);
  }
  var acc: array<f32, NJ>;
  if (NCH == 1u) {
    let d0 = 0u;
    ${loadTile('qs', 'DC', 'q', 'i0', 'P.Tq', 'qRow(b, ROW, h)')}
    ${loadTile('dos', 'DC', 'dout', 'i0', 'P.Tq', 'qRow(b, ROW, h)')}
  }
  for (var j0 = (lo / BK) * BK; j0 < hi; j0 += BK) {
    if (li < BK) {
      var s = 0i;
      if (j0 + li < P.Tk) { s = segAt(b, j0 + li); }
      segK[li] = s;
    }
    // s = q_r · k_c, dp = dO_r · v_c
    var s = 0.0;
    var dp = 0.0;
    for (var ch = 0u; ch < P.chunks; ch++) {
      let d0 = ch * DC;
      workgroupBarrier();
      if (NCH > 1u) {
        ${loadTile('qs', 'DC', 'q', 'i0', 'P.Tq', 'qRow(b, ROW, h)')}
        ${loadTile('dos', 'DC', 'dout', 'i0', 'P.Tq', 'qRow(b, ROW, h)')}
      }
      ${loadTile('ks', 'DCP', 'k', 'j0', 'P.Tk', 'kRow(b, ROW, hk)')}
      ${loadTile('vs', 'DCP', 'v', 'j0', 'P.Tk', 'kRow(b, ROW, hk)')}
      workgroupBarrier();
      for (var dd = 0u; dd < min(DC, P.D - d0); dd++) {
        s = fma(qs[r * DC + dd], ks[c * DCP + dd], s);
        dp = fma(dos[r * DC + dd], vs[c * DCP + dd], dp);
      }
    }
    let j = j0 + c;
    let valid = sr != 0i && j <= pos && segK[c] == sr;
    let p = select(0.0, exp(s * P.scale - lseR), valid);
    ds[r * BK + c] = p * (dp - deltaR) * P.scale;
    // acc += dS K (with one chunk, ks still holds this key tile)
    for (var ch = 0u; ch < P.chunks; ch++) {
      let d0 = ch * DC;
      workgroupBarrier();
      if (NCH > 1u) {
        ${loadTile('ks', 'DCP', 'k', 'j0', 'P.Tk', 'kRow(b, ROW, hk)')}
        workgroupBarrier();
      }
      for (var u = 0u; u < CPT; u++) {
        if (d0 + 16u * u >= P.D) { break; } // a column group wholly past D: nothing to add
        var a = acc[ch * CPT + u];
        for (var x = 0u; x < BK; x++) { a = fma(ds[r * BK + x], ks[x * DCP + c + 16u * u], a); }
        acc[ch * CPT + u] = a;
      }
    }
  }
  if (i < P.Tq) {
    for (var u = 0u; u < NJ; u++) {
      let d = c + 16u * u;
      if (d < P.D) { st_dq(qRow(b, i, h) + d, acc[u]); }
    }
  }
}`,
};

// dk, dv per key tile: over the query heads of its kv group and the query tiles that can see it,
// dv += Pᵀ dO and dk += dSᵀ Q. Here thread (a, c) owns score (key a, query c).
const BACKWARD_DKDV: KernelSpec = {
  name: 'attentionBackwardDkDv',
  inputs: ['q', 'k', 'v', 'dout', 'segments', 'stats'],
  outputs: ['dk', 'dv'],
  params: ['Bh:u32', 'Tq:u32', 'Tk:u32', 'Hq:u32', 'Hkv:u32', 'D:u32', 'chunks:u32', 'scale:f32'],
  source: /* wgsl */ `${COMMON}
var<workgroup> ks: array<f32, BK * DC>;
var<workgroup> vs: array<f32, BK * DC>;
var<workgroup> qs: array<f32, BQ * DCP>;
var<workgroup> dos: array<f32, BQ * DCP>;
var<workgroup> ps: array<f32, BK * BQ>;
var<workgroup> ds: array<f32, BK * BQ>;
var<workgroup> segQ: array<i32, BQ>;
var<workgroup> segK: array<i32, BK>;
var<workgroup> lseQ: array<f32, BQ>;
var<workgroup> deltaQ: array<f32, BQ>;
var<workgroup> hiAtomic: atomic<u32>;
var<workgroup> hiShared: u32;
${MAIN}
  let bk = wid.y + wid.z * nwg.y;
  if (bk >= P.Bh) { return; }
  let b = bk / P.Hkv;
  let hk = bk % P.Hkv;
  let G = P.Hq / P.Hkv;
  let j0 = wid.x * BK;
  let off = P.Tk - P.Tq;
  let a = li / 16u;
  let c = li % 16u;
  if (li < BK) {
    var s = 0i;
    if (j0 + li < P.Tk) { s = segAt(b, j0 + li); }
    segK[li] = s;
  }
  if (li == 0u) { atomicStore(&hiAtomic, 0u); }
  workgroupBarrier();
  // The last position whose segment is one of this tile's keys' (+ 1): a scan down from the end, each
  // thread stopping at its first match. Query rows past it, or before the tile, see none of its keys.
  let kStart = max(j0, off);
  for (var t = li; kStart + t < P.Tk; t += 256u) {
    let p = P.Tk - 1u - t;
    let s = segAt(b, p);
    var found = false;
    if (s != 0i) {
      for (var x = 0u; x < BK; x++) { found = found || segK[x] == s; }
    }
    if (found) { atomicMax(&hiAtomic, p + 1u); break; }
  }
  workgroupBarrier();
  if (li == 0u) { hiShared = atomicLoad(&hiAtomic); }
  let hiPos = workgroupUniformLoad(&hiShared);
  let iLo = kStart - off;
  let iHi = max(hiPos, off) - off;
  let j = j0 + a;
  let sk = segK[a];
  var kacc: array<f32, NJ>;
  var vacc: array<f32, NJ>;
  if (NCH == 1u) {
    let d0 = 0u;
    ${loadTile('ks', 'DC', 'k', 'j0', 'P.Tk', 'kRow(b, ROW, hk)')}
    ${loadTile('vs', 'DC', 'v', 'j0', 'P.Tk', 'kRow(b, ROW, hk)')}
  }
  for (var g = 0u; g < G; g++) {
    let h = hk * G + g;
    for (var i0 = (iLo / BQ) * BQ; i0 < iHi; i0 += BQ) {
      workgroupBarrier();
      if (li < BQ) {
        var s = 0i;
        var lseI = 0.0;
        var deltaI = 0.0;
        if (i0 + li < P.Tq) {
          s = segAt(b, off + i0 + li);
          let at = 2u * ((b * P.Hq + h) * P.Tq + i0 + li);
          lseI = ld_stats(at);
          deltaI = ld_stats(at + 1u);
        }
        segQ[li] = s;
        lseQ[li] = lseI;
        deltaQ[li] = deltaI;
      }
      // s = q_c · k_a, dp = dO_c · v_a
      var s = 0.0;
      var dp = 0.0;
      for (var ch = 0u; ch < P.chunks; ch++) {
        let d0 = ch * DC;
        workgroupBarrier();
        if (NCH > 1u) {
          ${loadTile('ks', 'DC', 'k', 'j0', 'P.Tk', 'kRow(b, ROW, hk)')}
          ${loadTile('vs', 'DC', 'v', 'j0', 'P.Tk', 'kRow(b, ROW, hk)')}
        }
        ${loadTile('qs', 'DCP', 'q', 'i0', 'P.Tq', 'qRow(b, ROW, h)')}
        ${loadTile('dos', 'DCP', 'dout', 'i0', 'P.Tq', 'qRow(b, ROW, h)')}
        workgroupBarrier();
        for (var dd = 0u; dd < min(DC, P.D - d0); dd++) {
          s = fma(qs[c * DCP + dd], ks[a * DC + dd], s);
          dp = fma(dos[c * DCP + dd], vs[a * DC + dd], dp);
        }
      }
      let valid = sk != 0i && segQ[c] == sk && j <= off + i0 + c;
      let p = select(0.0, exp(s * P.scale - lseQ[c]), valid);
      ps[a * BQ + c] = p;
      ds[a * BQ + c] = p * (dp - deltaQ[c]) * P.scale;
      // vacc += Pᵀ dO, kacc += dSᵀ Q (with one chunk, qs and dos still hold this query tile)
      for (var ch = 0u; ch < P.chunks; ch++) {
        let d0 = ch * DC;
        workgroupBarrier();
        if (NCH > 1u) {
          ${loadTile('qs', 'DCP', 'q', 'i0', 'P.Tq', 'qRow(b, ROW, h)')}
          ${loadTile('dos', 'DCP', 'dout', 'i0', 'P.Tq', 'qRow(b, ROW, h)')}
          workgroupBarrier();
        }
        for (var u = 0u; u < CPT; u++) {
          if (d0 + 16u * u >= P.D) { break; } // a column group wholly past D: nothing to add
          let col = c + 16u * u;
          var va = vacc[ch * CPT + u];
          var ka = kacc[ch * CPT + u];
          for (var x = 0u; x < BQ; x++) {
            va = fma(ps[a * BQ + x], dos[x * DCP + col], va);
            ka = fma(ds[a * BQ + x], qs[x * DCP + col], ka);
          }
          vacc[ch * CPT + u] = va;
          kacc[ch * CPT + u] = ka;
        }
      }
    }
  }
  if (j < P.Tk) {
    for (var u = 0u; u < NJ; u++) {
      let d = c + 16u * u;
      if (d < P.D) {
        st_dk(kRow(b, j, hk) + d, kacc[u]);
        st_dv(kRow(b, j, hk) + d, vacc[u]);
      }
    }
  }
}`,
};

/**
 * The variant for head size D: D is loaded DC columns at a time (a multiple of 16) in NCH chunks, and
 * each thread keeps NJ accumulator columns of a row. D itself is a parameter, so head sizes with the
 * same chunk count share one pipeline. The chunk loops run to the parameter `chunks` (= NCH), not to
 * the constant: unrolled, they make software Vulkan (lavapipe) compile for many seconds, and their
 * bodies touch the accumulators only once per 16 FMAs, so indexing them dynamically costs little.
 */
function headConstants(D: number, DC: number): { DC: number; NCH: number; NJ: number } {
  const NCH = Math.ceil(D / DC);
  return { DC, NCH, NJ: (NCH * DC) / TILE };
}

function check(op: string, tensors: Tensor[], D: number): void {
  for (const t of tensors)
    if (t.dtype !== 'f32')
      throw new Error(`lorakit: the WebGPU ${op} kernel computes in f32, got a ${t.dtype} tensor.`);
  if (D > MAX_HEAD_DIM)
    throw new Error(`lorakit: the WebGPU attention kernels take head sizes up to ${MAX_HEAD_DIM}, got ${D}.`);
}

export const attentionKernels = {
  attentionForward: (out, lse, q, k, v, segments, scale) => {
    const [B, Tq, Tk, Hq, Hkv, D] = attentionSizes(q, k);
    check('attentionForward', [out, q, k, v], D);
    if (B * Tq * Hq === 0) return;
    const constants = headConstants(D, 64);
    const [y, z] = linearGroups(B * Hq);
    dispatch(
      FORWARD,
      { q, k, v, segments, out, lse },
      { Bh: B * Hq, Tq, Tk, Hq, Hkv, D, chunks: constants.NCH, scale, negInf: -Infinity },
      [Math.ceil(Tq / TILE), y, z],
      constants,
    );
  },
  attentionBackward: (dq, dk, dv, dout, q, k, v, segments, out, lse, scale) => {
    const [B, Tq, Tk, Hq, Hkv, D] = attentionSizes(q, k);
    check('attentionBackward', [dq, dk, dv, dout, q, k, v, out], D);
    if (B * Tk * Hkv === 0) return;
    const rows = B * Hq * Tq;
    // Backward reads four D-chunks at a time (q, dO, k, v): DC 32 keeps them within 16 KiB.
    const constants = headConstants(D, 32);
    const sizes = { Tq, Tk, Hq, Hkv, D, chunks: constants.NCH, scale };
    const stats = Tensor.empty([Math.max(1, 2 * rows)], 'f32', 'webgpu');
    try {
      if (rows > 0) {
        dispatch(ROW_STATS, { dout, out, lse, segments, stats }, { n: rows, Tq, Tk, Hq, D }, groups256(rows));
        const [y, z] = linearGroups(B * Hq);
        dispatch(
          BACKWARD_DQ,
          { q, k, v, dout, segments, stats, dq },
          { Bh: B * Hq, ...sizes },
          [Math.ceil(Tq / TILE), y, z],
          constants,
        );
      }
      const [y, z] = linearGroups(B * Hkv);
      dispatch(
        BACKWARD_DKDV,
        { q, k, v, dout, segments, stats, dk, dv },
        { Bh: B * Hkv, ...sizes },
        [Math.ceil(Tk / TILE), y, z],
        constants,
      );
    } finally {
      stats.dispose(); // its buffer is reused only by work recorded later, which runs after these
    }
  },
} satisfies Kernels;
