// The server against hostile input: adapter files swapped for links or replaced by FIFOs while being
// loaded, cross-site requests, huge prompts, clients that hang up mid-body; and the text of a reply
// decoded as transformers does (no lost leading space, multi-byte characters split across tokens).
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, linkSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { CausalLM } from '../src/models/llama.js';
import { loadModel } from '../src/models/load.js';
import { addAdapter, adapterParameters, deleteAdapter, saveAdapter } from '../src/peft/adapters.js';
import { LORA_DEFAULTS } from '../src/peft/config.js';
import { LorakitServer } from '../src/serve/server.js';
import type { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { sharedData } from './helpers.js';

const MODEL = sharedData('models', 'stories260K-hf');
const SKIP = MODEL === null && 'shared data missing: models/stories260K-hf';

const work = mkdtempSync(join(tmpdir(), 'lorakit-hostile-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

let loaded: Promise<{ model: CausalLM; tokenizer: Tokenizer }> | null = null;
/** The stories260K model, loaded once for every test here. */
function stories(): Promise<{ model: CausalLM; tokenizer: Tokenizer }> {
  loaded ??= loadModel(MODEL!);
  return loaded;
}

/** Writes a small adapter for the model (seeded, so two seeds give different weights) into `dir`. */
function writeAdapter(model: CausalLM, dir: string, seed: number): void {
  const name = `tmp-${seed}`;
  addAdapter(model, name, { ...LORA_DEFAULTS, r: 2, alpha: 4, targetModules: ['q_proj', 'v_proj'] }, seed);
  try {
    saveAdapter(model, name, dir);
  } finally {
    deleteAdapter(model, name);
  }
}

/** The loaded adapter's tensors, flattened (to tell which file they came from). */
function weightsOf(model: CausalLM, name: string): number[] {
  return adapterParameters(model, name).flatMap(([, t]) => Array.from(t.toFloat32()));
}

interface Reply {
  status: number;
  headers: Headers;
  body: { error?: { message: string; code: string; param: string | null } } & Record<string, unknown>;
}

async function call(
  url: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const r = await fetch(`${url}${path}`, {
    method,
    headers: { 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, headers: r.headers, body: text ? (JSON.parse(text) as Reply['body']) : {} };
}

/** A 4xx error whose message is one sentence of lorakit's. */
function assertClientError(r: Reply, what: string): void {
  assert.ok(r.status >= 400 && r.status < 500, `${what}: status ${r.status} ${JSON.stringify(r.body)}`);
  const m = r.body.error?.message ?? '';
  assert.match(m, /^lorakit: [^\n]+[.)]$/, `${what}: message ${JSON.stringify(m)}`);
}

function kill(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

// ---- run-time adapter loads ---------------------------------------------------------------------------

describe('run-time adapter loads', { skip: SKIP }, () => {
  let model: CausalLM;
  let server: LorakitServer;
  let url = '';
  const root = join(work, 'adapters');
  const outside = join(work, 'outside');

  before(async () => {
    ({ model } = await stories());
    const { tokenizer } = await stories();
    mkdirSync(root);
    writeAdapter(model, join(root, 'swap'), 1);
    writeAdapter(model, outside, 2);
    cpSync(join(root, 'swap'), join(root, 'store'), { recursive: true });
    cpSync(join(root, 'swap'), join(root, 'folder'), { recursive: true });
    server = new LorakitServer({ model, tokenizer, modelName: 'stories', adapterDir: root });
    ({ url } = await server.listen(0));
  });
  after(() => server.close());

  test('a file or folder swapped for a link to outside weights while loads run: never loaded, never a 500', async () => {
    // The inside weights as loaded from the untouched copy.
    assert.equal((await call(url, 'POST', '/v1/adapters', { name: 'ref', path: 'store' })).status, 200);
    const inside = weightsOf(model, 'ref');
    assert.equal((await call(url, 'DELETE', '/v1/adapters/ref')).status, 200);
    // Another process swaps, as fast as it can, each adapter file for a link to the outside adapter's
    // and back (atomic renames), and the folder 'folder' for a link to the outside folder and back.
    const swapper = spawn(
      process.execPath,
      [
        '-e',
        `const fs = require('fs'), path = require('path');
         const [root, outside] = process.argv.slice(1);
         const swap = (dir, f) => {
           const p = path.join(root, dir, f), tmp = p + '.tmp';
           fs.symlinkSync(path.join(outside, f), tmp); fs.renameSync(tmp, p);
           fs.linkSync(path.join(root, 'store', f), tmp); fs.renameSync(tmp, p);
         };
         process.stdout.write('ready\\n');
         for (;;) {
           swap('swap', 'adapter_model.safetensors');
           swap('swap', 'adapter_config.json');
           const d = path.join(root, 'folder');
           fs.renameSync(d, d + '.real'); fs.symlinkSync(outside, d);
           fs.unlinkSync(d); fs.renameSync(d + '.real', d);
         }`,
        root,
        outside,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((resolve) => swapper.stdout!.once('data', () => resolve()));
      const outcomes = new Map<number, number>();
      let outsideLoads = 0;
      const failures: string[] = [];
      for (let i = 0; i < 300; i++) {
        const path = i % 3 === 2 ? 'folder' : 'swap';
        const r = await call(url, 'POST', '/v1/adapters', { name: 'raced', path });
        outcomes.set(r.status, (outcomes.get(r.status) ?? 0) + 1);
        if (r.status === 200) {
          if (weightsOf(model, 'raced').some((v, j) => v !== inside[j])) outsideLoads++;
          assert.equal((await call(url, 'DELETE', '/v1/adapters/raced')).status, 200);
          continue;
        }
        try {
          assertClientError(r, `load ${i} of '${path}'`);
        } catch (e) {
          failures.push((e as Error).message);
        }
      }
      const summary = `statuses ${JSON.stringify([...outcomes])}`;
      assert.equal(outsideLoads, 0, `outside weights were served ${outsideLoads} times (${summary})`);
      assert.deepEqual(failures.slice(0, 3), [], `${failures.length} bad answers (${summary})`);
      assert.ok((outcomes.get(200) ?? 0) > 0, `no load succeeded at all (${summary})`);
    } finally {
      kill(swapper);
    }
  });

  test('a FIFO as adapter_config.json or adapter_model.safetensors is refused at once; the server answers meanwhile', async () => {
    const writers: ChildProcess[] = [];
    try {
      for (const [dir, fifo] of [
        ['fifo-config', 'adapter_config.json'],
        ['fifo-weights', 'adapter_model.safetensors'],
      ]) {
        writeAdapter(model, join(root, dir), 3);
        rmSync(join(root, dir, fifo));
        execFileSync('mkfifo', [join(root, dir, fifo)]);
        // Something writes to it after 2 s: a server that waits on the FIFO would answer only then.
        writers.push(
          spawn('sh', ['-c', `sleep 2; exec printf '{}' > "$0"`, join(root, dir, fifo)], { stdio: 'ignore' }),
        );
        const t0 = performance.now();
        const [load, models] = await Promise.all([
          call(url, 'POST', '/v1/adapters', { name: 'fifo', path: dir }),
          call(url, 'GET', '/v1/models'),
        ]);
        const ms = performance.now() - t0;
        assert.equal(models.status, 200);
        assertClientError(load, dir);
        assert.equal(load.body.error?.code, 'invalid_adapter_path');
        assert.match(
          load.body.error!.message,
          new RegExp(`${fifo.replace('.', '\\.')} that is not a regular file`),
        );
        assert.ok(ms < 1500, `${dir}: answered after ${Math.round(ms)} ms`);
      }
    } finally {
      writers.forEach(kill);
    }
  });
});
