// The op declarations (src/ops/spec/) against what is built from them or beside them: the generated
// CUDA wrappers are current, the CPU addon's hand-written entry points take the declared arguments,
// and every op has a CPU kernel.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import { cpu } from '../src/backend/cpu/addon.js';
import { hasKernel } from '../src/backend/kernels.js';
import { CPU_BINDINGS, CUDA_BINDINGS, hostArity, OPS, parameters } from '../src/ops/spec/index.js';
import { projectRoot } from './helpers.js';

test('native/cuda/addon_bindings.inc is what scripts/gen-bindings.mjs makes of the declarations', () => {
  const gen = spawnSync(process.execPath, [join(projectRoot, 'scripts', 'gen-bindings.mjs'), '--check'], {
    encoding: 'utf8',
  });
  assert.equal(gen.status, 0, gen.stderr);
});

test('the CPU addon exports every declared entry point with the declared number of arguments', () => {
  for (const [name, binding] of Object.entries(CPU_BINDINGS)) {
    const declared = parameters(binding.signature).reduce((n, p) => n + hostArity(p.kind), 0);
    assert.equal(typeof cpu[name as keyof typeof CPU_BINDINGS], 'function', `${name} is not exported`);
    assert.equal(cpu.arities[name], declared, `${name}: native/cpu takes ${cpu.arities[name]} arguments`);
  }
});

test('every declared op has a CPU kernel', () => {
  for (const name of Object.keys(OPS) as (keyof typeof OPS)[]) assert.ok(hasKernel('cpu', name), name);
});

test('the built CUDA addon exports every declared entry point', (t) => {
  const path = join(projectRoot, 'build', 'lorakit_cuda.node');
  if (!existsSync(path)) return t.skip('the CUDA addon is not built');
  const addon = createRequire(import.meta.url)(path) as Record<string, unknown>;
  for (const name of Object.keys(CUDA_BINDINGS)) assert.equal(typeof addon[name], 'function', name);
});
