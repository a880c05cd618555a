#!/usr/bin/env node
// Runs the kernel tests (KERNEL_TESTS of scripts/test-cpu-paths.ts) on the arm64 build of the CPU addon,
// under qemu-user with an arm64 Node, once per arm64 kernel path of native/cpu/isa/isas.json. Called by
// scripts/arm64/test.sh after the cross build; checks correctness only (nothing here is timed).
//   node scripts/arm64/run-tests.mjs [--build build-arm64] [path...]
// Each test file is bundled with its src/ imports by esbuild (tsx's own esbuild binary is x86-64, so
// tsx cannot run inside the emulated Node) and run directly with `node file.mjs`: `node --test` would
// start each file in a child process of process.execPath, an arm64 binary the host cannot exec without
// a binfmt handler, which containers rarely have.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const sysroot = process.env.LORAKIT_ARM64_SYSROOT || '/usr/aarch64-linux-gnu';
const node = join(root, '.cache', 'arm64', 'node', 'bin', 'node');
const args = process.argv.slice(2);
const buildArg = args.indexOf('--build');
const buildDir = resolve(root, buildArg >= 0 ? args.splice(buildArg, 2)[1] : 'build-arm64');
const arm64Paths = JSON.parse(readFileSync(join(root, 'native', 'cpu', 'isa', 'isas.json'), 'utf8'))
  .isas.filter((i) => i.arch === 'arm64')
  .map((i) => i.name);
const paths = args.length > 0 ? args : arm64Paths;

// Tests that cannot run under user-mode emulation, by name, with the reason their output shows as skipped.
const SKIP = {
  // These start `process.execPath --import tsx test/lorakit-cli.mts`: an arm64 binary the host cannot
  // exec without binfmt, and tsx would need an arm64 esbuild binary.
  'a path this machine cannot run, or no such path, is one clear sentence and exit 1':
    'starts the CLI in a child Node, which the emulator cannot exec',
  'lorakit info --json names the path, the CPU and its flags':
    'starts the CLI in a child Node, which the emulator cannot exec',
  // Prints a timing only; emulated speed means nothing, and it is the slowest test under qemu.
  'attention performance (B=1, T=512, Hq=8, Hkv=4, D=64), printed only': 'a timing, meaningless under qemu',
};

// Node 20's --test-name-pattern cannot exclude (a top-level test also runs when the root test's name
// matches), so the bundles import node:test through this module, which marks the tests above skipped.
const testShim = `
import * as nodeTest from 'node:test';
export * from 'node:test';
const skip = new Map(Object.entries(${JSON.stringify(SKIP)}));
export function test(name, ...rest) {
  const why = skip.get(name);
  if (why === undefined) return nodeTest.test(name, ...rest);
  const options = rest.find((a) => a && typeof a === 'object') ?? {};
  return nodeTest.test(name, { ...options, skip: 'under qemu: ' + why }, () => {});
}
Object.assign(test, { skip: nodeTest.test.skip, todo: nodeTest.test.todo, only: nodeTest.test.only });
export default test;
`;
const skipPlugin = {
  name: 'lorakit-arm64-skip',
  setup(b) {
    b.onResolve({ filter: /^node:test$/ }, (a) =>
      a.namespace === 'lorakit-arm64-skip'
        ? { path: 'node:test', external: true }
        : { path: 'node:test', namespace: 'lorakit-arm64-skip' },
    );
    b.onLoad({ filter: /.*/, namespace: 'lorakit-arm64-skip' }, () => ({ contents: testShim, loader: 'js' }));
  },
};

/** The kernel test files, read from scripts/test-cpu-paths.ts (importing it would run it). */
function kernelTests() {
  const src = readFileSync(join(root, 'scripts', 'test-cpu-paths.ts'), 'utf8');
  const list = /export const KERNEL_TESTS = \[([^\]]*)\]/.exec(src);
  if (!list) throw new Error('KERNEL_TESTS not found in scripts/test-cpu-paths.ts');
  return [...list[1].matchAll(/'([^']+)'/g)].map((m) => m[1]);
}

// Longest first under qemu (measured), so that the parallel runs end together.
const SLOW_FIRST = ['matmul', 'attention', 'autograd', 'optim', 'quant', 'embedding'];

async function main() {
  for (const f of [node, join(sysroot, 'lib', 'ld-linux-aarch64.so.1')])
    if (!existsSync(f)) throw new Error(`${f} is missing: run scripts/arm64/setup.sh`);
  for (const p of paths)
    if (!existsSync(join(buildDir, `lorakit_cpu-${p}.node`)))
      throw new Error(`${buildDir}/lorakit_cpu-${p}.node is missing: run scripts/arm64/test.sh`);
  const names = kernelTests().sort((a, b) => rank(a) - rank(b));

  // The bundles go straight into buildDir, one folder below the package root as test/ is, so that
  // test/helpers.ts finds the root, test/fixtures and ../shared/data from import.meta.url as on the host.
  await build({
    entryPoints: names.map((n) => join(root, 'test', `${n}.test.ts`)),
    outdir: buildDir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['node:*', '*.node'],
    // A CommonJS dependency bundled into ESM calls require(); give the bundle one.
    banner: {
      js: "import { createRequire as __lkCreateRequire } from 'node:module'; const require = __lkCreateRequire(import.meta.url);",
    },
    plugins: [skipPlugin],
    logLevel: 'warning',
  });

  const jobs = paths.flatMap((isa) => names.map((name) => ({ isa, name })));
  const results = [];
  const queue = [...jobs];
  const started = Date.now();
  await Promise.all(
    Array.from({ length: Math.min(availableParallelism(), queue.length) }, async () => {
      for (let job = queue.shift(); job; job = queue.shift()) results.push(await runOne(job));
    }),
  );

  let failedFiles = 0;
  const total = { pass: 0, fail: 0, skipped: 0 };
  for (const isa of paths) {
    const mine = results.filter((r) => r.isa === isa);
    const sum = { pass: 0, fail: 0, skipped: 0 };
    for (const r of mine) for (const k of Object.keys(sum)) sum[k] += r.counts[k];
    for (const k of Object.keys(total)) total[k] += sum[k];
    const bad = mine.filter((r) => !r.ok).map((r) => r.name);
    failedFiles += bad.length;
    process.stdout.write(
      `arm64 ${isa}: ${sum.pass} passed, ${sum.fail} failed, ${sum.skipped} skipped` +
        (bad.length > 0 ? `; failing files: ${bad.join(', ')}` : '') +
        '\n',
    );
  }
  process.stdout.write(`arm64 kernel tests took ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  process.stdout.write(`arm64: ${total.pass} passed, ${total.fail} failed, ${total.skipped} skipped\n`);
  process.exit(failedFiles > 0 ? 1 : 0);
}

function rank(name) {
  const i = SLOW_FIRST.indexOf(name.replace(/^test\/|\.test\.ts$/g, ''));
  return i < 0 ? SLOW_FIRST.length : i;
}

/** Runs one bundled test file on one path; prints its summary line, and its whole output on failure. */
function runOne({ isa, name }) {
  const base = name.replace(/^test\/|\.test\.ts$/g, '');
  const file = join(buildDir, `${base}.test.mjs`);
  const t0 = Date.now();
  return new Promise((done) => {
    const child = spawn('qemu-aarch64', ['-L', sysroot, node, '--test-reporter=tap', file], {
      cwd: root,
      env: { ...process.env, LORAKIT_CPU_ISA: isa, LORAKIT_CPU_BUILD_DIR: buildDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code, signal) => {
      const count = (k) => Number(new RegExp(`^# ${k} (\\d+)$`, 'm').exec(out)?.[1] ?? 0);
      const counts = { pass: count('pass'), fail: count('fail'), skipped: count('skipped') };
      // A crash (a fault in the addon, an illegal instruction) ends the file with no summary.
      const ok = code === 0 && counts.fail === 0 && counts.pass > 0;
      const secs = ((Date.now() - t0) / 1000).toFixed(1);
      const failing = [...out.matchAll(/^not ok \d+ - (.*)$/gm)].map((m) => m[1]);
      process.stdout.write(
        `${ok ? 'ok' : 'FAIL'} ${isa} ${base}: ${counts.pass} passed, ${counts.fail} failed, ` +
          `${counts.skipped} skipped (${secs} s)` +
          (signal ? ` killed by ${signal}` : code !== 0 ? ` exit ${code}` : '') +
          '\n',
      );
      if (!ok) {
        for (const t of failing) process.stdout.write(`  not ok: ${t}\n`);
        process.stdout.write(out.replace(/^/gm, `  | `) + '\n');
      }
      done({ isa, name: base, ok, counts });
    });
  });
}

main().catch((err) => {
  process.stderr.write(`arm64 tests: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
