// The example page (examples/browser) end to end in headless Chromium on WebGPU (SwiftShader; see
// test/chromium.ts for the flags): the page and its bundle come from a local server, the test
// picks stories260K's files and a JSONL of TinyStories paragraphs as a user would, trains, generates
// and downloads the adapter; then Node loads the downloaded PEFT files onto the CPU model and gets
// the page's eval loss and greedy tokens. Uses ../shared/data (skips, saying so, when absent).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import { buildBrowser, projectRoot } from '../scripts/build-browser.js';
import { generate } from '../src/infer/generate.js';
import { loadModel } from '../src/models/load.js';
import { loadAdapter } from '../src/peft/adapters.js';
import { loadData } from '../src/train/data.js';
import { evaluate } from '../src/train/evaluate.js';
import { CHROMIUM, CHROMIUM_ARGS } from './chromium.js';
import { sharedData, writeStoriesJsonl } from './helpers.js';

const MODEL = sharedData('models', 'stories260K-hf');
const STORIES = sharedData('datasets', 'tinystories', 'tinystories_val.txt');
const skip = !existsSync(CHROMIUM)
  ? `${CHROMIUM} is missing: apt-get install chromium`
  : !MODEL || !STORIES
    ? '../shared/data (stories260K-hf, tinystories) is absent'
    : false;

const PAGE_DIR = join(projectRoot, 'examples', 'browser');
const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };

// Small enough for SwiftShader on two cores: 8 rows cut to 32 tokens, 4 rows a step.
const SETTINGS = { rank: '4', alpha: '8', lr: '0.01', steps: '12', 'batch-size': '4', 'max-seq-len': '32' };
const PROMPT = 'Once upon a time';
const NEW_TOKENS = 8;

/** Serves the page's files, and its bundle from `dist` (built into a temporary folder). */
function serve(dist: string): Promise<Server> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const [dir, name] = path.startsWith('/dist/')
      ? [dist, path.slice(6)]
      : [PAGE_DIR, path.slice(1) || 'index.html'];
    if (!/^[\w.-]+$/.test(name) || !readdirSync(dir).includes(name)) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': TYPES[extname(name)] ?? 'application/octet-stream' });
    res.end(readFileSync(join(dir, name)));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/**
 * Waits until the page's status line, no longer busy, starts with `prefix`; fails with the page's own
 * sentence when the action failed instead.
 */
async function until(page: Page, prefix: string, timeout: number): Promise<string> {
  await page.waitForFunction(
    (p) => {
      const s = document.getElementById('status');
      return s?.dataset.state === 'error' || (s?.dataset.state === 'idle' && s.textContent?.startsWith(p));
    },
    prefix,
    { timeout },
  );
  const status = page.locator('#status');
  const text = (await status.textContent()) ?? '';
  assert.equal(await status.getAttribute('data-state'), 'idle', `the page says: ${text}`);
  return text;
}

test(
  'browser example: the page trains stories260K on a JSONL file on WebGPU, generates, and its downloaded adapter gives the same eval loss on the CPU',
  { skip, timeout: 240_000 },
  async (t) => {
    const work = mkdtempSync(join(tmpdir(), 'lorakit-browser-example-'));
    const { chromium } = await import('playwright-core');
    const server = await serve(join(work, 'dist'));
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      await buildBrowser({ entry: join(PAGE_DIR, 'main.ts'), outfile: join(work, 'dist', 'main.js') });
      const data = join(work, 'stories.jsonl');
      writeStoriesJsonl(data, 0, 8);
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      t.diagnostic(await until(page, 'WebGPU is ready', 30_000));

      await page.setInputFiles(
        '#model-files',
        readdirSync(MODEL!).map((name) => join(MODEL!, name)),
      );
      t.diagnostic(await until(page, 'Model loaded', 30_000));
      await page.setInputFiles('#data-file', data);
      for (const [id, value] of Object.entries(SETTINGS)) await page.fill(`#${id}`, value);
      const started = Date.now();
      await page.click('#train');
      const trained = await until(page, 'Trained', 150_000);
      t.diagnostic(`${trained} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      const losses = await page
        .locator('#steps-log tr')
        .evaluateAll((rows) => rows.map((r) => Number((r as HTMLElement).dataset.loss)));
      assert.equal(losses.length, Number(SETTINGS.steps));
      const seconds = await page
        .locator('#steps-log tr td:last-child')
        .evaluateAll((cells) => cells.map((c) => c.textContent ?? ''));
      t.diagnostic(
        `losses: ${losses.map((l) => l.toFixed(3)).join(' ')}; seconds a step: ${seconds.join(' ')}`,
      );
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      // Every 2 steps the same 2 batches come round again: compare the first round with the last.
      assert.ok(
        mean(losses.slice(-2)) < mean(losses.slice(0, 2)) - 0.1,
        `the loss falls: ${losses.map((l) => l.toFixed(3)).join(', ')}`,
      );
      const pageEval = Number(await page.locator('#eval-loss').getAttribute('data-value'));

      await page.fill('#prompt', PROMPT);
      await page.fill('#max-new-tokens', String(NEW_TOKENS));
      await page.fill('#temperature', '0');
      await page.click('#generate');
      t.diagnostic(await until(page, 'Generated', 60_000));
      const pageText = (await page.locator('#output').textContent()) ?? '';

      const adapterDir = join(work, 'adapter');
      mkdirSync(adapterDir);
      for (const button of ['#download-weights', '#download-config']) {
        const [download] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
        await download.saveAs(join(adapterDir, download.suggestedFilename()));
      }
      assert.deepEqual(readdirSync(adapterDir).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
      assert.deepEqual(errors, [], 'no uncaught errors in the page');

      // The downloaded adapter on the CPU, in Node: the same eval loss over the same rows, and the
      // same greedy reply.
      const { model, tokenizer } = await loadModel(MODEL!, { dtype: 'float32' });
      try {
        const config = loadAdapter(model, adapterDir);
        assert.equal(config.r, 4);
        assert.equal(config.alpha, 8);
        const { examples } = await loadData(data, tokenizer, {
          completionOnly: false,
          maxSeqLen: Number(SETTINGS['max-seq-len']),
          vocabSize: model.config.vocabSize,
        });
        const cpu = await evaluate(model, examples, Number(SETTINGS['batch-size']));
        const rel = Math.abs(cpu.loss - pageEval) / cpu.loss;
        t.diagnostic(`eval loss: page (WebGPU) ${pageEval}, CPU with the downloaded adapter ${cpu.loss}`);
        assert.ok(
          rel < 1e-4,
          `eval loss on the CPU ${cpu.loss} vs the page's ${pageEval}: relative ${rel.toExponential(2)}`,
        );
        const want = generate(model, tokenizer, { prompt: PROMPT, maxNewTokens: NEW_TOKENS });
        t.diagnostic(`generated in the page: ${JSON.stringify(pageText)}`);
        assert.equal(pageText, want.text, 'the page generates what the CPU does with the downloaded adapter');
      } finally {
        model.dispose();
      }
    } finally {
      await browser.close();
      server.close();
      rmSync(work, { recursive: true, force: true });
    }
  },
);
