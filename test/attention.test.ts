import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backward, noGrad } from '../src/autograd/tape.js';
import { cpu } from '../src/backend/cpu/addon.js';
import { attention } from '../src/ops/attention.js';
import { memoryStats, Tensor, tidy } from '../src/tensor/tensor.js';
import { assertClose, randn } from './helpers.js';

interface Dims {
  B: number;
  Tq: number;
  Tk: number;
  Hq: number;
  Hkv: number;
  D: number;
}

interface Ref {
  out: Float64Array;
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
}

/**
 * Float64 reference: builds each (b, h)'s full masked score matrix [Tq, Tk], softmaxes it, and
 * differentiates analytically for the upstream gradient dout:
 * dV = Pᵀ dO, dP = dO Vᵀ, dS = P ∘ (dP − rowsum(P ∘ dP)), dQ = scale dS K, dK = scale dSᵀ Q.
 */
function reference(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  seg: Int32Array,
  d: Dims,
  scale: number,
  dout: Float64Array,
): Ref {
  const { B, Tq, Tk, Hq, Hkv, D } = d;
  const G = Hq / Hkv;
  const qi = (b: number, i: number, h: number) => ((b * Tq + i) * Hq + h) * D;
  const ki = (b: number, j: number, h: number) => ((b * Tk + j) * Hkv + h) * D;
  const out = new Float64Array(q.length);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(k.length);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / G);
      for (let i = 0; i < Tq; i++) {
        const p = Tk - Tq + i;
        const s = seg[b * Tk + p];
        if (s === 0) continue; // padded query: zero output, zero gradient
        const scores = new Float64Array(Tk).fill(-Infinity);
        for (let j = 0; j < Tk; j++) {
          if (j > p || seg[b * Tk + j] !== s) continue;
          let acc = 0;
          for (let c = 0; c < D; c++) acc += q[qi(b, i, h) + c] * k[ki(b, j, hk) + c];
          scores[j] = acc * scale;
        }
        const m = Math.max(...scores);
        let sum = 0;
        const P = scores.map((x) => Math.exp(x - m));
        for (const x of P) sum += x;
        for (let j = 0; j < Tk; j++) P[j] /= sum;
        const dP = new Float64Array(Tk);
        let rowDot = 0;
        for (let j = 0; j < Tk; j++) {
          if (P[j] === 0) continue;
          let acc = 0;
          for (let c = 0; c < D; c++) {
            out[qi(b, i, h) + c] += P[j] * v[ki(b, j, hk) + c];
            dv[ki(b, j, hk) + c] += P[j] * dout[qi(b, i, h) + c];
            acc += dout[qi(b, i, h) + c] * v[ki(b, j, hk) + c];
          }
          dP[j] = acc;
          rowDot += P[j] * acc;
        }
        for (let j = 0; j < Tk; j++) {
          if (P[j] === 0) continue;
          const dS = P[j] * (dP[j] - rowDot) * scale;
          for (let c = 0; c < D; c++) {
            dq[qi(b, i, h) + c] += dS * k[ki(b, j, hk) + c];
            dk[ki(b, j, hk) + c] += dS * q[qi(b, i, h) + c];
          }
        }
      }
    }
  return { out, dq, dk, dv };
}

/** Row 0: right padding (1…1 0…0); row 1: packed sequences (1 1 1 2 2 3 3 3 …, last ones padding). */
function paddedAndPacked(B: number, T: number): Int32Array {
  const seg = new Int32Array(B * T);
  const ones = Math.max(1, Math.ceil(T * 0.6));
  for (let j = 0; j < T; j++) seg[j] = j < ones ? 1 : 0;
  if (B > 1) {
    const lengths = [3, 2, 3, 5, 1, 4];
    let id = 1;
    let left = lengths[0];
    for (let j = 0; j < T; j++) {
      seg[T + j] = T >= 7 && j >= T - 2 ? 0 : id;
      if (--left === 0) left = lengths[id++ % lengths.length];
    }
  }
  return seg;
}

interface Run {
  out: Float32Array;
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
}

/** Forward and backward through the op, upstream gradient dout. */
function run(
  q64: Float64Array,
  k64: Float64Array,
  v64: Float64Array,
  seg: Int32Array,
  d: Dims,
  dout: Float64Array,
  scale?: number,
): Run {
  const { B, Tq, Tk, Hq, Hkv, D } = d;
  const q = Tensor.from(q64, [B, Tq, Hq, D]);
  const k = Tensor.from(k64, [B, Tk, Hkv, D]);
  const v = Tensor.from(v64, [B, Tk, Hkv, D]);
  const s = Tensor.from(seg, [B, Tk], 'i32');
  q.requiresGrad = k.requiresGrad = v.requiresGrad = true;
  const out = tidy(() => {
    const o = attention(q, k, v, s, scale === undefined ? {} : { scale });
    const copy = o.toFloat32();
    backward(o, Tensor.from(dout, o.shape));
    return copy;
  });
  const result = { out, dq: q.grad!.toFloat32(), dk: k.grad!.toFloat32(), dv: v.grad!.toFloat32() };
  for (const t of [q, k, v, s]) t.dispose();
  return result;
}

function check(d: Dims, seg: Int32Array, seed: number, what: string, scale?: number): void {
  const { B, Tq, Tk, Hq, Hkv, D } = d;
  const q = randn(B * Tq * Hq * D, seed);
  const k = randn(B * Tk * Hkv * D, seed + 1);
  const v = randn(B * Tk * Hkv * D, seed + 2);
  const dout = randn(B * Tq * Hq * D, seed + 3);
  const ref = reference(q, k, v, seg, d, scale ?? 1 / Math.sqrt(D), dout);
  const got = run(q, k, v, seg, d, dout, scale);
  assertClose(got.out, ref.out, 1e-5, `${what} out`);
  assertGrad(got.dq, ref.dq, `${what} dq`);
  assertGrad(got.dk, ref.dk, `${what} dk`);
  assertGrad(got.dv, ref.dv, `${what} dv`);
}

/**
 * Relative error < 1e-4, except where the exact gradient is zero throughout (T=1: a softmax over one
 * key does not depend on q or k); there fp32 rounding of dP − D_i leaves ~1e-8, checked absolutely.
 */
function assertGrad(got: Float32Array, ref: Float64Array, what: string): void {
  const scale = ref.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  if (scale > 1e-6) return assertClose(got, ref, 1e-4, what);
  for (let i = 0; i < got.length; i++)
    assert.ok(Math.abs(got[i]) < 1e-5, `${what}: ${got[i]} at ${i}, expected 0`);
}

test('attention forward and backward match float64 (GQA 1/2/4, padding, packing)', () => {
  let seed = 10;
  for (const [Hq, Hkv] of [
    [3, 3],
    [4, 2],
    [4, 1],
  ])
    for (const D of [1, 7, 33])
      for (const T of [1, 7, 33]) {
        const d = { B: 2, Tq: T, Tk: T, Hq, Hkv, D };
        check(d, paddedAndPacked(2, T), (seed += 10), `B=2 T=${T} Hq=${Hq} Hkv=${Hkv} D=${D}`);
      }
});

test('attention at T=127 (B=1, plain causal and packed) matches float64', () => {
  let seed = 500;
  for (const [Hq, Hkv] of [
    [2, 2],
    [4, 2],
    [8, 2],
  ])
    for (const D of [1, 7, 33]) {
      const d = { B: 1, Tq: 127, Tk: 127, Hq, Hkv, D };
      check(d, new Int32Array(127).fill(1), (seed += 10), `T=127 causal Hq=${Hq} Hkv=${Hkv} D=${D}`);
    }
  const packed = paddedAndPacked(2, 127).subarray(127);
  check({ B: 1, Tq: 127, Tk: 127, Hq: 4, Hkv: 1, D: 33 }, packed, 900, 'T=127 packed');
});

test('attention head dims on and around vector widths (partial and whole register tiles) match float64', () => {
  // 12 and 24: a tile of two vectors whose last is partial (8 and 16 lanes); 64 and 80: whole tiles of
  // every path plus a one-vector tail; T=70 leaves a block of 6 rows (a partial row tile).
  let seed = 1400;
  for (const D of [12, 24, 64, 80])
    for (const T of [40, 70]) {
      const d = { B: 2, Tq: T, Tk: T, Hq: 4, Hkv: 2, D };
      check(d, paddedAndPacked(2, T), (seed += 10), `B=2 T=${T} Hq=4 Hkv=2 D=${D}`);
    }
  const Tk = 70;
  const seg = paddedAndPacked(2, Tk);
  for (const Tq of [1, 3, 9])
    check({ B: 2, Tq, Tk, Hq: 4, Hkv: 1, D: 64 }, seg, 1500 + Tq, `decode Tq=${Tq} D=64`);
});

test('attention: left padding, repeated segment ids and a custom scale', () => {
  const T = 33;
  const seg = new Int32Array(2 * T);
  // Row 0 left-padded; row 1 with id 1 resuming after id 2 (same id still attends across the gap).
  for (let j = 0; j < T; j++) seg[j] = j < 5 ? 0 : 1;
  for (let j = 0; j < T; j++) seg[T + j] = j < 10 ? 1 : j < 20 ? 2 : 1;
  check({ B: 2, Tq: T, Tk: T, Hq: 4, Hkv: 2, D: 7 }, seg, 1000, 'left padding');
  check({ B: 2, Tq: T, Tk: T, Hq: 2, Hkv: 1, D: 33 }, seg, 1100, 'scale 0.37', 0.37);
});

test('attention with Tq < Tk (decoding against a KV cache) matches float64', () => {
  const Tk = 33;
  const seg = new Int32Array(2 * Tk);
  for (let j = 0; j < Tk; j++) seg[j] = j < 4 ? 0 : 1; // left-padded prompt
  for (let j = 0; j < Tk; j++) seg[Tk + j] = 1;
  for (const Tq of [1, 5]) check({ B: 2, Tq, Tk, Hq: 4, Hkv: 2, D: 33 }, seg, 1200 + Tq, `decode Tq=${Tq}`);
  // The last query rows being padding still gives zeros.
  check({ B: 2, Tq: 5, Tk, Hq: 4, Hkv: 1, D: 7 }, paddedAndPacked(2, Tk), 1300, 'decode, padded tail');
});

test('padded query rows output exact zeros and get zero gradient; padded keys get zero dk/dv', () => {
  const d = { B: 2, Tq: 33, Tk: 33, Hq: 4, Hkv: 2, D: 7 };
  const seg = paddedAndPacked(2, 33);
  const n = (t: number) => t * d.Hq * d.D;
  const got = run(
    randn(n(66), 1),
    randn(66 * d.Hkv * d.D, 2),
    randn(66 * d.Hkv * d.D, 3),
    seg,
    d,
    randn(n(66), 4),
  );
  let padded = 0;
  for (let b = 0; b < 2; b++)
    for (let t = 0; t < 33; t++) {
      if (seg[b * 33 + t] !== 0) continue;
      padded++;
      const row = (b * 33 + t) * d.Hq * d.D;
      for (let c = 0; c < d.Hq * d.D; c++) {
        assert.equal(got.out[row + c], 0);
        assert.equal(got.dq[row + c], 0);
      }
      const kv = (b * 33 + t) * d.Hkv * d.D;
      for (let c = 0; c < d.Hkv * d.D; c++) {
        assert.equal(got.dk[kv + c], 0);
        assert.equal(got.dv[kv + c], 0);
      }
    }
  assert.ok(padded > 0);
});

test('attention gives the same result on 1, 2, 3 and 5 threads (dK/dV partials summed)', () => {
  const threads = cpu.getThreads();
  try {
    for (const Hkv of [1, 3]) {
      const d = { B: 2, Tq: 127, Tk: 127, Hq: 6, Hkv, D: 33 };
      const nq = 2 * 127 * 6 * 33;
      const nkv = 2 * 127 * Hkv * 33;
      const args = [
        randn(nq, 7),
        randn(nkv, 8),
        randn(nkv, 9),
        paddedAndPacked(2, 127),
        d,
        randn(nq, 10),
      ] as const;
      cpu.setThreads(1);
      const one = run(...args);
      for (const n of [2, 3, 5]) {
        cpu.setThreads(n);
        const many = run(...args);
        for (const key of ['out', 'dq', 'dk', 'dv'] as const)
          assertClose(many[key], one[key], 1e-5, `Hkv=${Hkv} ${n} threads ${key}`);
      }
    }
  } finally {
    cpu.setThreads(threads);
  }
});

test('attention rejects bad inputs with clear errors', () => {
  tidy(() => {
    const q = Tensor.from(randn(2 * 5 * 4 * 8, 1), [2, 5, 4, 8]);
    const k = Tensor.from(randn(2 * 5 * 2 * 8, 2), [2, 5, 2, 8]);
    const seg = Tensor.from(new Int32Array(10).fill(1), [2, 5], 'i32');
    const throws = (fn: () => unknown, re: RegExp) =>
      assert.throws(fn, (e: Error) => re.test(e.message) && e.message.startsWith('lorakit: '));
    throws(() => attention(Tensor.zeros([2, 5, 4, 8], 'bf16'), k, k, seg), /q must be f32, got bf16/);
    throws(() => attention(q, k, k, Tensor.from(new Float32Array(10), [2, 5])), /segments must be i32/);
    throws(() => attention(q.reshape([10, 4, 8]), k, k, seg), /q must be \[B, Tq, Hq, D\], got \[10, 4, 8\]/);
    throws(
      () => attention(q, k, k.reshape([2, 5, 4, 4]), seg),
      /v has shape \[2, 5, 4, 4\], expected k's shape \[2, 5, 2, 8\]/,
    );
    throws(
      () => attention(q, k.reshape([2, 5, 4, 4]), k.reshape([2, 5, 4, 4]), seg),
      /k \[2, 5, 4, 4\] does not match q \[2, 5, 4, 8\]/,
    );
    const k3 = Tensor.from(randn(2 * 5 * 3 * 8, 3), [2, 5, 3, 8]);
    throws(() => attention(q, k3, k3, seg), /query heads \(4\) must be a multiple of key\/value heads \(3\)/);
    const kShort = k.reshape([2, 5, 2, 8]).sliceRows(0, 1);
    throws(() => attention(q, kShort, kShort, seg), /does not match q/);
    const q6 = Tensor.from(randn(2 * 6 * 4 * 8, 4), [2, 6, 4, 8]);
    throws(() => attention(q6, k, k, seg), /q has more positions \(6\) than k \(5\)/);
    throws(
      () => attention(q, k, k, Tensor.from(new Int32Array(12).fill(1), [2, 6], 'i32')),
      /segments has shape \[2, 6\], expected \[2, 5\]/,
    );
    throws(
      () => attention(q, k, k, Tensor.from([1, 1, -1, 1, 1, 1, 1, 1, 1, 1], [2, 5], 'i32')),
      /segments\[0, 2\] is -1/,
    );
    throws(() => attention(q, k, k, seg, { scale: NaN }), /scale must be a finite number/);
  });
});

test('attention reuses a kept output and logsumexp: the same gradients, no forward, no memory left', () => {
  const q = Tensor.from(randn(2 * 7 * 4 * 7, 11), [2, 7, 4, 7]);
  const k = Tensor.from(randn(2 * 7 * 2 * 7, 12), [2, 7, 2, 7]);
  const v = Tensor.from(randn(2 * 7 * 2 * 7, 13), [2, 7, 2, 7]);
  const s = Tensor.from(paddedAndPacked(2, 7), [2, 7], 'i32');
  const g = randn(q.size, 14);
  q.requiresGrad = k.requiresGrad = v.requiresGrad = true;
  const before = memoryStats().liveBytes;
  // A checkpoint's two runs: the first keeps out and lse, the recompute reuses them.
  const kept: Tensor[] = [];
  const grads = (reuse: boolean) =>
    tidy(() => {
      const o = attention(
        q,
        k,
        v,
        s,
        reuse ? { reuse: { out: kept[0], lse: kept[1] } } : { keep: (r) => kept.push(r.out, r.lse) },
      );
      const out = o.toFloat32();
      backward(o, Tensor.from(g, o.shape));
      const gs = [q, k, v].map((t) => {
        const d = t.grad!.toFloat32();
        t.grad!.dispose();
        t.grad = null;
        return d;
      });
      return { out, gs };
    });
  const first = grads(false);
  const forwards = cpu.attentionForwardF32;
  let calls = 0;
  cpu.attentionForwardF32 = (...args) => {
    calls++;
    forwards(...args);
  };
  try {
    const again = grads(true);
    assert.equal(calls, 0, 'the reused run computes no forward');
    assert.deepEqual(again.out, first.out);
    again.gs.forEach((d, i) => assert.deepEqual(d, first.gs[i], `gradient ${i}`));
  } finally {
    cpu.attentionForwardF32 = forwards;
  }
  const throws = (fn: () => unknown, re: RegExp) => assert.throws(fn, (e: Error) => re.test(e.message));
  tidy(() => {
    const [out, lse] = kept;
    throws(
      () => attention(q, k, v, s, { reuse: { out: out.reshape([2, 7, 28]), lse } }),
      /the reused output \[2, 7, 28\] f32 does not match q \[2, 7, 4, 7\]/,
    );
    throws(
      () => attention(q, k, v, s, { reuse: { out, lse: lse.reshape([-1]).sliceRows(0, 5) } }),
      /the reused logsumexp must be f32 \[2, 4, 7\]/,
    );
  });
  for (const t of kept) t.dispose();
  assert.equal(memoryStats().liveBytes, before);
  for (const t of [q, k, v, s]) t.dispose();
});

test('repeated attention steps do not grow native memory', () => {
  const d = { B: 2, Tq: 7, Tk: 7, Hq: 4, Hkv: 2, D: 7 };
  const q = Tensor.from(randn(2 * 7 * 4 * 7, 1), [2, 7, 4, 7]);
  const k = Tensor.from(randn(2 * 7 * 2 * 7, 2), [2, 7, 2, 7]);
  const v = Tensor.from(randn(2 * 7 * 2 * 7, 3), [2, 7, 2, 7]);
  const s = Tensor.from(paddedAndPacked(2, 7), [2, 7], 'i32');
  q.requiresGrad = k.requiresGrad = v.requiresGrad = true;
  const step = () =>
    tidy(() => {
      const o = attention(q, k, v, s);
      backward(o, Tensor.from(randn(o.size, 4), o.shape));
      for (const t of [q, k, v]) {
        t.grad?.dispose();
        t.grad = null;
      }
      noGrad(() => attention(q, k, v, s));
    });
  step();
  const before = memoryStats().liveBytes;
  for (let i = 0; i < 10; i++) step();
  assert.equal(memoryStats().liveBytes, before);
  for (const t of [q, k, v, s]) t.dispose();
  void d;
});

test('attention performance (B=1, T=512, Hq=8, Hkv=4, D=64), printed only', () => {
  const [B, T, Hq, Hkv, D] = [1, 512, 8, 4, 64];
  const q = Tensor.from(randn(B * T * Hq * D, 1), [B, T, Hq, D]);
  const k = Tensor.from(randn(B * T * Hkv * D, 2), [B, T, Hkv, D]);
  const v = Tensor.from(randn(B * T * Hkv * D, 3), [B, T, Hkv, D]);
  const s = Tensor.from(new Int32Array(T).fill(1), [B, T], 'i32');
  q.requiresGrad = k.requiresGrad = v.requiresGrad = true;
  const dout = randn(B * T * Hq * D, 4);
  // Causal: half of the T² score matrix; forward 2 GEMMs, backward 5 (counted as 2·M·N·K each).
  const gemmFlops = B * Hq * ((T * T) / 2) * D * 2;
  const threads = cpu.getThreads();
  try {
    for (const n of new Set([1, threads])) {
      cpu.setThreads(n);
      const best = { fwd: Infinity, bwd: Infinity };
      for (let rep = 0; rep < 5; rep++)
        tidy(() => {
          const g = Tensor.from(dout, [B, T, Hq, D]);
          const t0 = performance.now();
          const o = attention(q, k, v, s);
          const t1 = performance.now();
          backward(o, g);
          const t2 = performance.now();
          best.fwd = Math.min(best.fwd, t1 - t0);
          best.bwd = Math.min(best.bwd, t2 - t1);
          for (const t of [q, k, v]) {
            t.grad?.dispose();
            t.grad = null;
          }
        });
      console.log(
        `attention B=${B} T=${T} Hq=${Hq} Hkv=${Hkv} D=${D} on ${n} thread(s): ` +
          `forward ${best.fwd.toFixed(2)} ms (${((2 * gemmFlops) / best.fwd / 1e6).toFixed(1)} GFLOP/s), ` +
          `backward ${best.bwd.toFixed(2)} ms (${((5 * gemmFlops) / best.bwd / 1e6).toFixed(1)} GFLOP/s)`,
      );
    }
  } finally {
    cpu.setThreads(threads);
  }
  for (const t of [q, k, v, s]) t.dispose();
});
