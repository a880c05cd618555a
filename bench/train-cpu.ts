// CPU LoRA training throughput and peak memory: lorakit next to PyTorch + PEFT on the same model
// (SmolLM2-135M-Instruct from its GGUF, fp32), the same token batches, LoRA settings, optimizer and
// thread count, measured in one run. Usage:
// lorakit runs once per CPU kernel path (--paths, default every SIMD path this CPU supports), each in
// its own process with LORAKIT_CPU_ISA set. Usage:
//   node --import tsx bench/train-cpu.ts [--steps 6] [--batch-size 8] [--seq-len 256] [--r 16] [--checkpointing] [--paths avx512,avx2]
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuPath, describeCpuPath } from '../src/backend/cpu/addon.js';
import { readGGUF } from '../src/io/gguf.js';
import { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { loadData } from '../src/train/data.js';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '6' },
    'batch-size': { type: 'string', default: '8' },
    'seq-len': { type: 'string', default: '256' },
    r: { type: 'string', default: '16' },
    checkpointing: { type: 'boolean', default: false },
    paths: { type: 'string' },
  },
});
const root = new URL('..', import.meta.url).pathname;
const gguf = execFileSync('bash', [join(root, 'scripts/fetch-smollm2.sh')], { encoding: 'utf8' }).trim();
const python = existsSync(join(root, '.venv-ref/bin/python'))
  ? join(root, '.venv-ref/bin/python')
  : 'python3';
const steps = Number(values.steps);
const B = Number(values['batch-size']);
const T = Number(values['seq-len']);
const threads = availableParallelism();

// The same batches for both: order rows of the example dataset, packed into full-length rows.
const tokenizer = Tokenizer.fromGGUF((await readGGUF(gguf)).metadata);
const { examples } = await loadData(join(root, 'examples/orders/train.jsonl'), tokenizer, {
  completionOnly: false,
  maxSeqLen: T,
});
const stream = examples.flatMap((e) => e.ids);
const batches = Array.from({ length: steps }, (_, s) => {
  const ids = Array.from({ length: B }, (_, b) => {
    const start = ((s * B + b) * T) % Math.max(1, stream.length - T);
    return stream.slice(start, start + T);
  });
  return { ids, mask: ids.map((r) => r.map(() => 1)), labels: ids };
});
const dir = mkdtempSync(join(tmpdir(), 'lorakit-bench-'));
const batchesPath = join(dir, 'batches.json');
writeFileSync(batchesPath, JSON.stringify(batches));

function runJson(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): { tokens_per_s: number; peak_rss: number; peak_tensor_bytes?: number; torch_version?: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}
const threadEnv = { OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) };
const paths = values.paths?.split(',') ?? cpuPath().supported.filter((p) => p !== 'portable');
const ours = paths.map((isa) => ({
  isa,
  ...runJson(
    process.execPath,
    [
      '--import',
      'tsx',
      join(root, 'bench/train-cpu-worker.ts'),
      gguf,
      batchesPath,
      values.r!,
      values.checkpointing ? '1' : '0',
    ],
    { ...threadEnv, LORAKIT_CPU_ISA: isa },
  ),
}));
const torch = runJson(
  python,
  [
    join(root, 'bench/train_cpu_torch.py'),
    '--gguf',
    gguf,
    '--batches',
    batchesPath,
    '--threads',
    String(threads),
    '--r',
    values.r!,
    ...(values.checkpointing ? ['--checkpointing'] : []),
  ],
  threadEnv,
);

const mib = (b: number) => (b / 2 ** 20).toFixed(0);
console.log(
  `CPU LoRA training, SmolLM2-135M fp32, r=${values.r} all-linear, batch ${B} x ${T} tokens, ${steps} steps (first excluded), ${threads} threads${values.checkpointing ? ', activation checkpointing' : ''}`,
);
console.log(`machine: ${describeCpuPath()}; PyTorch ${torch.torch_version ?? '?'}`);
console.log('| | tokens/s | peak RSS (MiB) | speed vs PyTorch | memory vs PyTorch |');
console.log('|---|---|---|---|---|');
for (const o of ours)
  console.log(
    `| lorakit, ${o.isa} path | ${o.tokens_per_s.toFixed(0)} | ${mib(o.peak_rss)} | ${(o.tokens_per_s / torch.tokens_per_s).toFixed(2)}x | ${(o.peak_rss / torch.peak_rss).toFixed(2)}x |`,
  );
console.log(`| PyTorch + PEFT | ${torch.tokens_per_s.toFixed(0)} | ${mib(torch.peak_rss)} | 1.00x | 1.00x |`);
