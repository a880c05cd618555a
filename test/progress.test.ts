// The training progress display (a bar on a terminal, plain periodic lines elsewhere) and the
// validation of `lorakit train --config FILE.yaml`, which runs before any work starts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatBytes, formatDuration, Progress } from '../src/cli/progress.js';
import { parseTrainFlags } from '../src/cli/train.js';
import type { StepMetrics } from '../src/train/trainer.js';
import { rng } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'lorakit-progress-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

/** Seeded, plausible step metrics: 1.3 s per step, noisy token counts. */
function steps(n: number, seed: number): StepMetrics[] {
  const r = rng(seed);
  let elapsed = 0;
  return Array.from({ length: n }, (_, i) => {
    const dt = 1.3 + r() * 0.4;
    elapsed += dt;
    const tokens = 700 + Math.floor(r() * 300);
    return {
      step: i + 1,
      totalSteps: n,
      epoch: 0,
      loss: 3.1 - i * 0.013 + r() * 0.1,
      lr: 2e-4 * (1 - i / n),
      grad_norm: 0.5 + r(),
      tokens,
      tokens_per_s: tokens / (dt * 0.9),
      memory: 123_456_789 + i * 1024,
      elapsed,
    };
  });
}

class Collector {
  chunks: string[] = [];
  constructor(
    readonly isTTY: boolean,
    readonly columns = 100,
  ) {}
  write(s: string): boolean {
    this.chunks.push(s);
    return true;
  }
  get text(): string {
    return this.chunks.join('');
  }
}

/** What a terminal would show on its current line after all the \r and erase-line codes. */
function visibleLines(text: string): string[] {
  return text.split('\n').map((l) =>
    l
      .split('\r')
      .at(-1)!
      .replace(/\x1b\[2K/g, ''),
  );
}

test('formatBytes and formatDuration', () => {
  assert.equal(formatBytes(512 * 1024), '512 KiB');
  assert.equal(formatBytes(3.5 * 1024 * 1024), '3.5 MiB');
  assert.equal(formatBytes(7 * 1024 ** 3 + 1024 ** 3 / 4), '7.25 GiB');
  assert.equal(formatDuration(7), '7s');
  assert.equal(formatDuration(127), '2m07s');
  assert.equal(formatDuration(3 * 3600 + 61), '3h01m');
  assert.equal(formatDuration(NaN), '?');
  assert.equal(formatDuration(-1), '?');
});

test('plain lines (not a terminal): first step, then one per interval, the last step, eval lines', () => {
  const ms = steps(33, 7);
  const out = new Collector(false);
  let clock = 0;
  const p = new Progress(out, { now: () => clock, interval: 10_000, evalLoss: 3.25 });
  ms.forEach((m, i) => {
    clock = i * 1500; // 1.5 s per step: a line every 7 steps
    p.step(m);
    if (m.step === 20) p.eval(20, 2.987654);
  });
  p.done();
  const lines = out.text.trimEnd().split('\n');
  const stepLines = lines.filter((l) => /^step \d+\/33 \(/.test(l));
  assert.deepEqual(
    stepLines.map((l) => Number(/^step (\d+)/.exec(l)![1])),
    [1, 8, 15, 22, 29, 33],
  );
  assert.ok(
    out.text.split('').every((c) => c !== '\r' && c !== '\x1b'),
    'no terminal codes in plain mode',
  );
  assert.ok(lines.includes('step 20/33 | eval loss 2.9877'), lines.join('\n'));
  const first = stepLines[0];
  assert.match(
    first,
    /^step 1\/33 \(3%\) \| loss \d\.\d{4} \| eval@0 3\.2500 \| lr 2\.00e-4 \| grad \d\.\d{3} \| [\d,]+ tok\/s \| mem 117\.7 MiB \| ETA /,
  );
  assert.match(stepLines[3], /eval@20 2\.9877/, 'the bar shows the latest eval loss and its step');
  const last = stepLines.at(-1)!;
  assert.ok(last.startsWith('step 33/33 (100%)'), last);
  assert.match(last, /took [\dhms]+$/);
  assert.ok(last.includes(`loss ${ms[32].loss.toFixed(4)}`));
});

test('tokens/s and ETA come from the recent steps (float64 reference)', () => {
  const ms = steps(60, 3);
  const p = new Progress(new Collector(false), { now: () => 0 });
  ms.slice(0, 45).forEach((m) => p.step(m));
  const recent = ms.slice(25, 45); // the last 20 steps
  let tokens = 0;
  let secs = 0;
  for (const m of recent) {
    tokens += m.tokens;
    secs += m.tokens / m.tokens_per_s;
  }
  assert.ok(Math.abs(p.tokensPerSecond() - tokens / secs) < 1e-9 * (tokens / secs));
  const perStep = (ms[44].elapsed - ms[25].elapsed) / 19;
  assert.ok(Math.abs(p.eta() - perStep * 15) < 1e-9);
});

test('terminal bar: redrawn in place, never wider than the terminal, throttled, eval shown', () => {
  for (const columns of [200, 100, 60, 30]) {
    const ms = steps(127, 11);
    const out = new Collector(true, columns);
    let clock = 0;
    const p = new Progress(out, { now: () => clock, redraw: 100 });
    ms.forEach((m, i) => {
      clock = i * 40; // 40 ms per step: about one redraw in three
      p.step(m);
      if (m.step === 64) p.eval(64, 2.5);
    });
    p.done();
    const redraws = out.chunks.filter((c) => c.startsWith('\r\x1b[2K') && !c.endsWith('\n'));
    assert.ok(redraws.length > 30 && redraws.length < 60, `${columns} cols: ${redraws.length} redraws`);
    for (const r of redraws) {
      const line = visibleLines(r)[0];
      assert.ok(line.length <= columns - 1, `${columns} cols: '${line}' is ${line.length} wide`);
    }
    const lines = visibleLines(out.text).filter(Boolean);
    assert.ok(lines.includes('step 64/127 | eval loss 2.5000'), 'eval printed on its own line');
    const final = lines.at(-1)!;
    assert.ok(final.includes('127/127'), final);
    assert.match(final, /127\/127 \| loss \d\.\d{4}/, final);
    if (columns >= 60)
      assert.match(final, /\| took [\dhms]+$/, `${columns} cols: the ETA/took field is kept longest`);
    if (columns >= 200) {
      assert.match(
        final,
        /^█{30} 127\/127 \| loss \d\.\d{4} \| eval@64 2\.5000 \| lr [\d.e-]+ \| [\d,]+ tok\/s \| mem [\d.]+ MiB \| took [\dhms]+$/,
        final,
      );
      const mid = visibleLines(redraws[Math.floor(redraws.length / 2)])[0];
      assert.match(mid, /^█+░+ +\d+\/127 \| /, mid);
    }
    assert.ok(out.text.endsWith('\n'), 'done() ends the line');
  }
});

test('done() shows a last step that a throttled redraw or line skipped (a run stopped early)', () => {
  const ms = steps(50, 5);
  for (const tty of [true, false]) {
    const out = new Collector(tty);
    const p = new Progress(out, { now: () => 0 });
    ms.slice(0, 17).forEach((m) => p.step(m)); // the clock never moves: only step 1 is shown
    p.done();
    const lines = visibleLines(out.text).filter(Boolean);
    assert.ok(lines.at(-1)!.includes('17/50'), `${tty}: ${lines.at(-1)}`);
  }
});

// ---- lorakit train --config FILE.yaml ----

function config(name: string, text: string): string {
  const p = join(work, name);
  writeFileSync(p, text);
  return p;
}

const base = ['--model', 'm', '--data', 'd.jsonl', '--out', 'o'];

test('--config: every flag as a key (kebab, snake or camel case); command-line flags win', () => {
  const p = config(
    'ok.yaml',
    'model: some/model\ndata: train.jsonl\nout: runs/a\nlr: 3e-4\nbatch_size: 8\nmaxSeqLen: 256\ntarget-modules: [q_proj, v_proj]\npacking: true\nepochs: 3\nscheduler: cosine\nwarmup_ratio: 0.1\n',
  );
  const f = parseTrainFlags(['--config', p]);
  assert.equal(f.model, 'some/model');
  assert.equal(f.lr, 3e-4);
  assert.equal(f['batch-size'], 8);
  assert.equal(f['max-seq-len'], 256);
  assert.deepEqual(f['target-modules'], ['q_proj', 'v_proj']);
  assert.equal(f.packing, true);
  assert.equal(f.scheduler, 'cosine');
  const g = parseTrainFlags([
    '--config',
    p,
    '--lr',
    '1e-3',
    '--max-steps',
    '7',
    '--warmup-steps',
    '2',
    '--target-modules',
    'o_proj',
  ]);
  assert.equal(g.lr, 1e-3);
  assert.equal(g['max-steps'], 7);
  assert.equal(g.epochs, undefined, "a --max-steps on the command line replaces the file's epochs");
  assert.equal(g['warmup-steps'], 2);
  assert.equal(g['warmup-ratio'], undefined);
  assert.deepEqual(g['target-modules'], ['o_proj']);
});

test('--config: clear one-sentence errors with the file and line', () => {
  const cases: [string, string, RegExp][] = [
    [
      'unknown.yaml',
      'lr: 1e-3\nbatch_sizee: 4\n',
      /unknown\.yaml line 2: unknown key 'batch_sizee' \(did you mean batch-size\?\)\.$/,
    ],
    ['unknown2.yaml', 'lora_rank: 4\n', /line 1: unknown key 'lora_rank'\.$/],
    ['type.yaml', 'r: 8\nlr: fast\n', /type\.yaml line 2: key 'lr' must be a number, got 'fast'\.$/],
    ['int.yaml', 'r: 2.5\n', /line 1: key 'r' must be an integer, got '2\.5'\.$/],
    ['bool.yaml', 'packing: yes\n', /key 'packing' must be true or false, got 'yes'\.$/],
    ['string.yaml', 'data: [a.jsonl, b.jsonl]\n', /key 'data' must be a string/],
    ['list.yaml', 'target_modules: [q_proj, {a: 1}]\n', /key 'target_modules' must be a list of names/],
    ['range.yaml', 'warmup_ratio: 1.5\n', /key 'warmup_ratio' must be at most 1, got 1\.5\.$/],
    ['range2.yaml', '\n\nlr: 0\n', /range2\.yaml line 3: key 'lr' must be greater than 0, got 0\.$/],
    ['range3.yaml', 'r: 0\n', /key 'r' must be at least 1, got 0\.$/],
    ['range4.yaml', 'dropout: -0.1\n', /key 'dropout' must be at least 0/],
    [
      'choice.yaml',
      'scheduler: cosin\n',
      /key 'scheduler' must be one of constant, linear, cosine, got 'cosin' \(did you mean cosine\?\)\.$/,
    ],
    ['null.yaml', 'lr:\n', /line 1: key 'lr' has no value\.$/],
    ['dup.yaml', 'lr: 1\nlr: 2\n', /dup\.yaml line 2: invalid YAML \(Map keys must be unique\)\.$/],
    [
      'dup2.yaml',
      'batch_size: 1\nbatch-size: 2\n',
      /line 2: key 'batch-size' sets batch-size again \(already set by 'batch_size'\)\.$/,
    ],
    ['bad.yaml', 'lr: [1e-3\n', /bad\.yaml line \d+: invalid YAML/],
    ['list-doc.yaml', '- lr\n- r\n', /expected a mapping of flag names to values/],
    ['empty.yaml', '', /empty\.yaml is empty/],
    ['nested.yaml', 'config: other.yaml\n', /cannot name another config file/],
    ['both.yaml', 'epochs: 2\nmax_steps: 3\n', /give --epochs or --max-steps, not both/],
  ];
  for (const [name, text, re] of cases) {
    const p = config(name, text);
    assert.throws(
      () => parseTrainFlags(['--config', p, ...base]),
      (e: Error) => {
        assert.match(e.message, /^lorakit train: /, `${name}: ${e.message}`);
        assert.match(e.message, re, `${name}: ${e.message}`);
        assert.equal(e.message.split('\n').length, 1, `${name}: one line`);
        return true;
      },
    );
  }
  assert.throws(
    () => parseTrainFlags(['--config', join(work, 'nope.yaml'), ...base]),
    /--config .*nope\.yaml does not exist/,
  );
  assert.throws(() => parseTrainFlags(['--config', work, ...base]), /is not a file/);
});
