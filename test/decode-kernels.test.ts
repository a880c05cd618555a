// native/cpu/decode.cc against float64 references on odd sizes (vector tails, rows not a multiple of
// the four-row block, partial rotary width, grouped kv heads), for fp32, bf16 and int8 weights, with
// and without a LoRA term.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cpu } from '../src/backend/cpu/addon.js';
import { assertClose, randn } from './helpers.js';

const f32 = (x: ArrayLike<number>) => Float32Array.from(x);
const bf16 = (x: Float32Array) => {
  const u = new Uint32Array(x.buffer.slice(0));
  return Uint16Array.from(u, (b) => (b + 0x7fff + ((b >> 16) & 1)) >>> 16);
};
const fromBf16 = (b: Uint16Array) => new Float32Array(Uint32Array.from(b, (h) => h << 16).buffer);

type Kind = 'f32' | 'bf16' | 'int8';
interface W {
  args: [
    Float32Array | Uint16Array | null,
    Uint8Array | null,
    Float32Array | null,
    Float32Array | null,
    Float32Array | null,
    Float32Array | null,
    number,
    number,
  ];
  dense: Float64Array; // the weight's exact value [rows, cols]
  bias: Float32Array | null;
  lora: { A: Float32Array; B: Float32Array; r: number; s: number } | null;
}

const NO_WEIGHT = [null, null, null, null, null, null, 0, 0] as const;

// A weight of `kind` with a LoRA adapter of rank `rank` (0: none).
function weight(kind: Kind, rows: number, cols: number, seed: number, withBias: boolean, rank = 0): W {
  const w = f32(randn(rows * cols, seed, 0.3));
  const bias = withBias ? f32(randn(rows, seed + 1)) : null;
  const lora =
    rank > 0
      ? {
          A: f32(randn(rank * cols, seed + 2, 0.3)),
          B: f32(randn(rows * rank, seed + 3, 0.3)),
          r: rank,
          s: 1.7,
        }
      : null;
  const loraArgs = lora ? ([lora.A, lora.B, lora.r, lora.s] as const) : ([null, null, 0, 0] as const);
  if (kind === 'f32')
    return { args: [w, null, null, bias, ...loraArgs], dense: Float64Array.from(w), bias, lora };
  if (kind === 'bf16') {
    const b = bf16(w);
    return { args: [b, null, null, bias, ...loraArgs], dense: Float64Array.from(fromBf16(b)), bias, lora };
  }
  const q = new Uint8Array(rows * cols);
  const s = new Float32Array(rows);
  cpu.quantizeInt8(q, s, w, rows, cols);
  const qi = new Int8Array(q.buffer);
  const dense = Float64Array.from(qi, (v, i) => (v * s[Math.floor(i / cols)]) / 127);
  return { args: [null, q, s, bias, ...loraArgs], dense, bias, lora };
}

function normed(x: Float32Array, w: Float32Array | null, eps: number): Float64Array {
  if (!w) return Float64Array.from(x);
  const ss = x.reduce((a, v) => a + v * v, 0);
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return Float64Array.from(x, (v, i) => w[i] * v * r);
}

function matvec(w: W, x: Float64Array, rows: number, cols: number): Float64Array {
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let a = w.bias ? w.bias[r] : 0;
    for (let c = 0; c < cols; c++) a += w.dense[r * cols + c] * x[c];
    y[r] = a;
  }
  if (w.lora) {
    const { A, B, r: rank, s } = w.lora;
    const h = new Float64Array(rank);
    for (let j = 0; j < rank; j++) for (let c = 0; c < cols; c++) h[j] += A[j * cols + c] * x[c];
    for (let r = 0; r < rows; r++) for (let j = 0; j < rank; j++) y[r] += s * B[r * rank + j] * h[j];
  }
  return y;
}

for (const kind of ['f32', 'bf16', 'int8'] as Kind[])
  test(`decodeProject and decodeSwiglu: ${kind} weights, odd sizes, norm, bias, LoRA, accumulate`, () => {
    const cols = 37;
    const rows = [13, 5, 3] as const;
    const eps = 1e-5;
    const x = f32(randn(cols, 1));
    const norm = f32(randn(cols, 2));
    const ws = rows.map((r, i) => weight(kind, r, cols, 10 + i, i !== 1, [3, 0, 5][i]));
    const ys = rows.map((r) => new Float32Array(r));
    cpu.decodeProject(
      ys[0],
      ys[1],
      ys[2],
      x,
      norm,
      ...ws[0].args,
      ...ws[1].args,
      ...ws[2].args,
      ...rows,
      cols,
      eps,
      false,
    );
    const xn = normed(x, norm, eps);
    ys.forEach((y, i) => assertClose(y, matvec(ws[i], xn, rows[i], cols), 1e-5, `weight ${i}`));
    // One weight, no norm, accumulating into y.
    const acc = f32(randn(13, 7));
    const before = Float64Array.from(acc);
    cpu.decodeProject(
      acc,
      null,
      null,
      x,
      null,
      ...ws[0].args,
      ...NO_WEIGHT,
      ...NO_WEIGHT,
      13,
      0,
      0,
      cols,
      eps,
      true,
    );
    const want = matvec(ws[0], Float64Array.from(x), 13, cols).map((v, i) => v + before[i]);
    assertClose(acc, want, 1e-5, 'accumulate');
    // SwiGLU of gate and up, 19 rows (a piece and a tail).
    const g = weight(kind, 19, cols, 30, true, 7);
    const u = weight(kind, 19, cols, 31, false);
    const m = new Float32Array(19);
    cpu.decodeSwiglu(m, x, norm, ...g.args, ...u.args, 19, cols, eps);
    const gv = matvec(g, xn, 19, cols);
    const uv = matvec(u, xn, 19, cols);
    assertClose(
      m,
      gv.map((v, i) => (v / (1 + Math.exp(-v))) * uv[i]),
      1e-5,
      'swiglu',
    );
  });

for (const qkNorm of [false, true])
  test(`decodeAttention: grouped heads, partial rotary, cache append${qkNorm ? ', q/k norm' : ''}`, () => {
    const [H, Hkv, Dh, half, at, cap, P] = [6, 2, 10, 4, 6, 9, 16];
    const pos = 11;
    const eps = 1e-6;
    const scale = 1 / Math.sqrt(Dh);
    const q = f32(randn(H * Dh, 1));
    const k = f32(randn(Hkv * Dh, 2));
    const v = f32(randn(Hkv * Dh, 3));
    const kc = f32(randn(cap * Hkv * Dh, 4));
    const vc = f32(randn(cap * Hkv * Dh, 5));
    const qn = qkNorm ? f32(randn(Dh, 6)) : null;
    const kn = qkNorm ? f32(randn(Dh, 7)) : null;
    const cos = new Float32Array(P * half);
    const sin = new Float32Array(P * half);
    for (let p = 0; p < P; p++)
      for (let i = 0; i < half; i++) {
        cos[p * half + i] = Math.cos(p / 10 ** (i / half));
        sin[p * half + i] = Math.sin(p / 10 ** (i / half));
      }
    // Reference: norm, rotate, append, attend.
    const rot = (x: Float32Array, heads: number, w: Float32Array | null) => {
      const out = new Float64Array(x.length);
      for (let h = 0; h < heads; h++) {
        const xh = normed(x.subarray(h * Dh, (h + 1) * Dh), w, eps);
        for (let i = 0; i < Dh; i++) out[h * Dh + i] = xh[i];
        for (let i = 0; i < half; i++) {
          const c = cos[pos * half + i];
          const s = sin[pos * half + i];
          out[h * Dh + i] = xh[i] * c - xh[i + half] * s;
          out[h * Dh + i + half] = xh[i + half] * c + xh[i] * s;
        }
      }
      return out;
    };
    const qr = rot(q, H, qn);
    const kr = rot(k, Hkv, kn);
    const K = Float64Array.from(kc);
    const Vv = Float64Array.from(vc);
    K.set(kr, at * Hkv * Dh);
    Vv.set(v, at * Hkv * Dh);
    const want = new Float64Array(H * Dh);
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / (H / Hkv));
      const s = Array.from({ length: at + 1 }, (_, t) => {
        let d = 0;
        for (let i = 0; i < Dh; i++) d += qr[h * Dh + i] * K[(t * Hkv + g) * Dh + i];
        return d * scale;
      });
      const mx = Math.max(...s);
      const e = s.map((x) => Math.exp(x - mx));
      const z = e.reduce((a, b) => a + b, 0);
      for (let i = 0; i < Dh; i++)
        want[h * Dh + i] = e.reduce((a, p, t) => a + p * Vv[(t * Hkv + g) * Dh + i], 0) / z;
    }
    // The same step over a paged cache: blocks of 3 positions, in shuffled order, with spare blocks.
    const row = Hkv * Dh;
    const bs = 3;
    const nb = Math.ceil((at + 1) / bs);
    const blocks = Int32Array.from({ length: nb }, (_, b) => nb + 1 - b);
    const slot = (t: number) => blocks[Math.floor(t / bs)] * bs + (t % bs);
    const kp = f32(randn((nb + 2) * bs * row, 8));
    const vp = f32(randn((nb + 2) * bs * row, 9));
    for (let t = 0; t < at; t++) {
      kp.set(kc.subarray(t * row, (t + 1) * row), slot(t) * row);
      vp.set(vc.subarray(t * row, (t + 1) * row), slot(t) * row);
    }
    const q0 = Float32Array.from(q);
    const k0 = Float32Array.from(k);
    const out = new Float32Array(H * Dh);
    cpu.decodeAttention(
      out,
      q,
      k,
      v,
      kc,
      vc,
      qn,
      kn,
      cos,
      sin,
      at,
      pos,
      H,
      Hkv,
      Dh,
      half,
      P,
      eps,
      scale,
      null,
      1,
    );
    assertClose(out, want, 1e-5, 'attention output');
    assertClose(kc.subarray(at * row, (at + 1) * row), kr, 1e-5, 'cached key');
    assert.deepEqual(vc.subarray(at * row, (at + 1) * row), v, 'cached value');
    assertClose(q, qr, 1e-5, 'rotated query');
    const pout = new Float32Array(H * Dh);
    cpu.decodeAttention(
      pout,
      q0,
      k0,
      v,
      kp,
      vp,
      qn,
      kn,
      cos,
      sin,
      at,
      pos,
      H,
      Hkv,
      Dh,
      half,
      P,
      eps,
      scale,
      blocks,
      bs,
    );
    assertClose(pout, want, 1e-5, 'attention output, paged');
    assertClose(kp.subarray(slot(at) * row, (slot(at) + 1) * row), kr, 1e-5, 'cached key, paged');
    assert.deepEqual(vp.subarray(slot(at) * row, (slot(at) + 1) * row), v, 'cached value, paged');
  });
