// lorakit in a web page: the browser bundle (scripts/build-browser.ts) builds without Node modules and
// refuses one that sneaks in; headless Chromium loads it from a local server, opens WebGPU, fetches the
// tiny Llama fixture's files and loads them from bytes (loadModelFromBytes), and what it computes on
// WebGPU equals what Node computes on the CPU: host memory and bf16 conversion without the addon, the
// tokenizer, an embedding lookup + RMSNorm + sum, and the forward loss (which needs the WebGPU GEMM,
// attention and cross-entropy kernels).
// Chromium and its WebGPU flags: test/chromium.ts.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { buildBrowser, projectRoot } from '../scripts/build-browser.js';
import { noGrad } from '../src/autograd/tape.js';
import { SafetensorsFile, openSafetensors } from '../src/io/safetensors.js';
import { loadModel } from '../src/models/load.js';
import { embedding } from '../src/ops/embedding.js';
import { sum } from '../src/ops/elementwise.js';
import { rmsnorm } from '../src/ops/rmsnorm.js';
import { CPU_BINDINGS } from '../src/ops/spec/index.js';
import { f32ArrayToBf16 } from '../src/tensor/dtype.js';
import { Tensor, tidy } from '../src/tensor/tensor.js';
import { padBatch, toDevice } from '../src/train/batching.js';
import { lossSum } from '../src/train/loss.js';
import { CHROMIUM, CHROMIUM_ARGS } from './chromium.js';
import { fixture, relError, rng } from './helpers.js';

declare global {
  interface Window {
    /** The bundle's exports, as the test page imports them. */
    lkBrowser: typeof import('../src/browser.js');
  }
}

const work = mkdtempSync(join(tmpdir(), 'lorakit-browser-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

/** Token rows the page and Node both run: a padded batch of two sequences. */
const ROWS = [
  [1, 5, 9, 14, 3, 27, 8],
  [1, 42, 7, 7, 19],
];
const TEXT = 'Once upon a time, a little cat sat on the mat.';

test('browser bundle: builds from src/browser.ts without Node modules; a Node import fails the build', async () => {
  const built = await buildBrowser({ outfile: join(work, 'lorakit.js') });
  assert.ok(built.bytes > 10_000, `bundle of ${built.bytes} bytes`);
  assert.deepEqual(built.twins, [
    'src/backend/cpu/addon.ts',
    'src/backend/cuda/addon.ts',
    'src/tokenizer/folder.ts',
  ]);
  for (const nodeOnly of [
    'src/io/file.ts',
    'src/io/safetensors.ts',
    'src/io/gguf.ts',
    'src/models/load.ts',
    'src/train/data.ts',
    'src/train/tables.ts',
    'src/peft/adapters.ts',
    'src/peft/config.ts',
  ])
    assert.ok(!built.inputs.includes(nodeOnly), `${nodeOnly} is in the bundle`);
  const code = readFileSync(built.outfile, 'utf8');
  assert.doesNotMatch(code, /\bfrom\s*["']node:|import\(\s*["']node:|\brequire\(/);

  // A module that imports node:fs (by path through io/file.ts) must fail loudly, naming the chain.
  const bad = join(work, 'bad-entry.ts');
  writeFileSync(
    bad,
    `export { readGGUF } from ${JSON.stringify(join(projectRoot, 'src', 'io', 'gguf.ts'))};\n`,
  );
  await assert.rejects(buildBrowser({ entry: bad, outfile: join(work, 'bad.js') }), (e: unknown) => {
    const text = ((e as { errors?: { text: string }[] }).errors ?? []).map((x) => x.text).join('\n');
    assert.match(
      text,
      /lorakit: the browser bundle reaches the Node module 'node:fs' \(imported by src\/io\/file\.ts <- src\/io\/gguf\.ts/,
    );
    return true;
  });
});

test('browser twins: the host memory and bf16 conversion of addon.browser.ts match the native addon', async () => {
  const twin = await import('../src/backend/cpu/addon.browser.js');
  const { cpu } = await import('../src/backend/cpu/addon.js');
  // Every float32 class: random bit patterns (NaNs, infinities, subnormals, ties included).
  const n = 1 << 16;
  const bits = new Uint32Array(n);
  const r = rng(7);
  for (let i = 0; i < n; i++) bits[i] = Math.floor(r() * 2 ** 32) >>> 0;
  bits.set([0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff, 0x00000001, 0x3f808000, 0x3f818000]);
  const x = new Float32Array(bits.buffer);
  const [js, native] = [new Uint16Array(n), new Uint16Array(n)];
  twin.cpu.f32ToBf16(js, x, n);
  cpu.f32ToBf16(native, x, n);
  assert.deepEqual(js, native);
  f32ArrayToBf16(js.fill(0), x);
  assert.deepEqual(js, native);

  const [live0] = twin.cpu.memoryStats(true);
  const a = twin.cpu.alloc(100);
  const b = twin.cpu.alloc(28);
  assert.deepEqual(twin.cpu.memoryStats(false), [live0 + 128, live0 + 128]);
  twin.cpu.free(a);
  twin.cpu.free(a); // a second free of one buffer is not counted twice
  assert.deepEqual(twin.cpu.memoryStats(false), [live0 + 28, live0 + 128]);
  assert.deepEqual(
    twin.cpu.memoryStats(true),
    [live0 + 28, live0 + 28],
    'a reset restarts the peak from now',
  );
  twin.cpu.free(b);
  // Every other kernel entry point says, in one sentence, that it needs the addon.
  for (const name of Object.keys(CPU_BINDINGS) as (keyof typeof CPU_BINDINGS)[])
    if (name !== 'f32ToBf16')
      assert.throws(() => (twin.cpu[name] as () => void)(), { message: twin.CPU_ADDON_MISSING! }, name);
});

// ---------------------------------------------------------------- the page

interface Session {
  browser: Browser;
  page: Page;
  server: Server;
  url: string;
  /** Console errors and uncaught page errors, for failure messages. */
  errors: string[];
}

let session: Promise<Session> | null = null;

after(async () => {
  if (!session) return;
  const s = await session.catch(() => null);
  await s?.browser.close();
  s?.server.close();
});

/** Serves the page, the bundle and the model fixture's files (nothing else) from 127.0.0.1. */
function serve(bundle: string, modelDir: string): Promise<Server> {
  const files = new Set(readdirSync(modelDir));
  const page = `<!doctype html><meta charset="utf-8"><title>lorakit</title>
<script type="module">
  import * as lk from '/lorakit.js';
  window.lkBrowser = lk;
  document.title = 'ready';
</script>`;
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const send = (type: string, body: string | Buffer): void => {
      res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (path === '/') return send('text/html', page);
    if (path === '/lorakit.js') return send('text/javascript', readFileSync(bundle));
    const m = /^\/model\/([^/]+)$/.exec(path);
    if (m && files.has(m[1])) return send('application/octet-stream', readFileSync(join(modelDir, m[1])));
    res.writeHead(404).end();
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function openSession(modelDir: string): Promise<Session> {
  const { chromium } = await import('playwright-core');
  const built = await buildBrowser({ outfile: join(work, 'page', 'lorakit.js') });
  const server = await serve(built.outfile, modelDir);
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // fetchModelFiles asks for the optional tokenizer files; the ones the fixture lacks log a 404.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
  });
  await page.goto(url);
  await page.waitForFunction(() => document.title === 'ready', null, { timeout: 30_000 });
  return { browser, page, server, url, errors };
}

/** The shared page, or a skip when Chromium or the fixture is missing. */
async function pageOrSkip(t: { skip(message: string): void }): Promise<Session | null> {
  const model = fixture('models', 'llama');
  if (!model) {
    t.skip('test/fixtures/models/llama is missing: run scripts/reference/make-all.sh');
    return null;
  }
  if (!existsSync(CHROMIUM)) {
    t.skip(`${CHROMIUM} is missing: apt-get install chromium (see .ci/run)`);
    return null;
  }
  session ??= openSession(model);
  return session;
}

/** What the page reports: values, or the error it ran into (a missing adapter, a missing kernel). */
type PageResult<T> = { ok: true; value: T } | { ok: false; error: string };

function unwrap<T>(r: PageResult<T>, s: Session, what: string): T {
  if (r.ok) return r.value;
  const hint = /WebGPU adapter|navigator\.gpu/.test(r.error)
    ? ` (Chromium ran with ${CHROMIUM_ARGS.join(' ')}: this machine gives headless Chromium no WebGPU adapter; see the flags tried in test/chromium.ts)`
    : '';
  const pageErrors = s.errors.length ? ` (page errors: ${s.errors.join(' | ')})` : '';
  assert.fail(`${what} failed in Chromium: ${r.error}${hint}${pageErrors}`);
}

interface Plumbing {
  adapter: string;
  hostBf16: number[];
  liveAfterAlloc: number;
  liveAfterFree: number;
  cpuKernelError: string;
  fileNames: string[];
  fromFileError: string;
  ids: number[];
  bf16Bits: number[];
  normed: number[];
  total: number;
}

test('browser: WebGPU in Chromium, host memory without the addon, the model from bytes; embedding + rmsnorm + sum equal the CPU', async (t) => {
  const s = await pageOrSkip(t);
  if (!s) return;
  const r = await s.page.evaluate(
    async ({ rows, text }): Promise<PageResult<Plumbing>> => {
      const lk = window.lkBrowser;
      try {
        // Host memory is ArrayBuffers, counted as the addon counts native memory; bf16 converts in JS.
        const base = lk.memoryStats().liveBytes;
        const h = lk.Tensor.from([1.5, -2.25, 3.14159, 1e-3, 65504.5], [5], 'bf16');
        const liveAfterAlloc = lk.memoryStats().liveBytes - base;
        const hostBf16 = Array.from(h.toFloat32());
        h.dispose();
        const liveAfterFree = lk.memoryStats().liveBytes - base;
        let cpuKernelError = '';
        try {
          const a = lk.Tensor.from([1, 2], [2]);
          lk.add(a, a);
        } catch (e) {
          cpuKernelError = e instanceof Error ? e.message : String(e);
        }

        await lk.prepareDevice('webgpu');
        const adapter = await navigator.gpu.requestAdapter();
        const info = adapter?.info;
        const fetched = await lk.fetchModelFiles('/model/');
        // The Files a page is given (an <input type="file">) read into the same ModelFiles.
        const files = await lk.readModelFiles(
          Object.entries(fetched).map(([name, bytes]) => new File([bytes.slice()], name)),
        );
        const fileNames = Object.keys(files).sort();
        let fromFileError = '';
        try {
          lk.Tokenizer.fromFile('/model/tokenizer.json');
        } catch (e) {
          fromFileError = e instanceof Error ? e.message : String(e);
        }
        // A weight read as bf16 through the host's JS conversion (the page has no addon).
        const st = lk.SafetensorsFile.fromBytes(files['model.safetensors'], 'model.safetensors');
        const w = st.read('model.norm.weight', 'bf16');
        const bf16Bits = Array.from(w.as('bf16'));
        w.dispose();

        const { model, tokenizer } = await lk.loadModelFromBytes(files, {
          device: 'webgpu',
          dtype: 'float32',
        });
        const ids = tokenizer.encode(text);
        const B = rows.length;
        const T = Math.max(...rows.map((r) => r.length));
        const flat = rows.flatMap((r) => [...r, ...new Array<number>(T - r.length).fill(0)]);
        const idsT = lk.Tensor.from(flat, [B, T], 'i32', 'webgpu');
        const x = lk.embedding(model.embedTokens, idsT, 'f32');
        const y = lk.rmsnorm(x, model.layers[0].inputNorm, model.config.rmsNormEps);
        const z = lk.sum(y);
        const normed = Array.from(await y.toFloat32Async());
        const total = (await z.toFloat32Async())[0];
        for (const u of [idsT, x, y, z]) u.dispose();
        return {
          ok: true,
          value: {
            adapter: [info?.vendor, info?.architecture, info?.description].filter(Boolean).join(' '),
            hostBf16,
            liveAfterAlloc,
            liveAfterFree,
            cpuKernelError,
            fileNames,
            fromFileError,
            ids,
            bf16Bits,
            normed,
            total,
          },
        };
      } catch (e) {
        return { ok: false, error: e instanceof Error ? e.message : String(e) };
      }
    },
    { rows: ROWS, text: TEXT },
  );
  const got = unwrap(r, s, 'the WebGPU plumbing');
  t.diagnostic(`Chromium WebGPU adapter: ${got.adapter}`);

  // Host memory and bf16, as Node's addon does them.
  const nodeBf16 = Tensor.from([1.5, -2.25, 3.14159, 1e-3, 65504.5], [5], 'bf16');
  assert.deepEqual(got.hostBf16, Array.from(nodeBf16.toFloat32()));
  nodeBf16.dispose();
  assert.equal(got.liveAfterAlloc, 10);
  assert.equal(got.liveAfterFree, 0);
  assert.equal(
    got.cpuKernelError,
    "lorakit: the CPU backend needs its native addon (Node); in a browser use the 'webgpu' device.",
  );

  // The same model in Node, on the CPU.
  const dir = fixture('models', 'llama')!;
  assert.deepEqual(
    got.fileNames,
    readdirSync(dir)
      .filter((n) => n !== 'expected.json')
      .sort(),
    'fetchModelFiles fetched the folder (its optional files that exist)',
  );
  assert.equal(
    got.fromFileError,
    `lorakit: Tokenizer.fromFile("/model/tokenizer.json") reads files by path, which needs Node; in a browser use Tokenizer.fromFiles with the files' texts.`,
  );
  const { model, tokenizer } = await loadModel(dir, { dtype: 'float32' });
  assert.deepEqual(got.ids, tokenizer.encode(TEXT));
  const st: SafetensorsFile = openSafetensors(join(dir, 'model.safetensors'));
  const w = st.read('model.norm.weight', 'bf16');
  assert.deepEqual(got.bf16Bits, Array.from(w.as('bf16')), 'bf16 conversion without the addon');
  w.dispose();
  const { normed, total } = noGrad(() =>
    tidy(() => {
      const B = ROWS.length;
      const T = Math.max(...ROWS.map((r) => r.length));
      const flat = ROWS.flatMap((r) => [...r, ...new Array<number>(T - r.length).fill(0)]);
      const y = rmsnorm(
        embedding(model.embedTokens, Tensor.from(flat, [B, T], 'i32'), 'f32'),
        model.layers[0].inputNorm,
        model.config.rmsNormEps,
      );
      return { normed: y.toFloat32(), total: sum(y).item() };
    }),
  );
  assert.equal(got.normed.length, normed.length);
  const err = relError(got.normed, normed);
  assert.ok(err < 1e-4, `rmsnorm(embedding) on WebGPU vs the CPU: relative error ${err.toExponential(3)}`);
  const sumErr = Math.abs(got.total - total) / Math.max(Math.abs(total), 1e-6);
  assert.ok(sumErr < 1e-4, `sum on WebGPU ${got.total} vs the CPU ${total}`);
});

test('browser: the forward loss of the Llama fixture on WebGPU equals the CPU (needs the WebGPU gemm, attention and cross-entropy kernels)', async (t) => {
  const s = await pageOrSkip(t);
  if (!s) return;
  const examples = ROWS.map((ids) => ({ ids, labels: ids }));
  const r = await s.page.evaluate(
    async ({ examples }): Promise<PageResult<number>> => {
      const lk = window.lkBrowser;
      try {
        await lk.prepareDevice('webgpu');
        const files = await lk.fetchModelFiles('/model/');
        const { model } = await lk.loadModelFromBytes(files, { device: 'webgpu', dtype: 'float32' });
        const { batch, targets } = lk.toDevice(lk.padBatch(examples));
        const loss = lk.noGrad(() => lk.lossSum(model, batch, targets));
        const value = (await loss.toFloat32Async())[0];
        for (const u of [batch.ids, batch.positions, batch.segments, targets, loss]) u.dispose();
        return { ok: true, value };
      } catch (e) {
        return { ok: false, error: e instanceof Error ? e.message : String(e) };
      }
    },
    { examples },
  );
  const got = unwrap(r, s, 'the forward loss on WebGPU');
  const { model } = await loadModel(fixture('models', 'llama')!, { dtype: 'float32' });
  const want = noGrad(() =>
    tidy(() => {
      const { batch, targets } = toDevice(padBatch(examples));
      return lossSum(model, batch, targets).item();
    }),
  );
  const err = Math.abs(got - want) / Math.abs(want);
  t.diagnostic(
    `loss sum: WebGPU in Chromium ${got}, CPU in Node ${want}, relative error ${err.toExponential(2)}`,
  );
  assert.ok(err < 1e-4, `loss on WebGPU ${got} vs the CPU ${want}: relative error ${err.toExponential(3)}`);
});
