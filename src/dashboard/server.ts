// The live dashboard: a small node:http server on 127.0.0.1 that serves the page and uPlot, and
// follows each run's metrics.jsonl as the trainer appends to it, pushing new lines to every open
// page over server-sent events. Files are polled (a stat every pollMs), which works the same on
// every file system, network mounts included.
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { renderPage, uplotAsset } from './page.js';
import {
  applyRecords,
  METRICS_FILE,
  parseMetricsText,
  readRunConfig,
  RUN_FILE,
  runNames,
  type RunData,
} from './runs.js';

export interface DashboardOptions {
  /** Run folders (training --out folders). */
  dirs: string[];
  /** 0 picks a free port. Default 6006. */
  port?: number;
  /** How often to look for new metrics, in ms. Default 500. */
  pollMs?: number;
}

export interface Dashboard {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** One followed run: what has been read of its files so far. */
class RunFollower {
  readonly run: RunData;
  private offset = 0;
  private rest = '';
  private decoder = new StringDecoder('utf8');
  private configStamp = '';
  private ino = -1;
  updated = 0;

  constructor(dir: string, name: string) {
    this.run = { name, dir, steps: [], evals: [], config: null };
  }

  private readFrom(path: string, from: number, to: number): string {
    const fd = openSync(path, 'r');
    try {
      const buf = new Uint8Array(to - from);
      let got = 0;
      while (got < buf.length) {
        const n = readSync(fd, buf, got, buf.length - got, from + got);
        if (n === 0) break;
        got += n;
      }
      this.offset = from + got;
      return this.decoder.write(Buffer.from(buf.buffer, 0, got));
    } finally {
      closeSync(fd);
    }
  }

  /** Reads what was appended since the last poll. */
  pollMetrics():
    | { kind: 'none' }
    | { kind: 'records'; records: ReturnType<typeof parseMetricsText>['records'] }
    | { kind: 'reset' } {
    const path = join(this.run.dir, METRICS_FILE);
    let size: number;
    let mtime: number;
    let replaced = false;
    try {
      const st = statSync(path);
      size = st.size;
      mtime = st.mtimeMs;
      replaced = this.ino !== -1 && st.ino !== this.ino;
      this.ino = st.ino;
    } catch {
      if (this.offset === 0 && this.run.steps.length === 0) return { kind: 'none' };
      size = 0;
      mtime = Date.now();
      this.ino = -1;
    }
    if (size < this.offset || replaced) {
      // Replaced or truncated (a new run in the same folder): start over.
      this.offset = 0;
      this.rest = '';
      this.decoder = new StringDecoder('utf8');
      this.run.steps = [];
      this.run.evals = [];
      if (size > 0) applyRecords(this.run, this.take(path, size));
      this.updated = mtime;
      return { kind: 'reset' };
    }
    if (size === this.offset) return { kind: 'none' };
    const records = this.take(path, size);
    this.updated = mtime;
    applyRecords(this.run, records);
    return records.length ? { kind: 'records', records } : { kind: 'none' };
  }

  private take(path: string, size: number) {
    const text = this.rest + this.readFrom(path, this.offset, size);
    const parsed = parseMetricsText(text);
    this.rest = parsed.rest;
    return parsed.records;
  }

  /** True when the run's config changed (run.json written, or a first checkpoint appeared). */
  pollConfig(): boolean {
    const runFile = join(this.run.dir, RUN_FILE);
    const ckpts = join(this.run.dir, 'checkpoints');
    let stamp = '';
    try {
      if (existsSync(runFile)) stamp = `run:${statSync(runFile).mtimeMs}`;
      else if (existsSync(ckpts)) stamp = `ckpt:${statSync(ckpts).mtimeMs}`;
    } catch {
      stamp = '';
    }
    if (stamp === this.configStamp) return false;
    this.configStamp = stamp;
    const config = stamp ? readRunConfig(this.run.dir) : null;
    if (JSON.stringify(config) === JSON.stringify(this.run.config)) return false;
    this.run.config = config;
    return true;
  }
}

function isLocalHost(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':')[0];
  return name === '127.0.0.1' || name === 'localhost' || name === '[::1]';
}

/** Starts the dashboard server; resolves once it listens. */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  if (options.dirs.length === 0) throw new Error('lorakit: the dashboard needs at least one run folder.');
  const names = runNames(options.dirs);
  const followers = options.dirs.map((d, i) => new RunFollower(d, names[i]));
  for (const f of followers) {
    f.pollConfig();
    f.pollMetrics();
  }
  const clients = new Set<ServerResponse>();
  const title =
    followers.length === 1
      ? `${followers[0].run.name} — lorakit dashboard`
      : `${followers.length} runs — lorakit dashboard`;
  const page = renderPage(title, { mode: 'live' });
  // Read once up front: a missing uplot package fails here, with its message, not on first request.
  const assets = { js: uplotAsset('js'), css: uplotAsset('css') };

  const snapshot = () =>
    JSON.stringify({ now: Date.now(), runs: followers.map((f) => ({ ...f.run, updated: f.updated })) });
  const send = (res: ServerResponse, event: string, data: string) =>
    res.write(`event: ${event}\ndata: ${data}\n\n`);
  const broadcast = (event: string, data: unknown) => {
    if (clients.size === 0) return;
    const text = JSON.stringify(data);
    for (const c of clients) send(c, event, text);
  };

  const poll = () => {
    followers.forEach((f, i) => {
      try {
        if (f.pollConfig()) broadcast('config', { run: i, config: f.run.config });
        const r = f.pollMetrics();
        if (r.kind === 'records') broadcast('records', { run: i, records: r.records });
        else if (r.kind === 'reset') broadcast('reset', { run: i, steps: f.run.steps, evals: f.run.evals });
      } catch {
        // A file caught mid-rename or briefly unreadable: the next poll reads it.
      }
    });
  };
  const timer = setInterval(poll, options.pollMs ?? 500);
  const heartbeat = setInterval(() => {
    for (const c of clients) c.write(': keep-alive\n\n');
  }, 15000);

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    // Only pages opened on this machine by its own address (guards against DNS rebinding).
    if (!isLocalHost(req.headers.host)) {
      res.writeHead(403, { 'Content-Type': 'text/plain' }).end('lorakit dashboard: forbidden host\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const text = (type: string, body: string, cache = 'no-cache') =>
      res
        .writeHead(200, { 'Content-Type': type, 'Cache-Control': cache, 'X-Content-Type-Options': 'nosniff' })
        .end(req.method === 'HEAD' ? undefined : body);
    switch (path) {
      case '/':
      case '/index.html':
        return text('text/html; charset=utf-8', page);
      case '/uplot.js':
        return text('text/javascript; charset=utf-8', assets.js, 'max-age=3600');
      case '/uplot.css':
        return text('text/css; charset=utf-8', assets.css, 'max-age=3600');
      case '/api/runs':
        return text('application/json', snapshot());
      case '/api/events': {
        res.writeHead(200, {
          'Content-Type': 'text/event-stream',
          'Cache-Control': 'no-cache',
          Connection: 'keep-alive',
        });
        res.write('retry: 1000\n\n');
        send(res, 'snapshot', snapshot());
        clients.add(res);
        req.on('close', () => clients.delete(res));
        return;
      }
      case '/favicon.ico':
        res.writeHead(204).end();
        return;
      default:
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    }
  };

  const server = createServer(handle);
  const port = options.port ?? 6006;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    clearInterval(timer);
    clearInterval(heartbeat);
    const code = e && typeof e === 'object' && 'code' in e ? e.code : '';
    if (code === 'EADDRINUSE')
      throw new Error(
        `lorakit: port ${port} is already in use; pick another with --port (0 picks a free one).`,
      );
    if (code === 'EACCES')
      throw new Error(`lorakit: not allowed to listen on port ${port}; pick a port above 1023 with --port.`);
    throw e;
  }
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}/`,
    port: actual,
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(timer);
        clearInterval(heartbeat);
        for (const c of clients) c.end();
        clients.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
