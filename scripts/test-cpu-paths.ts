// Runs the kernel and op tests once more on every other CPU kernel path this machine supports (the
// main `npm test` run covers the best one): on an AVX-512 machine, avx2 and portable; each run checks
// the same float64 references. `node --import tsx scripts/test-cpu-paths.ts [path...]`.
import { spawnSync } from 'node:child_process';
import { cpuPath } from '../src/backend/cpu/addon.js';

export const KERNEL_TESTS = [
  'attention',
  'autograd',
  'cpu-paths',
  'cross-entropy',
  'decode-kernels',
  'dropout',
  'elementwise',
  'embedding',
  'gguf',
  'lora-linear',
  'matmul',
  'optim',
  'quant',
  'rmsnorm',
  'rope',
  'swiglu',
].map((name) => `test/${name}.test.ts`);

const { supported } = cpuPath();
const asked = process.argv.slice(2);
const paths = asked.length > 0 ? asked : supported.slice(1);
let failed = 0;
for (const isa of paths) {
  process.stdout.write(`== kernel tests on the ${isa} path\n`);
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-concurrency=1', ...KERNEL_TESTS],
    {
      env: { ...process.env, LORAKIT_CPU_ISA: isa },
      encoding: 'utf8',
    },
  );
  const out = r.stdout + r.stderr;
  const summary = out.split('\n').filter((l) => /^# (tests|pass|fail) /.test(l) || /^not ok/.test(l));
  process.stdout.write(`${summary.join('\n')}\n`);
  if (r.status !== 0) {
    failed++;
    process.stdout.write(out);
  }
}
process.exit(failed > 0 ? 1 : 0);
