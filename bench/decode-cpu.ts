// Batch-1 greedy decode on the CPU: lorakit against llama.cpp (node-llama-cpp) on SmolLM2-135M-Instruct,
// both with the same thread count. lorakit bf16 weights run against llama.cpp on the f16 GGUF that
// lorakit's export writes, lorakit int8 weights (--quantize int8) against the q8_0 GGUF. Load and
// prefill (the prompt, up to the first new token) are timed apart from decode: decode tokens/s counts
// tokens 2..N over the time from the first new token to the last. CPU ms/tok is the process's CPU time
// (all threads) per decode token: steadier than tok/s when other work shares the cores, though
// llama.cpp's count includes its threads spinning at barriers (lorakit's OpenMP threads sleep).
//
//   node --import tsx bench/decode-cpu.ts [--tokens 64] [--threads 2] [--repeat 3] [--paths avx512,avx2]
//        [--model PATH.gguf] [--no-llama] [--no-op-by-op]
//
// The model defaults to SmolLM2-135M-Instruct (scripts/fetch-smollm2.sh fetches it into .cache/models);
// the exports go to .cache/bench-decode/. --paths adds lorakit rows per CPU kernel path (useCpuIsa).
// Each lorakit row also runs op by op (generateIds with fastDecode false: the path before DecodeStep)
// unless --no-op-by-op.
import { execSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpu, cpuPath, describeCpuPath, useCpuIsa } from '../src/backend/cpu/addon.js';
import { exportGGUF } from '../src/export/gguf.js';
import { generateIds } from '../src/infer/generate.js';
import { GREEDY, Sampler } from '../src/infer/sampling.js';
import { loadModel, type LoadedModel, type LoadOptions } from '../src/models/load.js';

const root = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
const { values: a } = parseArgs({
  options: {
    model: { type: 'string' },
    tokens: { type: 'string', default: '64' },
    threads: { type: 'string', default: '2' },
    repeat: { type: 'string', default: '3' },
    paths: { type: 'string' },
    'no-llama': { type: 'boolean', default: false },
    'no-op-by-op': { type: 'boolean', default: false },
  },
});
const N = Number(a.tokens);
const threads = Number(a.threads);
const repeat = Number(a.repeat);
const PROMPT = 'Write a short story about a robot who learns to paint. Once upon a time,';
const AGREE = 8; // tokens that must agree before the comparison is called a match

function smolPath(): string {
  if (a.model) return a.model;
  const r = spawnSync('bash', [join(root, 'scripts', 'fetch-smollm2.sh')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`scripts/fetch-smollm2.sh failed:\n${r.stderr}`);
  return r.stdout.trim().split('\n').pop()!;
}

interface Timing {
  loadS: number;
  prefillS: number;
  decodeTokS: number;
  /** CPU time (all threads) per decode token, ms: steadier than tok/s on a shared machine. */
  cpuMsPerTok: number;
  tokens: number[];
}

// Decode-phase clocks: wall stamps per token, and CPU time from the first token to the last.
class Clock {
  readonly stamps: number[] = [];
  private cpu0 = 0;
  private cpu1 = 0;
  tick(): void {
    this.stamps.push(performance.now());
    const u = process.cpuUsage();
    const us = u.user + u.system;
    if (this.stamps.length === 1) this.cpu0 = us;
    this.cpu1 = us;
  }
  result(start: number, tokens: number[]): Omit<Timing, 'loadS'> {
    const st = this.stamps;
    return {
      prefillS: (st[0] - start) / 1000,
      decodeTokS: ((st.length - 1) * 1000) / (st[st.length - 1] - st[0]),
      cpuMsPerTok: (this.cpu1 - this.cpu0) / 1000 / (st.length - 1),
      tokens,
    };
  }
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

// One greedy run: prefill time = start to the first new token, decode = tokens 2..N.
function lorakitRun(m: LoadedModel, ids: number[], fastDecode: boolean): Omit<Timing, 'loadS'> {
  const clock = new Clock();
  const t0 = performance.now();
  const { tokenIds } = generateIds(m.model, ids, {
    maxNewTokens: N,
    sampler: new Sampler(GREEDY),
    eos: new Set(),
    fastDecode,
    onNext: () => {
      clock.tick();
      return false;
    },
  });
  return clock.result(t0, tokenIds);
}

async function lorakit(file: string, opts: LoadOptions, ids: number[], fastDecode: boolean): Promise<Timing> {
  const t0 = performance.now();
  const m = await loadModel(file, opts);
  const loadS = (performance.now() - t0) / 1000;
  try {
    lorakitRun(m, ids.slice(0, 4), fastDecode); // warm-up: first-touch of weights and buffers
    const runs = Array.from({ length: repeat }, () => lorakitRun(m, ids, fastDecode));
    return {
      loadS,
      prefillS: median(runs.map((r) => r.prefillS)),
      decodeTokS: median(runs.map((r) => r.decodeTokS)),
      cpuMsPerTok: median(runs.map((r) => r.cpuMsPerTok)),
      tokens: runs[0].tokens,
    };
  } finally {
    m.model.dispose();
  }
}

type LlamaModule = typeof import('node-llama-cpp');
async function llamaCpp(mod: LlamaModule, file: string, ids: number[]): Promise<Timing> {
  const llama = await mod.getLlama({
    gpu: false,
    build: 'never',
    progressLogs: false,
    logLevel: mod.LlamaLogLevel.error,
  });
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: file });
  const loadS = (performance.now() - t0) / 1000;
  try {
    const ctx = await model.createContext({ contextSize: 512, batchSize: 512, threads });
    const once = async (n: number) => {
      const seq = ctx.getSequence();
      const clock = new Clock();
      const out: number[] = [];
      const s0 = performance.now();
      for await (const tok of seq.evaluate(
        ids.map((i) => i as never),
        { temperature: 0 },
      )) {
        clock.tick();
        out.push(Number(tok));
        if (out.length >= n) break;
      }
      seq.dispose();
      return clock.result(s0, out);
    };
    await once(4);
    const runs = [];
    for (let i = 0; i < repeat; i++) runs.push(await once(N));
    await ctx.dispose();
    return {
      loadS,
      prefillS: median(runs.map((r) => r.prefillS)),
      decodeTokS: median(runs.map((r) => r.decodeTokS)),
      cpuMsPerTok: median(runs.map((r) => r.cpuMsPerTok)),
      tokens: runs[0].tokens,
    };
  } finally {
    await model.dispose();
  }
}

function agreement(x: number[], y: number[]): string {
  let same = 0;
  while (same < Math.min(x.length, y.length) && x[same] === y[same]) same++;
  return `${same}/${Math.min(x.length, y.length)}${same >= Math.min(AGREE, x.length) ? '' : ' (DIVERGES EARLY)'}`;
}

async function main(): Promise<void> {
  cpu.setThreads(threads);
  const src = smolPath();
  const work = join(root, '.cache', 'bench-decode');
  mkdirSync(work, { recursive: true });
  const f16 = join(work, 'smollm2-f16.gguf');
  const q8 = join(work, 'smollm2-q8_0.gguf');
  if (!existsSync(f16) || !existsSync(q8)) {
    const m = await loadModel(src);
    try {
      await exportGGUF(m.model, m.tokenizer, m.path, f16, { quant: 'f16' });
      await exportGGUF(m.model, m.tokenizer, m.path, q8, { quant: 'q8_0' });
    } finally {
      m.model.dispose();
    }
  }
  const { tokenizer } = await loadModel(f16, { dtype: 'bfloat16' }).then((m) => {
    m.model.dispose();
    return m;
  });
  const ids = tokenizer.encode(PROMPT);
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { cwd: root, encoding: 'utf8' }).trim();
    if (execSync('git status --porcelain --untracked-files=no', { cwd: root, encoding: 'utf8' }).trim())
      commit += '+dirty';
  } catch {}
  console.log(`# batch-1 greedy decode, ${N} new tokens, ${threads} threads, prompt ${ids.length} tokens`);
  console.log(
    `# model ${src} (exported to f16 and q8_0 GGUF); commit ${commit}; ${new Date().toISOString()}`,
  );
  console.log(`# ${describeCpuPath()}`);
  console.log(`# median of ${repeat} runs after a warm-up; decode tok/s = tokens 2..N over their time`);

  const mod: LlamaModule | null = a['no-llama'] ? null : await import('node-llama-cpp').catch(() => null);
  const paths = a.paths ? a.paths.split(',') : [cpuPath().isa];
  const rows: { name: string; t: Timing; ref?: Timing }[] = [];
  const llamaF16 = mod ? await llamaCpp(mod, f16, ids) : undefined;
  const llamaQ8 = mod ? await llamaCpp(mod, q8, ids) : undefined;
  // Each lorakit row twice: op by op (what generate did before DecodeStep) and through DecodeStep.
  const ways: [string, boolean][] = a['no-op-by-op']
    ? [['', true]]
    : [
        [' op-by-op', false],
        ['', true],
      ];
  for (const p of paths) {
    useCpuIsa(p);
    for (const [what, fast] of ways)
      rows.push({
        name: `lorakit bf16${what} [${p}]`,
        t: await lorakit(f16, { dtype: 'bfloat16' }, ids, fast),
        ref: llamaF16,
      });
    for (const [what, fast] of ways)
      rows.push({
        name: `lorakit int8${what} [${p}]`,
        t: await lorakit(f16, { dtype: 'bfloat16', quantize: 'int8' }, ids, fast),
        ref: llamaQ8,
      });
  }
  if (llamaF16) rows.push({ name: 'llama.cpp f16', t: llamaF16 });
  if (llamaQ8) rows.push({ name: 'llama.cpp q8_0', t: llamaQ8 });

  const head = ['', 'load s', 'prefill s', 'decode tok/s', 'vs llama.cpp', 'CPU ms/tok', 'greedy agreement'];
  const table = rows.map((r) => [
    r.name,
    r.t.loadS.toFixed(2),
    r.t.prefillS.toFixed(3),
    r.t.decodeTokS.toFixed(1),
    r.ref ? (r.t.decodeTokS / r.ref.decodeTokS).toFixed(2) : '',
    r.t.cpuMsPerTok.toFixed(1),
    r.ref ? agreement(r.t.tokens, r.ref.tokens) : '',
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
  const line = (r: string[]) =>
    `| ${r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(' | ')} |`;
  console.log(line(head));
  console.log(`|${w.map((n, i) => (i === 0 ? '-'.repeat(n + 2) : '-'.repeat(n + 1) + ':')).join('|')}|`);
  for (const r of table) console.log(line(r));
  console.log(`\nlorakit tokens (first 16): ${rows[0].t.tokens.slice(0, 16).join(',')}`);
  if (llamaF16) console.log(`llama.cpp f16 tokens (first 16): ${llamaF16.tokens.slice(0, 16).join(',')}`);
}

await main();
