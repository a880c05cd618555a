// An OpenAI-compatible HTTP server (node:http) over one base model and any number of LoRA adapters:
// /v1/chat/completions, /v1/completions (streamed as server-sent events or not), /v1/models, and
// /v1/adapters to load and unload adapters while running. Every request goes to one BatchEngine, so
// requests for different adapters are generated together in the same forward passes.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { chatPromptText } from '../infer/generate.js';
import type { CausalLM } from '../models/llama.js';
import { ChatTemplateError } from '../tokenizer/chat-template.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { AdapterRegistry, ServeError } from './adapters.js';
import { encodeInSlices } from './text.js';
import { BatchEngine, EngineError, type EngineOptions, type GenerationResult } from './engine.js';
import {
  errorBody,
  finishReason,
  isObject,
  newId,
  now,
  parseMessages,
  parsePrompts,
  parseSampling,
  usage,
  type JsonObject,
  type SamplingRequest,
} from './openai.js';

export interface ServerOptions {
  model: CausalLM;
  tokenizer: Tokenizer;
  /** The name clients use for the base model. */
  modelName: string;
  /** Adapters to load at start (from any folder). */
  adapters?: { name: string; dir: string }[];
  /** The folder run-time adapter loads read from; without it /v1/adapters only lists. */
  adapterDir?: string | null;
  /** Clients must send `Authorization: Bearer <apiKey>`. */
  apiKey?: string | null;
  /** Request bodies larger than this are refused with 413 (1 MiB). */
  maxBodyBytes?: number;
  /** Prompts longer than this many tokens are refused (default: the context length − 1). */
  maxPromptTokens?: number;
  /** The largest max_tokens a request may ask for, and the default when it asks none (1024). */
  maxTokens?: number;
  /** Prompts in one /v1/completions request at most (16). */
  maxPrompts?: number;
  engine?: EngineOptions;
  /** One line per request (nothing when absent). */
  log?: (line: string) => void;
}

const STATUS_CODE: Record<string, number> = {
  queue_full: 429,
  context_length_exceeded: 400,
  adapter_not_found: 404,
  invalid_request: 400,
  closed: 503,
};

function digest(s: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(s).digest());
}

// A percent-encoded path segment (a model or adapter name).
function decodePart(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new ServeError(
      400,
      'invalid_request',
      `lorakit: the URL segment '${s}' is not valid percent-encoding.`,
    );
  }
}

/** The request field that holds the prompt. */
type PromptParam = 'messages' | 'prompt';

/** The client hung up before its request was read: there is nobody to answer. */
class ClientGone extends Error {}

/** A header value quoted for a message (cut short: it comes from the client). */
function quoteHeader(v: string): string {
  return JSON.stringify(v.length > 100 ? `${v.slice(0, 100)}…` : v);
}

/** host[:port] of a URL, as browsers compare origins; null when it does not parse (Origin 'null'). */
function authority(url: string): string | null {
  try {
    return new URL(url).host;
  } catch {
    return null;
  }
}

/**
 * True for a Host header that names an IP address, localhost or this machine: never the domain of a
 * web page, which a DNS-rebinding page would send once its name points at this server.
 */
function isOwnHost(host: string): boolean {
  let name: string;
  try {
    name = new URL(`http://${host}`).hostname;
  } catch {
    return false;
  }
  const bare = name.startsWith('[') ? name.slice(1, -1) : name;
  return (
    isIP(bare) !== 0 ||
    name === 'localhost' ||
    name.endsWith('.localhost') ||
    name === hostname().toLowerCase()
  );
}

export class LorakitServer {
  readonly engine: BatchEngine;
  readonly adapters: AdapterRegistry;
  readonly http: Server;
  private readonly keyDigest: Uint8Array | null;
  private readonly maxBodyBytes: number;
  private readonly maxPromptTokens: number;
  private readonly maxTokens: number;
  private readonly maxPrompts: number;
  private readonly created = now();

  constructor(readonly opts: ServerOptions) {
    this.engine = new BatchEngine(opts.model, opts.tokenizer, opts.engine);
    this.adapters = new AdapterRegistry(opts.model, this.engine, opts.modelName, opts.adapterDir ?? null);
    for (const a of opts.adapters ?? []) this.adapters.loadFrom(a.name, a.dir);
    this.keyDigest = opts.apiKey ? digest(opts.apiKey) : null;
    this.maxBodyBytes = opts.maxBodyBytes ?? 1 << 20;
    this.maxPromptTokens = Math.min(opts.maxPromptTokens ?? Infinity, this.engine.contextLength - 1);
    this.maxTokens = opts.maxTokens ?? 1024;
    this.maxPrompts = opts.maxPrompts ?? 16;
    this.http = createServer((req, res) => {
      // handle() answers every error itself; anything escaping it must not take the server down.
      this.handle(req, res).catch((e: unknown) => {
        this.opts.log?.(`error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        res.destroy();
      });
    });
  }

  /** Starts listening; resolves with the address (port 0 picks a free port). */
  listen(port: number, host = '127.0.0.1'): Promise<{ host: string; port: number; url: string }> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        const a = this.http.address() as AddressInfo;
        const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
        resolve({ host: a.address, port: a.port, url: `http://${h}:${a.port}` });
      });
    });
  }

  /** Ends running requests, stops listening and closes every connection. */
  close(): Promise<void> {
    this.engine.close();
    return new Promise((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = performance.now();
    const method = req.method ?? 'GET';
    let path = req.url ?? '/';
    let note = '';
    let gone = false;
    try {
      path = new URL(path, 'http://localhost').pathname.replace(/\/+$/, '') || '/';
      if (path === '/health' && method === 'GET')
        return this.json(res, 200, {
          status: 'ok',
          model: this.opts.modelName,
          ...this.engine.load,
          stats: this.engine.stats,
        });
      if (!path.startsWith('/v1/'))
        throw new ServeError(404, 'unknown_url', `lorakit: unknown request URL: ${method} ${path}.`);
      this.authorize(req);
      const route = (allowed: string[]): void => {
        if (!allowed.includes(method)) {
          res.setHeader('Allow', allowed.join(', '));
          throw new ServeError(
            405,
            'method_not_allowed',
            `lorakit: ${path} accepts ${allowed.join(' or ')}, not ${method}.`,
          );
        }
      };
      if (path === '/v1/models') {
        route(['GET']);
        return this.json(res, 200, { object: 'list', data: this.models() });
      }
      if (path.startsWith('/v1/models/')) {
        route(['GET']);
        const id = decodePart(path.slice('/v1/models/'.length));
        const m = this.models().find((x) => x.id === id);
        if (!m) throw new ServeError(404, 'model_not_found', `The model '${id}' does not exist.`, 'model');
        return this.json(res, 200, m);
      }
      if (path === '/v1/chat/completions') {
        route(['POST']);
        note = await this.chat(req, res, await this.body(req));
        return;
      }
      if (path === '/v1/completions') {
        route(['POST']);
        note = await this.completions(req, res, await this.body(req));
        return;
      }
      if (path === '/v1/adapters' || path.startsWith('/v1/adapters/')) {
        const named =
          path.length > '/v1/adapters/'.length ? decodePart(path.slice('/v1/adapters/'.length)) : null;
        route(named === null ? ['GET', 'POST', 'DELETE'] : ['GET', 'DELETE']);
        return await this.adapterRoute(req, res, method, named);
      }
      throw new ServeError(404, 'unknown_url', `lorakit: unknown request URL: ${method} ${path}.`);
    } catch (e) {
      // A client that hung up mid-body gets no answer and leaves no error behind, just its log line.
      if (e instanceof ClientGone) gone = true;
      else this.fail(res, e);
    } finally {
      const status = gone ? '-' : res.statusCode;
      const ms = Math.round(performance.now() - t0);
      this.opts.log?.(`${method} ${path} ${status} ${ms}ms${gone ? ' (client gone)' : note}`);
    }
  }

  private authorize(req: IncomingMessage): void {
    if (!this.keyDigest) return;
    const h = req.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(h);
    if (m && timingSafeEqual(digest(m[1].trim()), this.keyDigest)) return;
    throw new ServeError(
      401,
      'invalid_api_key',
      m
        ? 'Incorrect API key provided. Pass the key the server was started with (--api-key).'
        : "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.",
      null,
      'invalid_request_error',
    );
  }

  /**
   * Refuses a state-changing request that a browser sent for a page of another site: its Origin, if
   * any, must be this server, and its Host an address or localhost (see isOwnHost). With an API key
   * neither is needed: a page cannot know the key.
   */
  private checkSameSite(req: IncomingMessage): void {
    if (this.keyDigest) return;
    const refuse = (why: string): never => {
      throw new ServeError(
        403,
        'cross_site_request',
        `lorakit: adapters are not loaded or unloaded for a page of another site (${why}); start the server with --api-key to accept such requests.`,
      );
    };
    const { host, origin } = req.headers;
    if (host !== undefined && !isOwnHost(host))
      refuse(`Host ${quoteHeader(host)} is not an address of this server`);
    if (origin !== undefined && (host === undefined || authority(origin) !== authority(`http://${host}`)))
      refuse(`Origin ${quoteHeader(origin)} is not this server`);
  }

  private models(): JsonObject[] {
    const base = { id: this.opts.modelName, object: 'model', created: this.created, owned_by: 'lorakit' };
    return [
      base,
      ...this.adapters.list().map((a) => ({
        id: a.name,
        object: 'model',
        created: a.created,
        owned_by: 'lorakit',
        parent: this.opts.modelName,
      })),
    ];
  }

  // The request body as JSON, at most maxBodyBytes (413 beyond, as soon as the limit is passed).
  private async body(req: IncomingMessage): Promise<JsonObject> {
    // JSON only: a browser page of any site may send text/plain or form bodies without asking.
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/json')
      throw new ServeError(
        415,
        'unsupported_media_type',
        `lorakit: request bodies must be JSON sent with 'Content-Type: application/json' (this one has ${type ? quoteHeader(type) : 'none'}).`,
      );
    const limit = this.maxBodyBytes;
    const tooLarge = () =>
      new ServeError(
        413,
        'request_too_large',
        `lorakit: the request body is larger than this server accepts (${limit} bytes).`,
      );
    if (Number(req.headers['content-length'] ?? 0) > limit) throw tooLarge();
    const text = await new Promise<string>((resolve, reject) => {
      const decoder = new TextDecoder();
      let body = '';
      let size = 0;
      req.on('data', (chunk: Uint8Array) => {
        size += chunk.length;
        if (size <= limit) body += decoder.decode(chunk, { stream: true });
        // A chunked upload has no Content-Length to refuse up front: answer 413 once it passes the
        // limit, then read on without keeping anything so the client gets to read that answer (a
        // client that keeps sending far beyond it is cut off).
        else if (size - chunk.length <= limit) reject(tooLarge());
        else if (size > 16 * limit) req.destroy();
      });
      req.on('end', () => resolve(body + decoder.decode()));
      // Before 'end' (after it, the promise is settled and these change nothing): the client left.
      req.on('error', () => reject(new ClientGone()));
      req.on('close', () => reject(new ClientGone()));
    });
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      throw new ServeError(400, 'invalid_json', 'lorakit: the request body is not valid JSON.');
    }
    if (!isObject(v))
      throw new ServeError(400, 'invalid_json', 'lorakit: the request body must be a JSON object.');
    return v;
  }

  private promptTooLong(what: string, param: PromptParam): ServeError {
    return new ServeError(
      400,
      'context_length_exceeded',
      `lorakit: the prompt has ${what}; this server accepts at most ${this.maxPromptTokens}.`,
      param,
    );
  }

  /**
   * A prompt's ids, refused when longer than maxPromptTokens: by its UTF-8 length alone where that
   * proves it (nothing is tokenized), else while it is tokenized in slices beside other requests.
   */
  private async encodePrompt(text: string, addSpecialTokens: boolean, param: PromptParam): Promise<number[]> {
    const perToken = this.opts.tokenizer.maxTokenBytes;
    const bytes = Buffer.byteLength(text);
    if (perToken !== null && Math.ceil(bytes / perToken) > this.maxPromptTokens)
      throw this.promptTooLong(`${bytes} bytes, so at least ${Math.ceil(bytes / perToken)} tokens`, param);
    const ids = await encodeInSlices(this.opts.tokenizer, text, { addSpecialTokens }, this.maxPromptTokens);
    if (ids === null) throw this.promptTooLong(`more than ${this.maxPromptTokens} tokens`, param);
    return ids;
  }

  // Checks prompt and length limits; the max_tokens to use.
  private budget(s: SamplingRequest, promptLength: number, param: PromptParam): number {
    if (promptLength > this.maxPromptTokens) throw this.promptTooLong(`${promptLength} tokens`, param);
    if (s.maxTokens !== undefined && s.maxTokens > this.maxTokens)
      throw new ServeError(
        400,
        'invalid_request',
        `lorakit: '${s.maxTokensParam}' is ${s.maxTokens}; this server allows at most ${this.maxTokens}.`,
        s.maxTokensParam,
      );
    const room = this.engine.contextLength - promptLength;
    const max = s.maxTokens ?? Math.min(this.maxTokens, room);
    if (max > room)
      throw new ServeError(
        400,
        'context_length_exceeded',
        `lorakit: this model's context is ${this.engine.contextLength} tokens; the prompt (${promptLength}) and ${s.maxTokensParam} (${max}) need ${promptLength + max}.`,
        s.maxTokensParam,
      );
    return max;
  }

  private async chat(req: IncomingMessage, res: ServerResponse, body: JsonObject): Promise<string> {
    const s = parseSampling(body);
    const adapter = this.adapters.resolveModel(s.model);
    const messages = parseMessages(body);
    if (!this.opts.tokenizer.chatTemplate)
      throw new ServeError(
        400,
        'no_chat_template',
        'lorakit: this model has no chat template; use /v1/completions.',
      );
    let text: string;
    try {
      text = chatPromptText(this.opts.tokenizer, messages);
    } catch (e) {
      if (e instanceof ChatTemplateError)
        throw new ServeError(
          400,
          'invalid_request',
          `lorakit: the chat template rejected the messages: ${e.message}`,
          'messages',
        );
      throw e;
    }
    const ids = await this.encodePrompt(text, false, 'messages');
    const id = newId('chatcmpl');
    const created = now();
    const base = { id, created, model: s.model, system_fingerprint: 'lorakit' };
    return this.run(req, res, s, adapter, [ids], {
      promptParam: 'messages',
      first: () => ({
        ...base,
        object: 'chat.completion.chunk',
        choices: [
          { index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null },
        ],
      }),
      delta: (_, text) => ({
        ...base,
        object: 'chat.completion.chunk',
        choices: [{ index: 0, delta: { content: text }, logprobs: null, finish_reason: null }],
      }),
      end: (_, r) => ({
        ...base,
        object: 'chat.completion.chunk',
        choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: finishReason(r) }],
      }),
      usageChunk: (u) => ({ ...base, object: 'chat.completion.chunk', choices: [], usage: u }),
      whole: (rs) => ({
        ...base,
        object: 'chat.completion',
        choices: rs.map((r, index) => ({
          index,
          message: { role: 'assistant', content: r.text, refusal: null },
          logprobs: null,
          finish_reason: finishReason(r),
        })),
        usage: usage(rs),
      }),
    });
  }

  private async completions(req: IncomingMessage, res: ServerResponse, body: JsonObject): Promise<string> {
    const s = parseSampling(body);
    const adapter = this.adapters.resolveModel(s.model);
    const prompts = parsePrompts(body, this.maxPrompts);
    const V = this.opts.model.config.vocabSize;
    const all: number[][] = [];
    for (const p of prompts) {
      const ids = 'ids' in p ? p.ids : await this.encodePrompt(p.text, true, 'prompt');
      const bad = ids.find((t) => t < 0 || t >= V);
      if (bad !== undefined)
        throw new ServeError(
          400,
          'invalid_request',
          `lorakit: prompt token id ${bad} is outside the vocabulary (${V}).`,
          'prompt',
        );
      if (ids.length === 0)
        throw new ServeError(400, 'invalid_request', 'lorakit: the prompt encodes to no tokens.', 'prompt');
      all.push(ids);
    }
    const id = newId('cmpl');
    const created = now();
    const base = { id, created, model: s.model, system_fingerprint: 'lorakit' };
    const choice = (index: number, text: string, reason: string | null) => ({
      index,
      text,
      logprobs: null,
      finish_reason: reason,
    });
    return this.run(req, res, s, adapter, all, {
      promptParam: 'prompt',
      first: null,
      delta: (i, text) => ({ ...base, object: 'text_completion', choices: [choice(i, text, null)] }),
      end: (i, r) => ({ ...base, object: 'text_completion', choices: [choice(i, '', finishReason(r))] }),
      usageChunk: (u) => ({ ...base, object: 'text_completion', choices: [], usage: u }),
      whole: (rs) => ({
        ...base,
        object: 'text_completion',
        choices: rs.map((r, i) => choice(i, r.text, finishReason(r))),
        usage: usage(rs),
      }),
    });
  }

  // Runs one request's prompts through the engine, streamed or whole; returns a note for the log.
  private async run(
    req: IncomingMessage,
    res: ServerResponse,
    s: SamplingRequest,
    adapter: string | null,
    prompts: number[][],
    shape: {
      promptParam: PromptParam;
      first: (() => JsonObject) | null;
      delta: (index: number, text: string) => JsonObject;
      end: (index: number, r: GenerationResult) => JsonObject;
      usageChunk: (u: ReturnType<typeof usage>) => JsonObject;
      whole: (rs: GenerationResult[]) => JsonObject;
    },
  ): Promise<string> {
    const budgets = prompts.map((ids) => this.budget(s, ids.length, shape.promptParam));
    const abort = new AbortController();
    // The client hung up before the reply was complete: stop generating for it.
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const send = (obj: JsonObject) => {
      if (!res.writableEnded) res.write(`data: ${JSON.stringify(obj)}\n\n`);
    };
    let started = false;
    const start = () => {
      if (started) return;
      started = true;
      res.writeHead(200, {
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-cache',
        Connection: 'keep-alive',
        'X-Accel-Buffering': 'no',
      });
      if (shape.first) send(shape.first());
    };
    const submit = (ids: number[], i: number) =>
      this.engine.submit({
        promptIds: ids,
        adapter,
        maxTokens: budgets[i],
        temperature: s.temperature,
        topP: s.topP,
        topK: s.topK,
        seed: (s.seed + i) >>> 0,
        stop: s.stop,
        ignoreEos: s.ignoreEos,
        signal: abort.signal,
        onText: s.stream
          ? (text) => {
              start();
              send(shape.delta(i, text));
            }
          : undefined,
      });
    let pending: Promise<GenerationResult>[];
    try {
      pending = prompts.map(submit);
    } catch (e) {
      abort.abort(); // prompts already queued give their rows back
      throw e;
    }
    const settled = await Promise.allSettled(pending);
    if (abort.signal.aborted) return ' (client gone)';
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    const ok = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    // Ended without the client leaving: the server is shutting down.
    const error = failed
      ? failed.reason
      : ok.some((r) => r.finishReason === 'abort')
        ? new EngineError('closed', 'lorakit: the server is shutting down.')
        : null;
    if (error !== null) {
      if (!started) throw error;
      send(
        errorBody(
          error instanceof Error ? error.message : String(error),
          'server_error',
          'generation_failed',
        ),
      );
      res.end();
      return ' (failed)';
    }
    const note = ` model=${s.model} prompt=${usage(ok).prompt_tokens} completion=${usage(ok).completion_tokens}`;
    if (!s.stream) {
      this.json(res, 200, shape.whole(ok));
      return note;
    }
    start();
    ok.forEach((r, i) => send(shape.end(i, r)));
    if (s.includeUsage) send(shape.usageChunk(usage(ok)));
    res.end('data: [DONE]\n\n');
    return note;
  }

  private async adapterRoute(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    named: string | null,
  ): Promise<void> {
    const describe = (a: { name: string; source: string; created: number }) => ({
      id: a.name,
      object: 'adapter',
      path: a.source,
      created: a.created,
    });
    if (method === 'GET') {
      if (named === null)
        return this.json(res, 200, { object: 'list', data: this.adapters.list().map(describe) });
      const a = this.adapters.list().find((x) => x.name === named);
      if (!a)
        throw new ServeError(
          404,
          'adapter_not_found',
          `lorakit: no adapter named '${named}' is loaded.`,
          'name',
        );
      return this.json(res, 200, describe(a));
    }
    this.checkSameSite(req);
    if (method === 'POST') {
      const b = await this.body(req);
      const info = await this.adapters.load(b.name, b.path);
      return this.json(res, 200, describe(info));
    }
    const name = named ?? (await this.body(req)).name;
    await this.adapters.unload(name);
    return this.json(res, 200, { id: name, object: 'adapter', deleted: true });
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    if (res.headersSent) {
      res.end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(text),
    });
    res.end(text);
  }

  private fail(res: ServerResponse, e: unknown): void {
    let status = 500;
    let body: JsonObject;
    if (e instanceof ServeError) {
      status = e.status;
      body = errorBody(e.message, e.type, e.code, e.param);
    } else if (e instanceof EngineError) {
      status = STATUS_CODE[e.code] ?? 400;
      body = errorBody(
        e.message,
        status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error',
        e.code,
      );
    } else {
      const msg = e instanceof Error ? e.message : String(e);
      body = errorBody(
        msg.startsWith('lorakit') ? msg : `lorakit: internal error: ${msg}`,
        'server_error',
        'internal_error',
      );
      this.opts.log?.(`error: ${e instanceof Error ? (e.stack ?? msg) : msg}`);
    }
    if (res.headersSent) {
      if (!res.writableEnded) res.end(`data: ${JSON.stringify(body)}\n\n`);
      return;
    }
    if (status === 413) res.setHeader('Connection', 'close');
    if (status === 429) res.setHeader('Retry-After', '1');
    this.json(res, status, body);
  }
}

/** Creates the server and starts listening. */
export async function startServer(
  opts: ServerOptions & { port?: number; host?: string },
): Promise<{ server: LorakitServer; url: string; port: number }> {
  const server = new LorakitServer(opts);
  const { url, port } = await server.listen(opts.port ?? 8080, opts.host ?? '127.0.0.1');
  return { server, url, port };
}
