// The run dashboard and report: reading metrics.jsonl as the trainer appends it, the live server
// (page, uPlot from node_modules, server-sent events), `lorakit dashboard`, and a browser test:
// headless Chromium watches a real training run gain points live, the plotted values equal
// metrics.jsonl, and DIR/report.html opens offline with the same final numbers. Screenshots go to
// test/artifacts/.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { renderReport, writeReport } from '../src/dashboard/report.js';
import {
  applyRecords,
  expandRunDirs,
  parseMetricsText,
  readRun,
  readRunConfig,
  runNames,
  summarize,
  type EvalRecord,
  type MetricsRecord,
  type RunData,
} from '../src/dashboard/runs.js';
import { startDashboard } from '../src/dashboard/server.js';
import type { StepMetrics } from '../src/train/trainer.js';
import { fixture, projectRoot, rng } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'lorakit-dashboard-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const artifacts = join(projectRoot, 'test', 'artifacts');
const CHROMIUM = '/usr/bin/chromium';

/** Seeded metrics like the trainer writes: `n` steps, an eval line every `evalEvery` and at the end. */
function fakeMetrics(n: number, seed: number, evalEvery = 7): MetricsRecord[] {
  const r = rng(seed);
  const out: MetricsRecord[] = [];
  let elapsed = 0;
  for (let step = 1; step <= n; step++) {
    const dt = 0.2 + r() * 0.1;
    elapsed += dt;
    const tokens = 500 + Math.floor(r() * 400);
    out.push({
      step,
      totalSteps: n,
      epoch: Math.floor(step / 10),
      loss: 4 - step * 0.02 + r() * 0.3,
      lr: 2e-4 * (1 - (step - 1) / n),
      grad_norm: 0.5 + r(),
      tokens,
      tokens_per_s: tokens / dt,
      memory: 600_000 + Math.floor(r() * 50_000),
      elapsed,
    });
    if (step % evalEvery === 0 || step === n)
      out.push({ step, eval_loss: 4.1 - step * 0.015 + r() * 0.1, eval_tokens: 1234 });
  }
  return out;
}

const lines = (rs: MetricsRecord[]) => rs.map((x) => `${JSON.stringify(x)}\n`).join('');
const isEval = (x: MetricsRecord): x is EvalRecord => 'eval_loss' in x;

function readMetrics(dir: string): { steps: StepMetrics[]; evals: EvalRecord[] } {
  const rs = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as MetricsRecord);
  return { steps: rs.filter((x): x is StepMetrics => !isEval(x)), evals: rs.filter(isEval) };
}

function makeRun(name: string, n: number, seed: number, config?: Record<string, unknown>): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'metrics.jsonl'), lines(fakeMetrics(n, seed)));
  if (config) writeFileSync(join(dir, 'run.json'), JSON.stringify(config));
  return dir;
}

// ---------------------------------------------------------------- reading runs

test('metrics.jsonl: a half-written last line waits, damaged lines are skipped', () => {
  const rs = fakeMetrics(7, 1, 3);
  const text = lines(rs);
  const cut = text.length - 20;
  const a = parseMetricsText(text.slice(0, cut));
  assert.deepEqual(a.records, rs.slice(0, -1));
  const b = parseMetricsText(a.rest + text.slice(cut));
  assert.deepEqual(b.records, rs.slice(-1));
  assert.equal(b.rest, '');
  const messy = parseMetricsText(
    `${lines(rs.slice(0, 2))}{"step": 3, "loss": oops}\n["not", "metrics"]\n{"hello":1}\n\n${lines(rs.slice(2))}`,
  );
  assert.deepEqual(messy.records, rs);
});

test('a run resumed or restarted into the same folder: later lines replace earlier ones', () => {
  const first = fakeMetrics(9, 2, 3); // steps 1..9, evals at 3, 6, 9
  const resumed = fakeMetrics(9, 3, 3).filter((x) => x.step > 6); // resumed from step 6
  const run = { steps: [] as StepMetrics[], evals: [] as EvalRecord[] };
  applyRecords(run, [...first, ...resumed]);
  const expect = [...first.filter((x) => x.step <= 6), ...resumed];
  assert.deepEqual(
    run.steps,
    expect.filter((x): x is StepMetrics => !isEval(x)),
  );
  assert.deepEqual(run.evals, expect.filter(isEval));
  assert.deepEqual(
    run.steps.map((s) => s.step),
    [1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  // A second eval at the same step replaces the first.
  applyRecords(run, [{ step: 9, eval_loss: 1.5 }]);
  assert.deepEqual(
    run.evals.map((e) => [e.step, e.eval_loss]),
    [
      [3, expect.filter(isEval)[0].eval_loss],
      [6, expect.filter(isEval)[1].eval_loss],
      [9, 1.5],
    ],
  );
});

test('summary numbers equal a float64 recomputation from the lines', () => {
  const rs = fakeMetrics(33, 4);
  const run = { steps: [] as StepMetrics[], evals: [] as EvalRecord[] };
  applyRecords(run, rs);
  const s = summarize(run);
  const steps = rs.filter((x): x is StepMetrics => !isEval(x));
  const evals = rs.filter(isEval);
  let tokens = 0;
  let secs = 0;
  for (const x of steps) {
    tokens += x.tokens;
    secs += x.tokens / x.tokens_per_s;
  }
  assert.equal(s.step, 33);
  assert.equal(s.loss, steps[32].loss);
  assert.equal(s.evalLoss, evals.at(-1)!.eval_loss);
  assert.equal(s.bestEvalLoss, Math.min(...evals.map((e) => e.eval_loss)));
  assert.equal(s.lr, steps[32].lr);
  assert.equal(s.peakMemory, Math.max(...steps.map((x) => x.memory)));
  assert.ok(Math.abs(s.tokensPerS! - tokens / secs) < 1e-9 * (tokens / secs));
  assert.deepEqual(summarize({ steps: [], evals: [] }).loss, null);
});

test('run folders: names, runs/ parents, config from run.json or the newest checkpoint', () => {
  assert.deepEqual(runNames(['/x/a/run', '/x/b/run', '/x/c/other']), ['a/run', 'b/run', 'other']);
  assert.deepEqual(runNames(['/p/a/b/run', '/p/c/b/run']), ['a/b/run', 'c/b/run']);
  const parent = join(work, 'runs-parent');
  for (const n of ['r2', 'r1']) {
    mkdirSync(join(parent, n), { recursive: true });
    writeFileSync(join(parent, n, 'metrics.jsonl'), lines(fakeMetrics(3, 5)));
  }
  mkdirSync(join(parent, 'not-a-run'));
  assert.deepEqual(expandRunDirs([parent]), [join(parent, 'r1'), join(parent, 'r2')]);
  assert.deepEqual(expandRunDirs([join(parent, 'r1'), join(parent, 'r1'), join(work, 'later')]), [
    join(parent, 'r1'),
    join(work, 'later'),
  ]);
  writeFileSync(join(work, 'a-file'), 'x');
  assert.throws(() => expandRunDirs([join(work, 'a-file')]), /a-file is not a folder/);

  const dir = join(parent, 'r1');
  assert.equal(readRunConfig(dir), null);
  for (const [step, lr] of [
    [5, 1e-3],
    [12, 2e-3],
    [9, 3e-3],
  ] as const) {
    mkdirSync(join(dir, 'checkpoints', `step-${step}`), { recursive: true });
    writeFileSync(
      join(dir, 'checkpoints', `step-${step}`, 'trainer_state.json'),
      JSON.stringify({ step, options: { lr } }),
    );
  }
  assert.deepEqual(readRunConfig(dir), { options: { lr: 2e-3 } });
  writeFileSync(join(dir, 'run.json'), JSON.stringify({ model: 'm', lora: { r: 8 } }));
  assert.deepEqual(readRunConfig(dir), { model: 'm', lora: { r: 8 } });
  const run = readRun(dir);
  assert.equal(run.name, 'r1');
  assert.equal(run.steps.length, 3);
});

test('the report is one self-contained file; data cannot close its script element', () => {
  const dir = makeRun('report-unit', 7, 6, { model: '</script><script>alert(1)</script>', note: '<!-- x' });
  const html = renderReport([readRun(dir)], 1_700_000_000_000);
  assert.equal((html.match(/<script/g) ?? []).length, 3, 'data, uPlot, page script');
  assert.equal((html.match(/<\/script>/g) ?? []).length, 3);
  assert.doesNotMatch(html, /\b(src|href)=/, 'nothing loaded from elsewhere');
  const json = /<script id="lk-data" type="application\/json">(.*?)<\/script>/s.exec(html)![1];
  const data = JSON.parse(json) as { runs: RunData[]; now: number };
  assert.equal(data.runs[0].config!.model, '</script><script>alert(1)</script>');
  assert.deepEqual(data.runs[0].steps, readMetrics(dir).steps);
  const uplot = readFileSync(createRequire(import.meta.url).resolve('uplot/dist/uPlot.iife.min.js'), 'utf8');
  assert.ok(html.includes(uplot), 'uPlot inlined as shipped');
  const out = writeReport(dir);
  assert.equal(out, join(dir, 'report.html'));
  assert.ok(!existsSync(`${out}.tmp`));
});

// ---------------------------------------------------------------- the server

interface SseEvent {
  event: string;
  data: unknown;
}

/** Opens api/events and collects events; wait(pred) resolves with the first event matching. */
function openEvents(url: string): {
  events: SseEvent[];
  wait: (pred: (e: SseEvent) => boolean, ms?: number) => Promise<SseEvent>;
  close: () => void;
} {
  const events: SseEvent[] = [];
  let waiters: { pred: (e: SseEvent) => boolean; resolve: (e: SseEvent) => void }[] = [];
  let buf = '';
  const req = request(`${url}api/events`, (res) => {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const ev = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (!ev || data === undefined) continue;
        const e = { event: ev, data: JSON.parse(data) as unknown };
        events.push(e);
        waiters = waiters.filter((w) => (w.pred(e) ? (w.resolve(e), false) : true));
      }
    });
  });
  req.on('error', () => {});
  req.end();
  return {
    events,
    wait: (pred, ms = 5000) =>
      new Promise((resolve, reject) => {
        const hit = events.find(pred);
        if (hit) return resolve(hit);
        const timer = setTimeout(
          () =>
            reject(
              new Error(`no matching event within ${ms} ms; got ${events.map((e) => e.event).join(', ')}`),
            ),
          ms,
        );
        waiters.push({ pred, resolve: (e) => (clearTimeout(timer), resolve(e)) });
      }),
    close: () => req.destroy(),
  };
}

function get(
  url: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

test('server: page, uPlot from node_modules, snapshot, live records, resets and config over SSE', async () => {
  const a = makeRun('srv-a', 11, 7, { model: 'tiny', lora: { r: 4 } });
  const b = join(work, 'srv-b'); // training has not started yet
  const dash = await startDashboard({ dirs: [a, b], port: 0, pollMs: 50 });
  const sse = openEvents(dash.url);
  try {
    assert.match(dash.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await get(dash.url);
    assert.equal(page.status, 200);
    assert.match(page.type, /text\/html/);
    assert.match(page.body, /<script src="uplot\.js"><\/script>/);
    assert.doesNotMatch(page.body, /https?:\/\//, 'no CDN');
    const js = await get(`${dash.url}uplot.js`);
    assert.equal(
      js.body,
      readFileSync(createRequire(import.meta.url).resolve('uplot/dist/uPlot.iife.min.js'), 'utf8'),
    );
    assert.match((await get(`${dash.url}uplot.css`)).type, /text\/css/);
    const snap = JSON.parse((await get(`${dash.url}api/runs`)).body) as { runs: RunData[] };
    assert.deepEqual(
      snap.runs.map((r) => r.name),
      ['srv-a', 'srv-b'],
    );
    assert.deepEqual(snap.runs[0].steps, readMetrics(a).steps);
    assert.deepEqual(snap.runs[0].config, { model: 'tiny', lora: { r: 4 } });
    assert.deepEqual(snap.runs[1].steps, []);

    const first = await sse.wait((e) => e.event === 'snapshot');
    assert.deepEqual(
      (first.data as { runs: RunData[] }).runs.map((r) => r.evals.length),
      [2, 0],
    );
    // Run b starts: a half-written line is held back until its newline arrives.
    mkdirSync(b);
    const more = fakeMetrics(5, 8, 2);
    const text = lines(more);
    writeFileSync(join(b, 'metrics.jsonl'), text.slice(0, text.length - 10));
    const got1 = await sse.wait((e) => e.event === 'records');
    assert.deepEqual(got1.data, { run: 1, records: more.slice(0, -1) });
    appendFileSync(join(b, 'metrics.jsonl'), text.slice(text.length - 10));
    const got2 = await sse.wait((e) => e.event === 'records' && e !== got1);
    assert.deepEqual(got2.data, { run: 1, records: more.slice(-1) });
    writeFileSync(join(b, 'run.json'), JSON.stringify({ model: 'b' }));
    assert.deepEqual((await sse.wait((e) => e.event === 'config')).data, { run: 1, config: { model: 'b' } });
    // The file starts over (a new run in the same folder): one reset with the new content.
    const fresh = fakeMetrics(2, 9);
    writeFileSync(join(b, 'metrics.jsonl'), lines(fresh));
    const reset = await sse.wait((e) => e.event === 'reset');
    assert.deepEqual(reset.data, {
      run: 1,
      steps: fresh.filter((x) => !isEval(x)),
      evals: fresh.filter(isEval),
    });

    assert.equal((await get(dash.url, { Host: 'evil.example:80' })).status, 403);
    assert.equal((await get(dash.url, {}, 'POST')).status, 405);
    assert.equal((await get(`${dash.url}nope`)).status, 404);
    assert.equal((await get(`${dash.url}../../etc/passwd`)).status, 404);
    await assert.rejects(
      startDashboard({ dirs: [a], port: dash.port }),
      /port \d+ is already in use; pick another with --port/,
    );
  } finally {
    sse.close();
    await dash.close();
  }
});

function cli(args: string[]) {
  return spawnSync(
    process.execPath,
    ['--import', 'tsx', join(projectRoot, 'test', 'lorakit-cli.mts'), ...args],
    { encoding: 'utf8', cwd: projectRoot },
  );
}

function spawnCli(args: string[]): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', join(projectRoot, 'test', 'lorakit-cli.mts'), ...args], {
    cwd: projectRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

test('lorakit dashboard: flags, bad input, --report, serving until SIGTERM', async () => {
  const a = makeRun('cli-a', 5, 10);
  const cases: [string[], RegExp][] = [
    [['dashboard'], /give at least one run folder/],
    [['dashboard', a, '--port', '70000'], /--port must be at most 65535/],
    [['dashboard', a, '--prot', '1'], /unknown flag --prot \(did you mean port\?\)/],
    [['dashboard', join(a, 'metrics.jsonl')], /is not a folder/],
    [
      ['dashboard', join(work, 'none'), '--report', join(work, 'r.html')],
      /metrics\.jsonl does not exist, so there is nothing to report/,
    ],
  ];
  for (const [args, re] of cases) {
    const r = cli(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.match(r.stderr, /^lorakit/);
  }
  const out = join(work, 'combined.html');
  const r = cli(['dashboard', a, makeRun('cli-b', 3, 11), '--report', out]);
  assert.equal(r.status, 0, r.stderr);
  const data = JSON.parse(
    /<script id="lk-data" type="application\/json">(.*?)<\/script>/s.exec(readFileSync(out, 'utf8'))![1],
  ) as { runs: RunData[] };
  assert.deepEqual(
    data.runs.map((x) => x.name),
    ['cli-a', 'cli-b'],
  );

  const child = spawnCli(['dashboard', a, join(work, 'cli-later'), '--port', '0']);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 15000;
  while (!/http:\/\/\S+/.test(stdout) && Date.now() < deadline && child.exitCode === null)
    await new Promise((res) => setTimeout(res, 50));
  const url = /http:\/\/\S+\//.exec(stdout)?.[0];
  assert.ok(url, `no URL printed: ${stdout} ${stderr}`);
  assert.match(stderr, /cli-later has no metrics\.jsonl yet/);
  const snap = JSON.parse((await get(`${url}api/runs`)).body) as { runs: RunData[] };
  assert.deepEqual(
    snap.runs.map((x) => x.steps.length),
    [5, 0],
  );
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});

// ---------------------------------------------------------------- in the browser

interface Plotted {
  label: string;
  run: string;
  kind: 'raw' | 'smoothed' | 'eval';
  points: [number, number][];
}

interface LorakitPage {
  connected: boolean;
  plotted(id: string): Plotted[];
}

declare global {
  interface Window {
    lorakit: LorakitPage;
  }
}

const CHART_KEYS = {
  loss: 'loss',
  lr: 'lr',
  grad_norm: 'grad_norm',
  tokens_per_s: 'tokens_per_s',
  memory: 'memory',
} as const;

/** EMA with TensorBoard's debiasing, in float64: what the smoothing control must plot. */
function smoothRef(ys: number[], w: number): number[] {
  let last = 0;
  return ys.map((y, i) => {
    last = last * w + (1 - w) * y;
    return last / (1 - Math.pow(w, i + 1));
  });
}

test('browser: the dashboard follows a real training run live; the report opens offline', async (t) => {
  const model = fixture('models', 'llama');
  if (!model) return t.skip('test/fixtures/models/llama is missing: run scripts/reference/make-all.sh');
  if (!existsSync(CHROMIUM)) return t.skip(`${CHROMIUM} is missing: apt-get install chromium (see .ci/run)`);
  const { chromium } = await import('playwright-core');
  mkdirSync(artifacts, { recursive: true });

  // Training data: seeded word soup the fixture's tokenizer can encode.
  const words =
    'the cat sat on a mat and then ran to the big red house where a dog was sleeping in the warm sun'.split(
      ' ',
    );
  const r = rng(12);
  const data = join(work, 'train.jsonl');
  writeFileSync(
    data,
    Array.from({ length: 48 }, () =>
      JSON.stringify({
        text: Array.from(
          { length: 20 + Math.floor(r() * 30) },
          () => words[Math.floor(r() * words.length)],
        ).join(' '),
      }),
    ).join('\n') + '\n',
  );
  const baseline = makeRun('baseline', 17, 13, { model: 'earlier', lora: { r: 4 } });
  const live = join(work, 'live');
  const STEPS = 24;

  const dash = await startDashboard({ dirs: [baseline, live], port: 0, pollMs: 100 });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  let trainer: ChildProcess | null = null;
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await page.goto(dash.url);
    await page.waitForFunction(
      () => window.lorakit?.connected === true && window.lorakit.plotted('loss').length > 0,
    );
    const pointsOf = (run: string, kind: string) =>
      page.evaluate(
        ([run, kind]) =>
          window.lorakit.plotted('loss').find((s) => s.run === run && s.kind === kind)?.points.length ?? 0,
        [run, kind],
      );
    assert.equal(await pointsOf('baseline', 'raw'), 17);
    assert.equal(await pointsOf('live', 'raw'), 0);

    // A real run: about 200 ms per step (24 micro-batches of 8 rows per optimizer step).
    let log = '';
    trainer = spawnCli([
      'train',
      '--model',
      model,
      '--data',
      data,
      '--eval-data',
      data,
      '--out',
      live,
      '--max-steps',
      String(STEPS),
      '--batch-size',
      '8',
      '--grad-accum',
      '24',
      '--r',
      '4',
      '--lr',
      '3e-3',
      '--eval-every',
      '6',
      '--max-seq-len',
      '96',
    ]);
    trainer.stdout!.on('data', (c: Buffer) => (log += c.toString()));
    trainer.stderr!.on('data', (c: Buffer) => (log += c.toString()));
    const done = new Promise<number | null>((resolve) => trainer!.on('exit', (code) => resolve(code)));
    let finished = false;
    void done.then(() => (finished = true));
    // Watch the chart while the run is going: it must gain points without a reload.
    const seen: number[] = [];
    while (!finished) {
      const n = await pointsOf('live', 'raw');
      if (!finished && n !== seen.at(-1)) seen.push(n);
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(await done, 0, log);
    const during = seen.filter((n) => n > 0 && n < STEPS);
    assert.ok(during.length >= 2, `chart should grow during training, saw point counts ${seen.join(', ')}`);
    assert.deepEqual(
      during,
      [...during].sort((x, y) => x - y),
      'points only ever added',
    );
    const m = readMetrics(live);
    assert.equal(m.steps.length, STEPS);
    await page.waitForFunction(
      ([steps, evals]) => {
        const s = window.lorakit.plotted('loss').filter((x) => x.run === 'live');
        return (
          s.find((x) => x.kind === 'raw')?.points.length === steps &&
          s.find((x) => x.kind === 'eval')?.points.length === evals
        );
      },
      [STEPS, m.evals.length],
      { timeout: 10000 },
    );

    // Every plotted value is the number in metrics.jsonl, exactly.
    for (const [chart, key] of Object.entries(CHART_KEYS)) {
      const series = await page.evaluate((id) => window.lorakit.plotted(id), chart);
      for (const [dir, name] of [
        [live, 'live'],
        [baseline, 'baseline'],
      ] as const) {
        const want = readMetrics(dir);
        const raw = series.find((s) => s.run === name && s.kind === 'raw');
        assert.deepEqual(
          raw?.points,
          want.steps.map((s) => [s.step, s[key]]),
          `${chart} of ${name}`,
        );
        if (chart === 'loss')
          assert.deepEqual(
            series.find((s) => s.run === name && s.kind === 'eval')?.points,
            want.evals.map((e) => [e.step, e.eval_loss]),
            `eval loss of ${name}`,
          );
      }
    }
    // The smoothing control: 0 plots the raw values alone; 0.9 plots the debiased EMA.
    const setSmoothing = (v: string) =>
      page.$eval(
        '#smoothing',
        (el, v) => {
          (el as HTMLInputElement).value = v;
          el.dispatchEvent(new Event('input'));
        },
        v,
      );
    await setSmoothing('0');
    assert.deepEqual(
      (await page.evaluate(() => window.lorakit.plotted('loss'))).map((s) => s.kind),
      ['raw', 'eval', 'raw', 'eval'],
    );
    await setSmoothing('0.9');
    const sm = (await page.evaluate(() => window.lorakit.plotted('loss'))).find(
      (s) => s.run === 'live' && s.kind === 'smoothed',
    )!;
    const ref = smoothRef(
      m.steps.map((s) => s.loss),
      0.9,
    );
    sm.points.forEach(([x, y], i) => {
      assert.equal(x, m.steps[i].step);
      assert.ok(Math.abs(y - ref[i]) <= 1e-12 * Math.abs(ref[i]), `smoothed ${y} vs ${ref[i]}`);
    });
    assert.ok(
      Math.abs(sm.points[STEPS - 1][1] - m.steps[STEPS - 1].loss) > 1e-6,
      'smoothing changes the curve',
    );
    await setSmoothing('0.6');

    // Final numbers and config, as metrics.jsonl and run.json have them.
    const cell = (run: string, key: string) =>
      page.$eval(`tr[data-run="${run}"] td[data-key="${key}"]`, (td) => [
        td.getAttribute('data-value'),
        td.textContent,
      ]);
    const last = m.steps.at(-1)!;
    assert.deepEqual(await cell('live', 'loss'), [String(last.loss), last.loss.toFixed(4)]);
    assert.deepEqual(await cell('live', 'eval_loss'), [
      String(m.evals.at(-1)!.eval_loss),
      m.evals.at(-1)!.eval_loss.toFixed(4),
    ]);
    assert.deepEqual(await cell('live', 'step'), [String(STEPS), `${STEPS} / ${STEPS}`]);
    assert.deepEqual(await cell('live', 'lr'), [String(last.lr), last.lr.toExponential(2)]);
    assert.equal(await page.$eval('tr[data-run="live"] td.name + td', (td) => td.textContent), 'finished');
    const config = await page.$$eval('#config-table tr', (rows) =>
      rows.map((r) => Array.from(r.children, (c) => c.textContent)),
    );
    assert.deepEqual(config[0], ['key', 'baseline', 'live']);
    assert.deepEqual(
      config.find((row) => row[0] === 'flags.grad-accum'),
      ['flags.grad-accum', '', '24'],
    );
    assert.deepEqual(
      config.find((row) => row[0] === 'lora.r'),
      ['lora.r', '4', '4'],
    );
    await page.screenshot({ path: join(artifacts, 'dashboard.png'), fullPage: true });
    // Hiding a run takes it off the charts.
    await page.click('tr[data-run="baseline"] input[type=checkbox]');
    assert.deepEqual(
      [...new Set((await page.evaluate(() => window.lorakit.plotted('lr'))).map((s) => s.run))],
      ['live'],
    );
    assert.equal(errors.length, 0, errors.join('; '));

    // The report: written at the end of training, opened from file:// with the network cut off.
    const reportPath = join(live, 'report.html');
    assert.ok(existsSync(reportPath), 'train writes DIR/report.html');
    const ctx = await browser.newContext({ offline: true, viewport: { width: 1280, height: 1000 } });
    const requests: string[] = [];
    await ctx.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('file:')) return route.continue();
      requests.push(url);
      return route.abort();
    });
    const rp = await ctx.newPage();
    rp.on('pageerror', (e) => errors.push(e.message));
    await rp.goto(`file://${reportPath}`);
    await rp.waitForFunction(() => window.lorakit?.plotted('loss').length > 0);
    assert.deepEqual(requests, [], 'the report fetches nothing');
    assert.equal(errors.length, 0, errors.join('; '));
    const rcell = (key: string) =>
      rp.$eval(`tr[data-run="live"] td[data-key="${key}"]`, (td) => [
        td.getAttribute('data-value'),
        td.textContent,
      ]);
    assert.deepEqual(await rcell('loss'), [String(last.loss), last.loss.toFixed(4)]);
    assert.deepEqual(await rcell('eval_loss'), [
      String(m.evals.at(-1)!.eval_loss),
      m.evals.at(-1)!.eval_loss.toFixed(4),
    ]);
    assert.deepEqual(await rcell('best_eval_loss'), [
      String(Math.min(...m.evals.map((e) => e.eval_loss))),
      Math.min(...m.evals.map((e) => e.eval_loss)).toFixed(4),
    ]);
    assert.deepEqual(await rcell('grad_norm'), [String(last.grad_norm), last.grad_norm.toFixed(3)]);
    assert.deepEqual(await rcell('memory'), [
      String(Math.max(...m.steps.map((s) => s.memory))),
      (Math.max(...m.steps.map((s) => s.memory)) / 1024).toFixed(0) + ' KiB',
    ]);
    const rloss = await rp.evaluate(() => window.lorakit.plotted('loss'));
    assert.deepEqual(
      rloss.find((s) => s.kind === 'raw')?.points,
      m.steps.map((s) => [s.step, s.loss]),
    );
    assert.deepEqual(
      rloss.find((s) => s.kind === 'eval')?.points,
      m.evals.map((e) => [e.step, e.eval_loss]),
    );
    await rp.screenshot({ path: join(artifacts, 'report.png'), fullPage: true });
    await ctx.close();
  } finally {
    if (trainer && trainer.exitCode === null) trainer.kill('SIGKILL');
    await browser.close();
    await dash.close();
  }
});
