import { existsSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { startServer } from '../serve/server.js';
import { parseFlags, UsageError, type Specs } from './args.js';
import { MODEL_FLAGS, openModel } from './run.js';

export const SYNOPSIS =
  '--model M [--adapter NAME=DIR ...] [--adapter-dir DIR] [--port 8080] [--host 127.0.0.1] [--api-key KEY] [flags]';
export const HELP = 'OpenAI-compatible server for the model and its adapters';

export const FLAGS = {
  ...MODEL_FLAGS,
  adapter: {
    type: 'string',
    help: 'adapter to serve, NAME=DIR or DIR (named after its folder); repeatable',
    repeat: true,
  },
  'adapter-dir': {
    type: 'string',
    help: 'folder that POST /v1/adapters may load adapters from (off without it)',
  },
  name: {
    type: 'string',
    help: "the base model's name in requests (default: the model's folder or file name)",
  },
  port: { type: 'int', help: 'port to listen on (8080; 0 picks a free one)', min: 0, max: 65535 },
  host: {
    type: 'string',
    help: 'address to listen on (127.0.0.1: this machine only; 0.0.0.0: every network, then give --api-key)',
  },
  'api-key': { type: 'string', help: 'require Authorization: Bearer KEY (default: $LORAKIT_API_KEY if set)' },
  'max-batch': { type: 'int', help: 'sequences generated together at most (32)', min: 1 },
  'max-step-tokens': {
    type: 'int',
    help: 'tokens per forward pass at most, prompts are chunked to fit (512)',
    min: 1,
  },
  'max-queue': { type: 'int', help: 'requests waiting at most before 429 (1024)', min: 1 },
  'max-tokens': {
    type: 'int',
    help: 'largest max_tokens a request may ask for, and its default (1024)',
    min: 1,
  },
  'max-prompt-tokens': {
    type: 'int',
    help: 'longest prompt accepted, in tokens (the context length - 1)',
    min: 1,
  },
  'max-body-bytes': { type: 'int', help: 'largest request body accepted (1048576)', min: 1024 },
  'kv-cache-mb': { type: 'int', help: "memory for the running requests' KV caches, MiB (2048)", min: 1 },
  'batch-policy': {
    type: 'string',
    help: 'mixed: adapters share forward passes; single-adapter: one adapter per batch (a baseline for benchmarks)',
    choices: ['mixed', 'single-adapter'],
  },
  quiet: { type: 'bool', help: 'do not log each request' },
} as const satisfies Specs;

/** The name a model spec is served under: a file or folder's name, or the hub id itself. */
export function defaultModelName(spec: string): string {
  if (!existsSync(spec)) return spec;
  return basename(resolve(spec)).replace(/\.gguf$/i, '');
}

/** True for addresses only this machine reaches: 127.0.0.0/8, ::1 and localhost. */
function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** NAME=DIR, or DIR named after its folder (a trained run's DIR/adapter is named after DIR). */
export function parseAdapterSpec(spec: string): { name: string; dir: string } {
  const m = /^([A-Za-z0-9][A-Za-z0-9_.-]*)=(.+)$/.exec(spec);
  if (m) return { name: m[1], dir: m[2] };
  const dir = resolve(spec);
  const base = basename(dir);
  return { name: base === 'adapter' ? basename(dirname(dir)) : base, dir: spec };
}

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, FLAGS, 'serve');
  if (f._.length > 0) throw new UsageError(`lorakit serve: unexpected argument '${f._[0]}'.`);
  if (!f.model) throw new UsageError('lorakit serve: --model is required.');
  const adapters = (f.adapter ?? []).map(parseAdapterSpec);
  const seen = new Set<string>();
  for (const a of adapters) {
    if (seen.has(a.name))
      throw new UsageError(`lorakit serve: two adapters are named '${a.name}'; name them with NAME=DIR.`);
    seen.add(a.name);
  }
  if (f['adapter-dir'] && !existsSync(f['adapter-dir']))
    throw new UsageError(`lorakit serve: --adapter-dir ${f['adapter-dir']} does not exist.`);
  const host = f.host ?? '127.0.0.1';
  const apiKey = f['api-key'] ?? process.env.LORAKIT_API_KEY ?? null;
  if (!apiKey && !isLoopback(host))
    process.stderr.write(
      `lorakit serve: warning: listening on ${host} without --api-key, so anyone who can reach the port can generate and load adapters.\n`,
    );
  const modelName = f.name ?? defaultModelName(f.model);
  const { model, tokenizer } = await openModel('serve', { ...f, adapter: undefined });
  const log = f.quiet
    ? undefined
    : (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  let started: Awaited<ReturnType<typeof startServer>>;
  try {
    started = await startServer({
      model,
      tokenizer,
      modelName,
      adapters,
      adapterDir: f['adapter-dir'] ?? null,
      apiKey,
      maxBodyBytes: f['max-body-bytes'],
      maxPromptTokens: f['max-prompt-tokens'],
      maxTokens: f['max-tokens'],
      port: f.port ?? 8080,
      host,
      engine: {
        maxBatch: f['max-batch'],
        maxStepTokens: f['max-step-tokens'],
        maxQueue: f['max-queue'],
        kvCacheBytes: f['kv-cache-mb'] !== undefined ? f['kv-cache-mb'] * 2 ** 20 : undefined,
        policy: f['batch-policy'] === 'single-adapter' ? 'single-adapter' : 'mixed',
      },
      log,
    });
  } catch (e) {
    model.dispose();
    if (e && typeof e === 'object' && 'code' in e && e.code === 'EADDRINUSE')
      throw new Error(
        `lorakit serve: port ${f.port ?? 8080} on ${host} is already in use (pick another with --port).`,
      );
    throw e;
  }
  const { server, url } = started;
  const names = server.adapters.list().map((a) => a.name);
  process.stdout.write(
    `lorakit serve: listening on ${url}/v1 — model '${modelName}'${names.length ? `, adapters: ${names.join(', ')}` : ''}${f['adapter-dir'] ? ` (run-time loads from ${f['adapter-dir']})` : ''}\n`,
  );
  // Serve until SIGINT or SIGTERM, then stop cleanly.
  await new Promise<void>((done) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      process.stderr.write('lorakit serve: shutting down\n');
      void server.close().then(done);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  model.dispose();
  return 0;
}
