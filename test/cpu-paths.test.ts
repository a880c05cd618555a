import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { cpu, cpuPath, describeCpuPath, useCpuIsa } from '../src/backend/cpu/addon.js';
import { swiglu } from '../src/ops/swiglu.js';
import { Tensor, tidy } from '../src/tensor/tensor.js';
import { assertClose, projectRoot, randn } from './helpers.js';

test('the kernel path in use is the one LORAKIT_CPU_ISA names, else the best the CPU supports', () => {
  const path = cpuPath();
  assert.ok(
    path.supported.length >= 1 && path.supported.at(-1) === 'portable',
    `supported: ${path.supported}`,
  );
  const forced = process.env.LORAKIT_CPU_ISA;
  assert.equal(cpu.isa(), forced ?? path.supported[0]);
  assert.equal(path.isa, cpu.isa());
  assert.match(describeCpuPath(), new RegExp(`^CPU kernels: ${path.isa} \\(`));
  // What the CPU reports decides the order: AVX-512 needs AVX2, and x86 always has a path.
  if (path.supported.includes('avx512')) assert.ok(path.cpu.flags.includes('avx2'));
  if (path.cpu.arch === 'x64') assert.ok(path.cpu.family > 0, 'cpuid family');
});

test('every supported path computes the same op against float64, switched in one process', () => {
  const start = cpuPath().isa;
  const n = 4099;
  const g = Float32Array.from(randn(n, 11, 4));
  const u = Float32Array.from(randn(n, 12));
  const want = Float64Array.from(g, (x, i) => (x / (1 + Math.exp(-x))) * u[i]);
  try {
    for (const isa of cpuPath().supported) {
      useCpuIsa(isa);
      assert.equal(cpu.isa(), isa);
      tidy(() => assertClose(swiglu(Tensor.from(g, [n]), Tensor.from(u, [n])).toFloat32(), want, 1e-6, isa));
    }
  } finally {
    useCpuIsa(start);
  }
});

test('a path this machine cannot run, or no such path, is one clear sentence and exit 1', () => {
  const unknown = process.arch === 'arm64' ? 'avx2' : 'neon';
  for (const [value, pattern] of [
    [
      unknown,
      new RegExp(
        `^lorakit: LORAKIT_CPU_ISA=${unknown} is not a CPU kernel path on ${process.arch}; choose one of `,
      ),
    ],
    ['AVX2', /^lorakit: LORAKIT_CPU_ISA=AVX2 is not a CPU kernel path/],
  ] as const) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/lorakit-cli.mts', 'info'], {
      cwd: projectRoot,
      env: { ...process.env, LORAKIT_CPU_ISA: value },
      encoding: 'utf8',
    });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, pattern);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  assert.throws(() => useCpuIsa('sse9'), /useCpuIsa=sse9 is not a CPU kernel path/);
});

test('lorakit info --json names the path, the CPU and its flags', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/lorakit-cli.mts', 'info', '--json'], {
    cwd: projectRoot,
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const info = JSON.parse(r.stdout) as { cpu: { isa: string; cpu: { flags: string[]; modelName: string } } };
  assert.equal(info.cpu.isa, cpuPath().isa);
  assert.deepEqual(info.cpu.cpu.flags, cpuPath().cpu.flags);
  assert.ok(info.cpu.cpu.modelName.length > 0);
});
