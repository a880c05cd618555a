// resolveModel against a fake Hugging Face Hub on 127.0.0.1 (two node:http servers: the Hub and a
// "CDN" on another origin for large files), started here and stopped when the file's tests end.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { hubCacheDir, resolveModel } from '../src/io/hub.js';
import { openSafetensorsModel, writeSafetensors } from '../src/io/safetensors.js';
import { Tensor } from '../src/tensor/tensor.js';
import { randn } from './helpers.js';

const COMMIT = '0123456789abcdef0123456789abcdef01234567';
const TOKEN = 'secret-token';
const work = mkdtempSync(join(tmpdir(), 'lorakit-hub-'));

interface RepoFile {
  bytes: Uint8Array;
  /** Served from the CDN through a redirect, like a Git LFS file. */
  lfs: boolean;
}

const sha = (b: Uint8Array, algo = 'sha256'): string => createHash(algo).update(b).digest('hex');
const text = (s: string): RepoFile => ({ bytes: new TextEncoder().encode(s), lfs: false });

function safetensorsBytes(tensors: Record<string, Tensor>): Uint8Array {
  const p = join(work, `tmp-${Math.random().toString(36).slice(2)}.safetensors`);
  writeSafetensors(p, tensors);
  for (const t of Object.values(tensors)) t.dispose();
  return new Uint8Array(readFileSync(p));
}

const repos = new Map<string, Map<string, RepoFile>>();
function makeRepos(): void {
  const common = {
    'config.json': text('{"model_type":"llama"}'),
    'tokenizer.json': text('{"model":{"type":"BPE"}}'),
    'tokenizer_config.json': text('{}'),
  };
  const shard1 = safetensorsBytes({ 'a.weight': Tensor.from(randn(33, 1), [3, 11]) });
  // 300 KB, so a dropped connection happens mid-file.
  const shard2 = safetensorsBytes({ 'b.weight': Tensor.from(randn(75_001, 2), [75_001]) });
  const index = {
    metadata: { total_size: 0 },
    weight_map: {
      'a.weight': 'model-00001-of-00002.safetensors',
      'b.weight': 'model-00002-of-00002.safetensors',
    },
  };
  repos.set(
    'org/sharded',
    new Map(
      Object.entries({
        ...common,
        'generation_config.json': text('{"eos_token_id":2}'),
        'model.safetensors.index.json': text(JSON.stringify(index)),
        'model-00001-of-00002.safetensors': { bytes: shard1, lfs: false },
        'model-00002-of-00002.safetensors': { bytes: shard2, lfs: true },
      }),
    ),
  );
  const single = safetensorsBytes({ w: Tensor.from(randn(50_000, 3), [50_000]) });
  repos.set(
    'org/single',
    new Map(Object.entries({ ...common, 'model.safetensors': { bytes: single, lfs: true } })),
  );
  repos.set(
    'org/gated',
    new Map(Object.entries({ ...common, 'model.safetensors': { bytes: single, lfs: false } })),
  );
}

interface LogEntry {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  auth: string | undefined;
  range: string | undefined;
}
const log: LogEntry[] = [];
/** Blob hashes whose next full (non-Range) CDN GET drops the connection halfway. */
const dropNext = new Set<string>();

function sendBytes(
  req: IncomingMessage,
  res: ServerResponse,
  bytes: Uint8Array,
  headers: Record<string, string>,
  drop: boolean,
): void {
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (range) {
    const start = Number(range[1]);
    if (start >= bytes.length) {
      res.writeHead(416, { 'Content-Range': `bytes */${bytes.length}` }).end();
      return;
    }
    res.writeHead(206, {
      ...headers,
      'Content-Length': String(bytes.length - start),
      'Content-Range': `bytes ${start}-${bytes.length - 1}/${bytes.length}`,
    });
    res.end(req.method === 'HEAD' ? undefined : bytes.subarray(start));
    return;
  }
  res.writeHead(200, { ...headers, 'Content-Length': String(bytes.length) });
  if (req.method === 'HEAD') res.end();
  else if (drop) {
    // Send part of the body, then cut the connection (as a flaky network would).
    res.write(bytes.subarray(0, Math.floor(bytes.length / 3)), () =>
      setTimeout(() => res.socket?.destroy(), 20),
    );
  } else res.end(bytes);
}

let hub: Server;
let cdn: Server;
let endpoint = '';
let cdnBase = '';

function hubHandler(req: IncomingMessage, res: ServerResponse): void {
  log.push({
    server: 'hub',
    method: req.method ?? '',
    path: req.url ?? '',
    auth: req.headers.authorization,
    range: req.headers.range,
  });
  const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(req.url ?? '');
  // A renamed repo answers with a relative redirect to its new name.
  if (m?.[1] === 'org/old-name')
    return void res.writeHead(307, { Location: `/org/single/resolve/${m[2]}/${m[3]}` }).end();
  const repo = m ? repos.get(m[1]) : undefined;
  if (!m || !repo) return void res.writeHead(404, { 'X-Error-Code': 'RepositoryNotFound' }).end();
  if (m[1] === 'org/gated' && req.headers.authorization !== `Bearer ${TOKEN}`)
    return void res.writeHead(401, { 'X-Error-Code': 'GatedRepo' }).end();
  if (m[2] !== 'main' && m[2] !== COMMIT)
    return void res.writeHead(404, { 'X-Error-Code': 'RevisionNotFound' }).end();
  const file = repo.get(decodeURIComponent(m[3]));
  if (!file)
    return void res.writeHead(404, { 'X-Error-Code': 'EntryNotFound', 'X-Repo-Commit': COMMIT }).end();
  if (file.lfs) {
    const h = sha(file.bytes);
    return void res
      .writeHead(302, {
        Location: `${cdnBase}/blob/${h}`,
        'X-Repo-Commit': COMMIT,
        'X-Linked-Etag': `"${h}"`,
        'X-Linked-Size': String(file.bytes.length),
      })
      .end();
  }
  sendBytes(req, res, file.bytes, { 'X-Repo-Commit': COMMIT, ETag: `"${sha(file.bytes, 'sha1')}"` }, false);
}

function cdnHandler(req: IncomingMessage, res: ServerResponse): void {
  log.push({
    server: 'cdn',
    method: req.method ?? '',
    path: req.url ?? '',
    auth: req.headers.authorization,
    range: req.headers.range,
  });
  const h = /^\/blob\/([0-9a-f]{64})$/.exec(req.url ?? '')?.[1];
  for (const repo of repos.values())
    for (const f of repo.values())
      if (f.lfs && h === sha(f.bytes)) {
        const drop = req.method === 'GET' && !req.headers.range && dropNext.delete(h);
        return sendBytes(req, res, f.bytes, {}, drop);
      }
  res.writeHead(404).end();
}

function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Server> {
  return new Promise((resolve) => {
    const s = createServer(handler);
    s.listen(0, '127.0.0.1', () => resolve(s));
  });
}

const url = (s: Server): string => `http://127.0.0.1:${(s.address() as AddressInfo).port}`;

before(async () => {
  makeRepos();
  hub = await listen(hubHandler);
  cdn = await listen(cdnHandler);
  endpoint = url(hub);
  cdnBase = url(cdn);
});

after(() => {
  for (const s of [hub, cdn]) {
    s.closeAllConnections();
    s.close();
  }
  rmSync(work, { recursive: true, force: true });
});

let cacheCount = 0;
const freshCache = (): string => join(work, `cache-${++cacheCount}`);

function expectSnapshot(snap: string, repo: string, files: string[]): void {
  for (const f of files) {
    const p = join(snap, f);
    assert.ok(existsSync(p), `${f} in snapshot`);
    assert.ok(lstatSync(p).isSymbolicLink(), `${f} links into blobs/`);
    assert.match(readlinkSync(p), /^\.\.\/\.\.\/blobs\/[\w]+$/);
    assert.deepEqual(new Uint8Array(readFileSync(p)), repos.get(repo)!.get(f)!.bytes, `${f} content`);
  }
}

test(
  'downloads a sharded repo into the HF cache layout, resuming a dropped connection',
  { timeout: 30_000 },
  async () => {
    const cacheDir = freshCache();
    const lfs = repos.get('org/sharded')!.get('model-00002-of-00002.safetensors')!;
    dropNext.add(sha(lfs.bytes));
    log.length = 0;
    const progress: number[] = [];
    const snap = await resolveModel('org/sharded', {
      endpoint,
      cacheDir,
      token: 'hub-only-token',
      onProgress: (f, n) => f === 'model-00002-of-00002.safetensors' && progress.push(n),
    });
    const repoDir = join(cacheDir, 'models--org--sharded');
    assert.equal(snap, join(repoDir, 'snapshots', COMMIT));
    assert.equal(readFileSync(join(repoDir, 'refs', 'main'), 'utf8'), COMMIT);
    expectSnapshot(snap, 'org/sharded', [...repos.get('org/sharded')!.keys()]);
    assert.ok(existsSync(join(repoDir, 'blobs', sha(lfs.bytes))), 'LFS blob stored under its sha256');
    // The CDN saw the dropped full GET, then one Range request from where it stopped.
    const cdnGets = log.filter((e) => e.server === 'cdn' && e.method === 'GET');
    assert.equal(cdnGets.length, 2, JSON.stringify(cdnGets));
    assert.equal(cdnGets[0].range, undefined);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(cdnGets[1].range ?? '')?.[1]);
    assert.ok(resumedAt > 0 && resumedAt < lfs.bytes.length, `resumed at ${resumedAt}`);
    assert.equal(progress.at(-1), lfs.bytes.length);
    // The token goes to the Hub, never to the CDN.
    assert.ok(log.filter((e) => e.server === 'hub').every((e) => e.auth === 'Bearer hub-only-token'));
    assert.ok(log.filter((e) => e.server === 'cdn').every((e) => e.auth === undefined));
    // No temporary files are left, and the snapshot is a loadable sharded model.
    assert.deepEqual(
      readdirSync(join(repoDir, 'blobs')).filter((f) => f.endsWith('.incomplete')),
      [],
    );
    const model = openSafetensorsModel(snap);
    assert.deepEqual([...model.tensors.keys()].sort(), ['a.weight', 'b.weight']);
    const b = model.read('b.weight');
    assert.equal(b.size, 75_001);
    b.dispose();

    // Again: everything is cached, so only metadata requests go out.
    log.length = 0;
    assert.equal(await resolveModel('org/sharded', { endpoint, cacheDir }), snap);
    assert.ok(log.length > 0 && log.every((e) => e.method === 'HEAD'), JSON.stringify(log));

    // Offline (option or HF_HUB_OFFLINE): served from the cache with no request at all.
    log.length = 0;
    assert.equal(await resolveModel('org/sharded', { endpoint, cacheDir, offline: true }), snap);
    process.env.HF_HUB_OFFLINE = '1';
    try {
      assert.equal(await resolveModel('org/sharded', { endpoint, cacheDir }), snap);
    } finally {
      delete process.env.HF_HUB_OFFLINE;
    }
    assert.equal(log.length, 0);
  },
);

test(
  'single-file repo: optional generation_config.json may be absent; explicit file lists',
  { timeout: 30_000 },
  async () => {
    const cacheDir = freshCache();
    const snap = await resolveModel('org/single', { endpoint, cacheDir });
    expectSnapshot(snap, 'org/single', [
      'config.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'model.safetensors',
    ]);
    assert.ok(!existsSync(join(snap, 'generation_config.json')));
    const renamed = await resolveModel('org/old-name', { endpoint, cacheDir });
    assert.equal(
      renamed,
      join(cacheDir, 'models--org--old-name', 'snapshots', COMMIT),
      'a renamed repo is followed',
    );
    expectSnapshot(renamed, 'org/single', ['config.json', 'model.safetensors']);
    const only = await resolveModel('org/sharded', {
      endpoint,
      cacheDir,
      files: ['config.json'],
      revision: COMMIT,
    });
    assert.equal(only, join(cacheDir, 'models--org--sharded', 'snapshots', COMMIT));
    assert.ok(existsSync(join(only, 'config.json')) && !existsSync(join(only, 'tokenizer.json')));
    assert.ok(
      !existsSync(join(cacheDir, 'models--org--sharded', 'refs', COMMIT)),
      'no ref file for a commit revision',
    );
    await assert.rejects(
      resolveModel('org/single', { endpoint, cacheDir, files: ['missing.bin'] }),
      /^Error: lorakit: org\/single has no file missing\.bin at revision main \(404 from http:\/\/127\.0\.0\.1:\d+\)\.$/,
    );
    await assert.rejects(
      resolveModel('org/single', { endpoint, cacheDir, revision: 'v9' }),
      /has no file config\.json at revision v9/,
    );
  },
);

test(
  'a gated repo answers 401 without a token and downloads with HF_TOKEN',
  { timeout: 30_000 },
  async () => {
    const cacheDir = freshCache();
    const saved = process.env.HF_TOKEN;
    delete process.env.HF_TOKEN;
    try {
      await assert.rejects(
        resolveModel('org/gated', { endpoint, cacheDir }),
        /^Error: lorakit: org\/gated: access denied \(401\) for config\.json; set HF_TOKEN to a token that may read it \(gated or private repository\)\.$/,
      );
      await assert.rejects(
        resolveModel('org/gated', { endpoint, cacheDir, token: 'wrong' }),
        /access denied \(401\) for config\.json; the token \(HF_TOKEN\) is not allowed to read it\./,
      );
      process.env.HF_TOKEN = TOKEN;
      const snap = await resolveModel('org/gated', { endpoint, cacheDir });
      expectSnapshot(snap, 'org/gated', ['config.json', 'model.safetensors']);
    } finally {
      if (saved === undefined) delete process.env.HF_TOKEN;
      else process.env.HF_TOKEN = saved;
    }
  },
);

test(
  'a partial download left by an earlier run resumes with a Range request',
  { timeout: 30_000 },
  async () => {
    const cacheDir = freshCache();
    const file = repos.get('org/single')!.get('model.safetensors')!;
    const blobs = join(cacheDir, 'models--org--single', 'blobs');
    mkdirSync(blobs, { recursive: true });
    writeFileSync(join(blobs, `${sha(file.bytes)}.incomplete`), file.bytes.subarray(0, 1000));
    log.length = 0;
    const snap = await resolveModel('org/single', { endpoint, cacheDir });
    expectSnapshot(snap, 'org/single', ['model.safetensors']);
    const gets = log.filter((e) => e.server === 'cdn' && e.method === 'GET');
    assert.deepEqual(
      gets.map((e) => e.range),
      ['bytes=1000-'],
    );
    // A stale partial longer than the file is discarded, not trusted.
    const cache2 = freshCache();
    const blobs2 = join(cache2, 'models--org--single', 'blobs');
    mkdirSync(blobs2, { recursive: true });
    writeFileSync(join(blobs2, `${sha(file.bytes)}.incomplete`), new Uint8Array(file.bytes.length + 5));
    expectSnapshot(await resolveModel('org/single', { endpoint, cacheDir: cache2 }), 'org/single', [
      'model.safetensors',
    ]);
  },
);

test(
  'offline or unreachable: one sentence saying what to download; a complete cache still works',
  { timeout: 30_000 },
  async () => {
    const cacheDir = freshCache();
    await assert.rejects(resolveModel('org/single', { endpoint, cacheDir, offline: true }), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.match(
        e.message,
        /^lorakit: org\/single is not in the Hugging Face cache \(.*models--org--single\) and downloads are off \(HF_HUB_OFFLINE\); download config\.json, tokenizer\.json, tokenizer_config\.json, generation_config\.json \(if present\), model\.safetensors \(or model\.safetensors\.index\.json and its shards\) from http:\/\/127\.0\.0\.1:\d+\/org\/single into one folder and pass that folder to --model \(a local \.gguf file works too\)\.$/,
      );
      assert.equal(e.message.split('; ').length, 2, 'one sentence');
      return true;
    });
    // A port nothing listens on.
    const dead = await listen(() => undefined);
    const deadUrl = url(dead);
    await new Promise((r) => dead.close(r));
    await assert.rejects(
      resolveModel('org/single', { endpoint: deadUrl, cacheDir }),
      /^Error: lorakit: could not download org\/single from http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\); download config\.json, .* into one folder and pass that folder to --model \(a local \.gguf file works too\)\.$/,
    );
    await resolveModel('org/single', { endpoint, cacheDir });
    assert.equal(
      await resolveModel('org/single', { endpoint: deadUrl, cacheDir }),
      join(cacheDir, 'models--org--single', 'snapshots', COMMIT),
    );
  },
);

test('local paths are returned as they are; bad ids are clear errors; cache location from the environment', async () => {
  const dir = join(work, 'local-model');
  mkdirSync(dir, { recursive: true });
  const gguf = join(work, 'm.gguf');
  writeFileSync(gguf, 'x');
  assert.equal(await resolveModel(dir), dir);
  assert.equal(await resolveModel(gguf), gguf);
  await assert.rejects(
    resolveModel('./nope/model.gguf'),
    /^Error: lorakit: \.\/nope\/model\.gguf: no such file or folder, and not a Hugging Face model id \(org\/name\)\.$/,
  );
  await assert.rejects(resolveModel('a/../../b'), /not a Hugging Face model id/);
  const saved = { cache: process.env.HF_HUB_CACHE, home: process.env.HF_HOME };
  try {
    process.env.HF_HUB_CACHE = '/x/hub-cache';
    assert.equal(hubCacheDir(), '/x/hub-cache');
    delete process.env.HF_HUB_CACHE;
    process.env.HF_HOME = '/y/hf';
    assert.equal(hubCacheDir(), '/y/hf/hub');
    delete process.env.HF_HOME;
    assert.match(hubCacheDir(), /\.cache\/huggingface\/hub$/);
  } finally {
    if (saved.cache === undefined) delete process.env.HF_HUB_CACHE;
    else process.env.HF_HUB_CACHE = saved.cache;
    if (saved.home === undefined) delete process.env.HF_HOME;
    else process.env.HF_HOME = saved.home;
  }
});
