import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backward } from '../src/autograd/tape.js';
import { cpu, cpuPath, useCpuIsa } from '../src/backend/cpu/addon.js';
import { traceKernels } from '../src/backend/kernels.js';
import { add, mul, scale, sum } from '../src/ops/elementwise.js';
import { memoryStats, Tensor, tidy } from '../src/tensor/tensor.js';
import { assertClose, randn, rng } from './helpers.js';

test('add/mul broadcast forward and backward against float64', () => {
  for (const [rows, cols] of [
    [1, 1],
    [7, 33],
    [127, 7],
  ]) {
    const a64 = randn(rows * cols, 1);
    const b64 = randn(cols, 2);
    const a = Tensor.from(a64, [rows, cols]);
    const b = Tensor.from(b64, [cols]);
    a.requiresGrad = b.requiresGrad = true;
    tidy(() => {
      const y = sum(mul(add(a, b), scale(a, 0.5)));
      // y = sum((a + b) * 0.5 a); dy/da = 0.5 a + 0.5 (a + b) = a + 0.5 b; dy/db = sum_rows 0.5 a
      let ref = 0;
      for (let i = 0; i < a64.length; i++) ref += (a64[i] + b64[i % cols]) * 0.5 * a64[i];
      assertClose([y.item()], [ref], 1e-5, 'forward');
      backward(y);
    });
    const ga = a64.map((v, i) => v + 0.5 * b64[i % cols]);
    const gb = new Float64Array(cols);
    for (let i = 0; i < a64.length; i++) gb[i % cols] += 0.5 * a64[i];
    assertClose(a.grad!.toFloat32(), ga, 1e-5, 'grad a');
    assertClose(b.grad!.toFloat32(), gb, 1e-5, 'grad b');
    a.dispose();
    b.dispose();
  }
});

test('repeated steps do not grow native memory', () => {
  const w = Tensor.from(randn(4096, 3), [64, 64]);
  w.requiresGrad = true;
  const step = () =>
    tidy(() => {
      const y = sum(mul(w, w));
      backward(y);
    });
  step();
  const before = memoryStats().liveBytes;
  for (let i = 0; i < 20; i++) step();
  assert.equal(memoryStats().liveBytes, before);
  w.dispose();
  assert.equal(memoryStats().liveBytes, 0);
});

test('reshape views pass gradients back to their source', () => {
  const a = Tensor.from(randn(12, 4), [3, 4]);
  a.requiresGrad = true;
  tidy(() => backward(sum(mul(scale(a, 2).reshape([2, 6]), Tensor.from(randn(6, 5), [6])))));
  const b = randn(6, 5);
  const want = Array.from({ length: 12 }, (_, i) => 2 * b[i % 6]);
  assertClose(a.grad!.toFloat32(), want, 1e-6, 'grad through reshape');
  a.dispose();
});

test('a kernel tracer sees each kernel call once, after it is set and until it is removed', () => {
  const a = Tensor.from([1, 2, 3], [3]);
  const seen: string[] = [];
  let open = 0;
  traceKernels('cpu', (name) => {
    seen.push(name);
    open++;
    return () => open--;
  });
  try {
    const y = mul(add(a, a), a);
    assert.deepEqual(Array.from(y.toFloat32()), [2, 8, 18]);
    y.dispose();
  } finally {
    traceKernels('cpu', null);
  }
  assert.deepEqual(seen, ['add', 'mul']);
  assert.equal(open, 0, 'every call was closed');
  add(a, a).dispose();
  assert.equal(seen.length, 2, 'removed tracers see nothing');
  a.dispose();
});

test('add/mul/scale/axpy kernels on every path: tails, broadcast rows split across threads', () => {
  const start = cpuPath().isa;
  try {
    for (const isa of cpuPath().supported) {
      useCpuIsa(isa);
      // n > 2·2¹⁴ so two threads split it mid-row; nb = 1 (a scalar), an odd row, the whole tensor
      for (const [rows, nb] of [
        [38_147, 1],
        [37, 1031],
        [1, 40_009],
        [3, 5],
      ]) {
        const n = rows * nb;
        const a = Float32Array.from(randn(n, rows));
        const b = Float32Array.from(randn(nb, nb));
        const out = new Float32Array(n);
        cpu.addF32(out, a, b, n, nb);
        let bad = out.findIndex((v, i) => v !== Math.fround(a[i] + b[i % nb]));
        assert.equal(bad, -1, `${isa} add ${rows}x${nb} at ${bad}`);
        cpu.mulF32(out, a, b, n, nb);
        bad = out.findIndex((v, i) => v !== Math.fround(a[i] * b[i % nb]));
        assert.equal(bad, -1, `${isa} mul ${rows}x${nb} at ${bad}`);
        cpu.scaleF32(out, a, 0.3, n);
        bad = out.findIndex((v, i) => v !== Math.fround(Math.fround(0.3) * a[i]));
        assert.equal(bad, -1, `${isa} scale ${n} at ${bad}`);
        const y = Float32Array.from(b.length === n ? b : randn(n, 3));
        const y0 = Float64Array.from(y);
        cpu.axpyF32(y, a, -1.5, n);
        assertClose(
          y,
          y0.map((v, i) => v - 1.5 * a[i]),
          1e-6,
          `${isa} axpy ${n}`,
        );
      }
    }
  } finally {
    useCpuIsa(start);
  }
});

test('f32 <-> bf16 casts are bit-identical to the reference on every path (round to nearest even, NaN quiet)', () => {
  const start = cpuPath().isa;
  const n = 40_011; // whole vectors, a tail, two threads' chunks
  const bits = new Uint32Array(n);
  const r = rng(77);
  for (let i = 0; i < n; i++) bits[i] = Math.floor(r() * 2 ** 32) >>> 0;
  // ties to even both ways, NaNs (signalling, negative, payload in the dropped half), infinities,
  // zeros, subnormals, the largest float (rounds to inf), placed at the start and in the tail
  const special = [
    0x3f808000, 0x3f818000, 0xbf808000, 0x3f807fff, 0x3f808001, 0x7f800001, 0xff800001, 0x7fc00000,
    0x7f800000, 0xff800000, 0x00000000, 0x80000000, 0x00000001, 0x007fffff, 0x7f7fffff, 0xff7fffff,
    0x7f808000, 0x7fff8000,
  ];
  special.forEach((u, k) => {
    bits[k] = u;
    bits[n - 1 - k] = u;
  });
  const x = new Float32Array(bits.buffer);
  const want = Uint16Array.from(x, (v, i) => {
    const u = bits[i];
    if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) return ((u >>> 16) | 0x40) & 0xffff;
    return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
  });
  try {
    for (const isa of cpuPath().supported) {
      useCpuIsa(isa);
      const h = new Uint16Array(n);
      cpu.f32ToBf16(h, x, n);
      const bad = h.findIndex((v, i) => v !== want[i]);
      assert.equal(bad, -1, `${isa} f32ToBf16 of 0x${bits[bad]?.toString(16)}: ${h[bad]?.toString(16)}`);
      const back = new Float32Array(n);
      cpu.bf16ToF32(back, h, n);
      const backBits = new Uint32Array(back.buffer);
      const wrong = backBits.findIndex((u, i) => u !== h[i] * 65536);
      assert.equal(wrong, -1, `${isa} bf16ToF32 at ${wrong}`);
    }
  } finally {
    useCpuIsa(start);
  }
});
