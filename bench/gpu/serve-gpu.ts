// Serving on one GPU through real HTTP: `lorakit serve` next to a transformers + PEFT server
// (bench/gpu/serve_peft.py), same random-weight model, same PEFT adapters, same load. Many concurrent
// streaming clients send /v1/completions requests (prompt as token ids, greedy, ignore_eos so every
// request makes exactly --new-tokens) spread evenly over 1, 8, 64 … distinct adapters. Each row reports
// output tokens/s, time to first token and inter-token latency (p50/p99, every gap between streamed
// chunks of every request), and the GPU's peak memory.used during the row (nvidia-smi, sampled).
//
//   node --import tsx bench/gpu/serve-gpu.ts [--shape llama-3.2-1b[,llama-3.1-8b]] [--model-dir DIR]
//        [--clients 64] [--adapters 1,8,64] [--prompt-tokens 128] [--new-tokens 128]
//        [--requests-per-client 1] [--servers lorakit,peft] [--lorakit-policies mixed,single-adapter]
//        [--peft-policies grouped,mixed] [--device cuda] [--lorakit-args "..."] [--python python3]
//        [--row-limit-s 60] [--quick] [--json FILE]
//
// A model folder without .complete is made by bench/gpu/make_serve_model.py (--shape). Each server is
// started once per policy with every adapter loaded; rows with fewer adapters use a0..a{n-1}. A row
// that passes --row-limit-s is cut there: its clients hang up, tokens/s counts what was streamed by
// then, and the row says how many requests had finished.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildCli } from '../build-cli.js';

const root = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
const { values: a } = parseArgs({
  options: {
    shape: { type: 'string' },
    'model-dir': { type: 'string' },
    'model-root': { type: 'string', default: '/tmp/lorakit-serve-models' },
    clients: { type: 'string' },
    adapters: { type: 'string' },
    'prompt-tokens': { type: 'string' },
    'new-tokens': { type: 'string' },
    'requests-per-client': { type: 'string' },
    servers: { type: 'string', default: 'lorakit,peft' },
    'lorakit-policies': { type: 'string', default: 'mixed,single-adapter' },
    'peft-policies': { type: 'string', default: 'grouped,mixed' },
    device: { type: 'string', default: 'cuda' },
    'lorakit-args': { type: 'string', default: '' },
    'peft-args': { type: 'string', default: '' },
    python: { type: 'string', default: 'python3' },
    port: { type: 'string', default: '0' },
    'row-limit-s': { type: 'string' },
    'start-timeout-s': { type: 'string', default: '300' },
    quick: { type: 'boolean', default: false },
    'from-source': { type: 'boolean', default: false },
    'skip-build': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});

// --quick: a few seconds a row, to check that everything runs.
const quick = a.quick === true;
const pick = (v: string | undefined, full: string, short: string): string => v ?? (quick ? short : full);
const clients = Number(pick(a.clients, '64', '16'));
const adapterCounts = pick(a.adapters, '1,8,64', '1,8').split(',').map(Number);
const promptTokens = Number(pick(a['prompt-tokens'], '128', '64'));
const newTokens = Number(pick(a['new-tokens'], '128', '32'));
const perClient = Number(pick(a['requests-per-client'], '1', '1'));
const rowLimitS = Number(pick(a['row-limit-s'], '60', '30'));
const maxAdapters = Math.max(...adapterCounts);
const servers = a.servers!.split(',').filter(Boolean);
const device = a.device!;
const splitArgs = (s: string): string[] => s.split(/\s+/).filter(Boolean);

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : '';
}

// ---- GPU memory: nvidia-smi samples every 100 ms for the whole run --------------------------------

interface MemSample {
  t: number;
  mib: number;
}
const memSamples: MemSample[] = [];
let smi: ChildProcess | null = null;
function startMemorySampler(): void {
  if (!sh('nvidia-smi', ['-L'])) return;
  smi = spawn(
    'nvidia-smi',
    ['-i', '0', '--query-gpu=memory.used', '--format=csv,noheader,nounits', '-lms', '100'],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  let buf = '';
  smi.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const l of lines)
      if (/^\d+/.test(l.trim())) memSamples.push({ t: performance.now(), mib: Number(l.trim()) });
  });
}
function peakMiB(t0: number, t1: number): number | null {
  let peak: number | null = null;
  for (const s of memSamples) if (s.t >= t0 && s.t <= t1 + 200) peak = Math.max(peak ?? 0, s.mib);
  return peak;
}

// ---- processes ----------------------------------------------------------------------------------

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  smi?.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await gone;
  clearTimeout(timer);
  children.delete(child);
}

interface Started {
  child: ChildProcess;
  url: string;
  log: () => string;
}

/** Spawns a server and waits for its "listening on URL/v1" line and a 200 from /health. */
async function startServer(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<Started> {
  const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env });
  children.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = performance.now() + Number(a['start-timeout-s']) * 1000;
  let url: string | undefined;
  while (!(url = /listening on (http:\/\/\S+?)\/v1/.exec(out)?.[1])) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`exited (${child.exitCode ?? child.signalCode}): ${lastLines(out, 6)}`);
    if (performance.now() > deadline) {
      await stop(child);
      throw new Error(`did not start in ${a['start-timeout-s']} s: ${lastLines(out, 6)}`);
    }
    await sleep(100);
  }
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`${url}/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return { child, url, log: () => out };
    await sleep(100);
  }
  await stop(child);
  throw new Error(`no /health answer: ${lastLines(out, 6)}`);
}

function lastLines(s: string, n: number): string {
  return s
    .split('\n')
    .filter((l) => l.trim() && !/it\/s\]|Loading weights|kernels-community/.test(l))
    .slice(-n)
    .join(' | ');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- model folder ---------------------------------------------------------------------------------

interface ModelShape {
  name: string;
  layers: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
}

function adapterCount(dir: string): number {
  const d = join(dir, 'adapters');
  return existsSync(d) ? readdirSync(d).filter((n) => /^a\d+$/.test(n)).length : 0;
}

function ensureModel(dir: string, shape: string | null): ModelShape {
  // A folder made earlier with fewer adapters is made again (when the shape is known).
  if (shape && existsSync(join(dir, '.complete')) && adapterCount(dir) < maxAdapters)
    rmSync(join(dir, '.complete'));
  if (!existsSync(join(dir, '.complete'))) {
    if (!shape) throw new Error(`${dir} is not a complete model folder; give --shape to make one`);
    const t0 = performance.now();
    const r = spawnSync(
      a.python!,
      [
        join(root, 'bench/gpu/make_serve_model.py'),
        '--out',
        dir,
        '--shape',
        shape,
        '--adapters',
        String(maxAdapters),
      ],
      { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] },
    );
    if (r.status !== 0) throw new Error(`make_serve_model.py failed (${r.status ?? r.signal})`);
    console.error(`made ${dir} in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  const have = adapterCount(dir);
  if (have < maxAdapters)
    throw new Error(`${dir}/adapters holds ${have} adapters, fewer than ${maxAdapters}`);
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, number>;
  const made = JSON.parse(readFileSync(join(dir, '.complete'), 'utf8')) as { shape?: string };
  return {
    name: shape ?? made.shape ?? dir,
    layers: c.num_hidden_layers,
    kvHeads: c.num_key_value_heads,
    headDim: c.head_dim ?? c.hidden_size / c.num_attention_heads,
    vocab: c.vocab_size,
  };
}

// ---- lorakit CLI ----------------------------------------------------------------------------------

// As bench/serve.ts: the server runs from tsc's JavaScript, as the installed CLI does (not through
// tsx), built from the current sources; the native addons are built first where missing.
function buildLorakit(): string[] {
  mkdirSync(join(root, 'build'), { recursive: true });
  const need = (f: string) =>
    !readdirSync(join(root, 'build')).some((n) => n.startsWith(f) && n.endsWith('.node'));
  const build = (script: string) => {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [join(root, script)], { cwd: root, encoding: 'utf8' });
    console.log(
      `built with node ${script} in ${((performance.now() - t0) / 1000).toFixed(0)} s${r.status !== 0 ? ` — failed: ${lastLines(r.stdout + r.stderr, 8)}` : ''}`,
    );
  };
  if (!a['skip-build']) {
    if (need('lorakit_cpu-')) build('scripts/build-native.mjs');
    if (device === 'cuda' && need('lorakit_cuda')) build('scripts/build-cuda.mjs');
  }
  return buildCli(root, 'bench-serve-gpu', a['from-source'] === true);
}

// ---- load -----------------------------------------------------------------------------------------

interface Sample {
  ttftMs: number | null;
  gapsMs: number[];
  tokens: number;
  done: boolean;
  error: string | null;
}

const agent = new Agent({ keepAlive: true, maxSockets: Infinity });

// Prompt ids from a fixed generator, different for every request (neither server caches prefixes,
// but nothing should depend on that); ids stay below the special tokens.
function promptIds(seed: number, n: number, vocab: number): number[] {
  let s = (seed * 2654435761) >>> 0 || 1;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return 256 + (s % (Math.min(vocab, 128000) - 256));
  });
}

/** One streaming /v1/completions request; resolves when it ends, fails or `abort` fires. */
function streamOne(url: string, body: object, abort: AbortSignal): Promise<Sample> {
  return new Promise((done) => {
    const t0 = performance.now();
    const s: Sample = { ttftMs: null, gapsMs: [], tokens: 0, done: false, error: null };
    let chunks = 0;
    let usageTokens: number | null = null;
    let last = 0;
    let buf = '';
    const finish = (error: string | null) => {
      if (error && !s.error) s.error = error;
      s.tokens = usageTokens ?? chunks;
      done(s);
    };
    const u = new URL(`${url}/v1/completions`);
    const payload = JSON.stringify(body);
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        agent,
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
        signal: abort,
      },
      (res) => {
        res.setEncoding('utf8');
        if (res.statusCode !== 200) {
          let text = '';
          res.on('data', (d: string) => (text += d));
          res.on('end', () => finish(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
          return;
        }
        res.on('data', (d: string) => {
          buf += d;
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const event = buf.slice(0, i);
            buf = buf.slice(i + 2);
            for (const line of event.split('\n')) {
              if (!line.startsWith('data: ')) continue;
              const data = line.slice(6).trim();
              if (data === '[DONE]') {
                s.done = true;
                continue;
              }
              const obj = JSON.parse(data) as {
                choices?: { text?: string }[];
                usage?: { completion_tokens: number };
                error?: { message: string };
              };
              if (obj.error) s.error = obj.error.message;
              if (obj.usage) usageTokens = obj.usage.completion_tokens;
              if (obj.choices?.[0]?.text) {
                const t = performance.now();
                if (s.ttftMs === null) s.ttftMs = t - t0;
                else s.gapsMs.push(t - last);
                last = t;
                chunks++;
              }
            }
          }
        });
        res.on('end', () => finish(s.done ? null : 'stream ended without [DONE]'));
        res.on('error', (e) => finish(abort.aborted ? null : e.message));
      },
    );
    req.on('error', (e) => finish(abort.aborted ? null : e.message));
    req.end(payload);
  });
}

interface RowResult {
  server: string;
  adapters: number;
  requests: number;
  completed: number;
  failed: number;
  short: number;
  tokens: number;
  wallS: number;
  tokPerS: number;
  ttftP50: number | null;
  ttftP99: number | null;
  itlP50: number | null;
  itlP99: number | null;
  peakMiB: number | null;
  cut: boolean;
  note: string;
  firstError?: string;
}

function pct(xs: number[], p: number): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function drive(
  url: string,
  server: string,
  nAdapters: number,
  vocab: number,
  row: number,
): Promise<RowResult> {
  const abort = new AbortController();
  const samples: Sample[] = [];
  const t0 = performance.now();
  const timer = setTimeout(() => abort.abort(), rowLimitS * 1000);
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let j = 0; j < perClient && !abort.signal.aborted; j++) {
        const k = c * perClient + j;
        const body = {
          model: `a${k % nAdapters}`,
          prompt: promptIds(row * 100_000 + k + 1, promptTokens, vocab),
          max_tokens: newTokens,
          temperature: 0,
          stream: true,
          stream_options: { include_usage: true },
          ignore_eos: true,
        };
        samples.push(await streamOne(url, body, abort.signal));
      }
    }),
  );
  clearTimeout(timer);
  const t1 = performance.now();
  const cut = abort.signal.aborted;
  const wallS = (t1 - t0) / 1000;
  const completed = samples.filter((s) => s.done && !s.error);
  const failed = samples.filter((s) => s.error);
  const tokens = samples.reduce((n, s) => n + s.tokens, 0);
  const ttft = samples.map((s) => s.ttftMs).filter((x): x is number => x !== null);
  const gaps = samples.flatMap((s) => s.gapsMs);
  const requests = clients * perClient;
  return {
    server,
    adapters: nAdapters,
    requests,
    completed: completed.length,
    failed: failed.length,
    short: completed.filter((s) => s.tokens !== newTokens).length,
    tokens,
    wallS,
    tokPerS: tokens / wallS,
    ttftP50: pct(ttft, 50),
    ttftP99: pct(ttft, 99),
    itlP50: pct(gaps, 50),
    itlP99: pct(gaps, 99),
    peakMiB: peakMiB(t0, t1),
    cut,
    note: cut ? `cut at ${rowLimitS} s: ${completed.length}/${requests} done, ${ttft.length} started` : '',
    firstError: failed[0]?.error ?? undefined,
  };
}

/**
 * Short requests before the rows: one full batch on a0 (kernels and allocators see the rows' batch
 * size), then one request on each of a few adapters.
 */
async function warmUp(url: string, vocab: number): Promise<void> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 180_000);
  const one = (i: number, adapter: number) =>
    streamOne(
      url,
      {
        model: `a${adapter}`,
        prompt: promptIds(999_000 + i, promptTokens, vocab),
        max_tokens: 4,
        temperature: 0,
        stream: true,
        ignore_eos: true,
      },
      abort.signal,
    );
  await Promise.all(Array.from({ length: clients }, (_, i) => one(i, 0)));
  await Promise.all(Array.from({ length: Math.min(4, maxAdapters) }, (_, i) => one(clients + i, i)));
  clearTimeout(timer);
}

// ---- one model ------------------------------------------------------------------------------------

interface ServerSpec {
  label: string;
  kind: 'lorakit' | 'peft';
  policy: string;
}

function serverSpecs(): ServerSpec[] {
  const specs: ServerSpec[] = [];
  for (const s of servers) {
    if (s === 'lorakit')
      for (const p of a['lorakit-policies']!.split(',').filter(Boolean))
        specs.push({
          kind: 'lorakit',
          policy: p,
          label: p === 'mixed' ? 'lorakit mixed' : 'lorakit one-adapter',
        });
    else if (s === 'peft')
      for (const p of a['peft-policies']!.split(',').filter(Boolean))
        specs.push({ kind: 'peft', policy: p, label: `PEFT ${p === 'mixed' ? 'mixed (adapter_names)' : p}` });
    else throw new Error(`unknown server '${s}' (lorakit, peft)`);
  }
  return specs;
}

const fmt = (v: number | null, d = 0) => (v === null || !Number.isFinite(v) ? '-' : v.toFixed(d));

async function benchModel(dir: string, shape: string | null, cli: string[] | null): Promise<RowResult[]> {
  const m = ensureModel(dir, shape);
  const adapterFlags = (flag: string) =>
    Array.from({ length: maxAdapters }, (_, i) => [flag, `a${i}=${join(dir, 'adapters', `a${i}`)}`]).flat();
  // KV caches of every client's whole sequence, f32, with a tenth spare (lorakit's 2 GiB default is short for 64 × 256 positions at 8B).
  const kvMiB = Math.max(
    2048,
    Math.ceil(
      (m.layers * 2 * m.kvHeads * m.headDim * 4 * clients * (promptTokens + newTokens) * 1.1) / 2 ** 20,
    ),
  );
  const rows: RowResult[] = [];
  const specs = serverSpecs();
  const peftStarted = new Map<string, Started>();
  let versions = '';
  for (const spec of specs) {
    let srv: Started;
    const t0 = performance.now();
    try {
      if (spec.kind === 'lorakit') {
        if (!cli) throw new Error('lorakit CLI not built');
        const args = [
          ...cli,
          'serve',
          '--model',
          dir,
          '--device',
          device,
          '--dtype',
          'bfloat16',
          '--port',
          a.port!,
          '--quiet',
          '--max-batch',
          String(clients),
          '--kv-cache-mb',
          String(kvMiB),
          '--max-tokens',
          String(Math.max(1024, newTokens)),
          '--batch-policy',
          spec.policy,
          ...adapterFlags('--adapter'),
          ...splitArgs(a['lorakit-args']!),
        ];
        srv = await startServer(process.execPath, args);
      } else {
        // One PEFT process serves every PEFT policy (POST /admin/policy): loading 64 adapters into
        // PEFT takes long enough that reloading per policy would eat the time budget.
        const reuse = [...peftStarted.values()][0];
        if (reuse && reuse.child.exitCode === null) srv = reuse;
        else {
          const args = [
            join(root, 'bench/gpu/serve_peft.py'),
            '--model',
            dir,
            '--port',
            a.port!,
            '--max-batch',
            String(clients),
            '--policy',
            spec.policy,
            ...(device === 'cpu' ? ['--device', 'cpu'] : []),
            ...adapterFlags('--adapter'),
            ...splitArgs(a['peft-args']!),
          ];
          srv = await startServer(a.python!, args, { ...process.env, PYTHONUNBUFFERED: '1' });
          versions = /versions: (.*)/.exec(srv.log())?.[1] ?? '';
        }
        const r = await fetch(`${srv.url}/admin/policy`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ policy: spec.policy }),
        });
        if (!r.ok) throw new Error(`policy ${spec.policy}: ${await r.text()}`);
        peftStarted.set(spec.policy, srv);
      }
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      console.error(`${spec.label}: could not start: ${msg}`);
      for (const n of adapterCounts) rows.push(errorRow(spec.label, n, `did not start: ${msg}`));
      continue;
    }
    console.error(`${spec.label}: up in ${((performance.now() - t0) / 1000).toFixed(1)} s at ${srv.url}`);
    try {
      await warmUp(srv.url, m.vocab);
      for (const [i, n] of adapterCounts.entries()) {
        if (srv.child.exitCode !== null) {
          rows.push(errorRow(spec.label, n, `server exited: ${lastLines(srv.log(), 4)}`));
          continue;
        }
        const r = await drive(srv.url, spec.label, n, m.vocab, i);
        if (r.failed > 0)
          r.note = [r.note, `${r.failed} failed: ${r.firstError ?? ''}`.slice(0, 160)]
            .filter(Boolean)
            .join('; ');
        if (r.short > 0)
          r.note = [r.note, `${r.short} finished short of ${newTokens} tokens`].filter(Boolean).join('; ');
        console.error(
          `${spec.label}, ${n} adapters: ${r.tokPerS.toFixed(1)} tokens/s, TTFT p50 ${fmt(r.ttftP50)} ms, ITL p50 ${fmt(r.itlP50, 1)} ms, ${r.wallS.toFixed(1)} s${r.note ? ` (${r.note})` : ''}`,
        );
        rows.push(r);
        if (a.json) appendFileSync(a.json, JSON.stringify({ model: dir, ...r }) + '\n');
      }
    } finally {
      if (spec.kind === 'lorakit' || spec === specs.filter((s) => s.kind === 'peft').at(-1))
        await stop(srv.child);
    }
  }
  for (const s of peftStarted.values()) await stop(s.child);
  printTable(dir, m, rows, versions);
  return rows;
}

function errorRow(server: string, adapters: number, note: string): RowResult {
  return {
    server,
    adapters,
    requests: 0,
    completed: 0,
    failed: 0,
    short: 0,
    tokens: 0,
    wallS: 0,
    tokPerS: NaN,
    ttftP50: null,
    ttftP99: null,
    itlP50: null,
    itlP99: null,
    peakMiB: null,
    cut: false,
    note: note.slice(0, 240),
  };
}

function printTable(dir: string, m: ModelShape, rows: RowResult[], versions: string): void {
  const ratio = (r: RowResult, base: RowResult | undefined) =>
    base && Number.isFinite(base.tokPerS) && Number.isFinite(r.tokPerS) && base.tokPerS > 0
      ? `${(r.tokPerS / base.tokPerS).toFixed(2)}×`
      : '-';
  const peftRef = rows.find((r) => r.server.startsWith('PEFT'))?.server;
  console.log(
    `\n## ${m.name} (${m.layers} layers, vocab ${m.vocab}) — ${dir}\n\n` +
      `${clients} streaming clients × ${perClient} requests, prompt ${promptTokens} token ids, ${newTokens} new tokens (greedy, ignore_eos); ` +
      `request k uses adapter a[k mod n]; ranks 8/16/32/64 in turn on every linear. ITL: gaps between a request's streamed text chunks; peak GPU: nvidia-smi memory.used during the row.${versions ? ` PEFT side: ${versions}.` : ''}\n`,
  );
  console.log(
    `| server | adapters | tokens/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | peak GPU MiB | ÷ ${peftRef ?? 'PEFT'} | ÷ lorakit one-adapter | notes |`,
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    const same = (label: string | undefined) =>
      rows.find((o) => o.server === label && o.adapters === r.adapters);
    console.log(
      `| ${r.server} | ${r.adapters} | ${fmt(r.tokPerS, 1)} | ${fmt(r.ttftP50)} | ${fmt(r.ttftP99)} | ${fmt(r.itlP50, 1)} | ${fmt(r.itlP99, 1)} | ${fmt(r.peakMiB)} | ${ratio(r, same(peftRef))} | ${ratio(r, same('lorakit one-adapter'))} | ${r.note.replace(/\|/g, '/')} |`,
    );
  }
  if (!rows.some((r) => r.server === 'lorakit one-adapter'))
    console.log('\nno lorakit one-adapter rows (--lorakit-policies): that ratio column is empty.');
}

// ---- main -----------------------------------------------------------------------------------------

const gpu = sh('nvidia-smi', ['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader']).split(
  '\n',
)[0];
console.log(`# lorakit serve on a GPU vs transformers + PEFT — ${new Date().toISOString()}`);
console.log(
  `GPU: ${gpu || 'none (nvidia-smi not found)'}; commit ${sh('git', ['rev-parse', '--short', 'HEAD']) || '?'}${sh('git', ['status', '--porcelain', '--untracked-files=no']) ? ' (uncommitted changes)' : ''}; Node ${process.version}`,
);
console.log(`command: node --import tsx bench/gpu/serve-gpu.ts ${process.argv.slice(2).join(' ')}`);
console.log(
  `lorakit serve: --device ${device} --dtype bfloat16 --max-batch ${clients} --kv-cache-mb (from the shape)${a['lorakit-args'] ? ` ${a['lorakit-args']}` : ''}`,
);
startMemorySampler();
const cli = servers.includes('lorakit') ? buildLorakit() : null;
const shapes = (a.shape ?? (a['model-dir'] ? '' : 'llama-3.2-1b')).split(',').filter(Boolean);
if (a['model-dir'] && shapes.length > 1) throw new Error('--model-dir takes one --shape');
const targets: { dir: string; shape: string | null }[] = a['model-dir']
  ? [{ dir: resolve(a['model-dir']), shape: shapes[0] ?? null }]
  : shapes.map((s) => ({ dir: join(a['model-root']!, s), shape: s }));
let bad = false;
for (const t of targets) {
  const rows = await benchModel(t.dir, t.shape, cli);
  if (rows.some((r) => r.failed > 0 || !Number.isFinite(r.tokPerS))) bad = true;
}
if (bad) process.exitCode = 1;
