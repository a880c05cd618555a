// Load test of `lorakit serve` on loopback: many concurrent clients (the official openai client,
// streaming) mixing several LoRA adapters over one base model. Reports failures, p50/p99 latency,
// time to first token and tokens/s, then runs the same load against a server that may only batch one
// adapter at a time (--batch-policy single-adapter) and reports mixed-adapter batching's throughput
// as a ratio of that.
//
//   node --import tsx bench/serve.ts [--model PATH] [--dtype float32|bfloat16] [--clients 32]
//        [--requests 4] [--adapters 4] [--max-tokens 32] [--max-batch 32] [--rank 16]
//
// The model defaults to SmolLM2-135M-Instruct (scripts/fetch-smollm2.sh), else the tiny test fixture.
import { describeCpuPath } from '../src/backend/cpu/addon.js';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildCli } from './build-cli.js';
import OpenAI from 'openai';
import { loadModel } from '../src/models/load.js';
import { adapterParameters, addAdapter, saveAdapter } from '../src/peft/adapters.js';
import { LORA_DEFAULTS } from '../src/peft/config.js';

const root = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
const { values: a } = parseArgs({
  options: {
    model: { type: 'string' },
    dtype: { type: 'string', default: 'bfloat16' },
    clients: { type: 'string', default: '32' },
    requests: { type: 'string', default: '4' },
    adapters: { type: 'string', default: '4' },
    'max-tokens': { type: 'string', default: '32' },
    'max-batch': { type: 'string', default: '32' },
    rank: { type: 'string', default: '16' },
    repeat: { type: 'string', default: '1' },
    'from-source': { type: 'boolean', default: false },
  },
});
const smol = join(root, '.cache', 'models', 'SmolLM2-135M-Instruct.Q4_1.gguf');
const model = a.model ?? (existsSync(smol) ? smol : join(root, 'test', 'fixtures', 'models', 'llama'));
const clients = Number(a.clients);
const perClient = Number(a.requests);
const nAdapters = Number(a.adapters);
const maxTokens = Number(a['max-tokens']);
const work = mkdtempSync(join(tmpdir(), 'lorakit-bench-serve-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

// Random adapters on every linear (B non-zero, so each really changes the output).
async function makeAdapters(): Promise<string[]> {
  const { model: m } = await loadModel(model, { dtype: 'bfloat16' });
  const dirs: string[] = [];
  for (let i = 0; i < nAdapters; i++) {
    const name = `a${i}`;
    addAdapter(
      m,
      name,
      { ...LORA_DEFAULTS, r: Number(a.rank), alpha: 2 * Number(a.rank), targetModules: 'all-linear' },
      i + 1,
    );
    for (const [k, t] of adapterParameters(m, name))
      if (k.includes('lora_B')) t.as('f32').forEach((_, j, arr) => (arr[j] = Math.sin(j + i) * 0.01));
    const dir = join(work, name);
    await saveAdapter(m, name, dir);
    dirs.push(dir);
  }
  m.dispose();
  return dirs;
}

const cli = buildCli(root, 'bench-serve', a['from-source'] === true);

async function startServer(policy: string, dirs: string[]): Promise<{ child: ChildProcess; url: string }> {
  const args = [...cli, 'serve', '--model', model, '--dtype', a.dtype!, '--port', '0', '--quiet'];
  args.push(
    '--max-batch',
    a['max-batch']!,
    '--batch-policy',
    policy,
    ...dirs.flatMap((d, i) => ['--adapter', `a${i}=${d}`]),
  );
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 1200 && !/listening on (\S+)\/v1/.test(out); i++) {
    if (child.exitCode !== null) throw new Error(`server exited: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const url = /listening on (\S+)\/v1/.exec(out)?.[1];
  if (!url) throw new Error(`server did not start: ${out}`);
  return { child, url };
}

const QUESTIONS = [
  'What is the capital of France?',
  'Write a haiku about the sea.',
  'Explain in one sentence what a LoRA adapter is.',
  'List three fruits that are red.',
  'How many legs does a spider have, and why?',
  'Translate "good morning" into Spanish, French and German.',
  'Give me a short tip for writing clean code.',
  'Summarize the plot of Romeo and Juliet in two sentences.',
];

interface Sample {
  latencyMs: number;
  ttftMs: number;
  tokens: number;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function load(
  url: string,
): Promise<{ samples: Sample[]; failures: number; wallS: number; meanBatch: number }> {
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 600_000 });
  const one = async (adapter: number, q: number): Promise<Sample> => {
    const t0 = performance.now();
    let ttft = 0;
    let tokens = 0;
    const body = {
      model: `a${adapter}`,
      messages: [{ role: 'user', content: QUESTIONS[q % QUESTIONS.length] }],
      max_tokens: maxTokens,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
      ignore_eos: true, // every request generates max_tokens: equal work in both runs
    } as OpenAI.ChatCompletionCreateParamsStreaming;
    const stream = await client.chat.completions.create(body);
    for await (const c of stream) {
      if (!ttft && c.choices[0]?.delta.content) ttft = performance.now() - t0;
      if (c.usage) tokens = c.usage.completion_tokens;
    }
    return { latencyMs: performance.now() - t0, ttftMs: ttft, tokens };
  };
  // Warm up: one request per adapter.
  await Promise.all(Array.from({ length: nAdapters }, (_, i) => one(i, i)));
  const before = (await (await fetch(`${url}/health`)).json()) as { stats: { steps: number; rows: number } };
  const samples: Sample[] = [];
  let failures = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let j = 0; j < perClient; j++)
        try {
          samples.push(await one((c + j) % nAdapters, c * perClient + j));
        } catch (e) {
          failures++;
          console.error(`request failed: ${e instanceof Error ? e.message : String(e)}`);
        }
    }),
  );
  const wallS = (performance.now() - t0) / 1000;
  const after = (await (await fetch(`${url}/health`)).json()) as { stats: { steps: number; rows: number } };
  return {
    samples,
    failures,
    wallS,
    meanBatch: (after.stats.rows - before.stats.rows) / (after.stats.steps - before.stats.steps),
  };
}

async function run(policy: string, dirs: string[]) {
  const { child, url } = await startServer(policy, dirs);
  try {
    const r = await load(url);
    const tokens = r.samples.reduce((s, x) => s + x.tokens, 0);
    return { policy, ...r, tokens, tokPerS: tokens / r.wallS };
  } finally {
    child.kill('SIGTERM');
    await new Promise((res) => child.once('exit', res));
  }
}

const dirs = await makeAdapters();
const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], {
  cwd: root,
  encoding: 'utf8',
}).stdout.trim();
console.log(`# lorakit serve load test — ${new Date().toISOString().slice(0, 10)}, commit ${commit}`);
console.log(
  `machine: ${describeCpuPath()}, ${cpus().length} logical CPUs, Node ${process.version}; server run ${a['from-source'] ? 'from sources through tsx' : 'from tsc output'}`,
);
console.log(
  `model: ${model.replace(root + '/', '')} (${a.dtype}), ${nAdapters} LoRA adapters r=${a.rank} on all linears; ${clients} concurrent streaming clients x ${perClient} requests, ${maxTokens} tokens each, adapter of request j of client c = a[(c+j) mod ${nAdapters}]; --max-batch ${a['max-batch']}\n`,
);
const results: Awaited<ReturnType<typeof run>>[] = [];
const repeat = Number(a.repeat);
// Alternate the two servers, so a change in the machine's other load hits both alike.
for (let i = 0; i < repeat; i++)
  for (const policy of ['mixed', 'single-adapter']) results.push(await run(policy, dirs));
console.log(
  '| batching | requests | failed | tokens | wall s | tokens/s | mean rows/step | latency p50 ms | latency p99 ms | first token p50 ms | first token p99 ms |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of results) {
  const lat = r.samples.map((s) => s.latencyMs);
  const ttft = r.samples.map((s) => s.ttftMs);
  console.log(
    `| ${r.policy === 'mixed' ? 'mixed adapters per step' : 'one adapter at a time'} | ${r.samples.length + r.failures} | ${r.failures} | ${r.tokens} | ${r.wallS.toFixed(1)} | ${r.tokPerS.toFixed(1)} | ${r.meanBatch.toFixed(1)} | ${pct(lat, 50).toFixed(0)} | ${pct(lat, 99).toFixed(0)} | ${pct(ttft, 50).toFixed(0)} | ${pct(ttft, 99).toFixed(0)} |`,
  );
}
const ratios = Array.from({ length: repeat }, (_, i) => results[2 * i].tokPerS / results[2 * i + 1].tokPerS);
console.log(
  `\nmixed-adapter batching throughput / one-adapter-at-a-time throughput: ${pct(ratios, 50).toFixed(2)}x${repeat > 1 ? ` (median of ${repeat}: ${ratios.map((r) => r.toFixed(2)).join(', ')})` : ''}`,
);
if (results.some((r) => r.failures > 0)) process.exitCode = 1;
