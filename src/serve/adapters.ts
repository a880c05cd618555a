// The adapters a server offers: loaded at start or at run time from inside one configured folder,
// unloaded once no request uses them any more.
import { existsSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve, sep } from 'node:path';
import type { CausalLM } from '../models/llama.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, deleteAdapter, loadAdapter } from '../peft/adapters.js';
import type { BatchEngine } from './engine.js';

/** An error with the HTTP status and OpenAI-style code a client should see. */
export class ServeError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    readonly type = status === 401
      ? 'authentication_error'
      : status >= 500
        ? 'server_error'
        : 'invalid_request_error',
  ) {
    super(message);
  }
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Throws unless `name` can name an adapter: 1-64 letters, digits, '_', '-', '.', not starting with a symbol. */
export function checkAdapterName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !NAME.test(name) || name.includes('..'))
    throw new ServeError(
      400,
      'invalid_adapter_name',
      `lorakit: adapter names are 1 to 64 letters, digits, '_', '-' or '.', starting with a letter or digit (got ${JSON.stringify(name)}).`,
      'name',
    );
}

function inside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * The real path of adapter folder `rel` inside `root`, refusing anything that leaves it: absolute
 * paths, '..' segments, and symbolic links (of the folder or of its files) that resolve outside.
 */
export function resolveAdapterPath(root: string, rel: unknown): string {
  const bad = (why: string): never => {
    throw new ServeError(
      400,
      'invalid_adapter_path',
      `lorakit: adapter path ${JSON.stringify(rel)} ${why}`,
      'path',
    );
  };
  if (typeof rel !== 'string' || rel.trim() === '') return bad('must be a non-empty string.');
  if (rel.includes('\0')) return bad('contains a NUL character.');
  if (isAbsolute(rel) || /^[A-Za-z]:/.test(rel) || rel.startsWith('\\'))
    return bad('must be relative to the adapter folder.');
  if (rel.split(/[\\/]+/).includes('..')) return bad("must not contain '..'.");
  const base = realpathSync(root);
  const target = resolve(base, rel);
  if (!inside(base, target)) return bad('leaves the adapter folder.');
  if (!existsSync(target))
    throw new ServeError(
      404,
      'adapter_path_not_found',
      `lorakit: there is no folder ${JSON.stringify(rel)} in the adapter folder.`,
      'path',
    );
  const real = realpathSync(target);
  if (!inside(base, real)) return bad('leaves the adapter folder (through a symbolic link).');
  if (!statSync(real).isDirectory()) return bad('is not a folder.');
  for (const f of [ADAPTER_CONFIG, ADAPTER_WEIGHTS]) {
    const p = join(real, f);
    if (!existsSync(p))
      throw new ServeError(
        400,
        'invalid_adapter',
        `lorakit: ${JSON.stringify(rel)} is not a PEFT adapter folder (it has no ${f}).`,
        'path',
      );
    if (!inside(base, realpathSync(p))) return bad(`has a ${f} that links outside the adapter folder.`);
  }
  return real;
}

export interface AdapterInfo {
  name: string;
  /** Where it was loaded from (relative to the adapter folder for run-time loads). */
  source: string;
  created: number;
}

export class AdapterRegistry {
  private readonly infos = new Map<string, AdapterInfo>();
  /** Adapters being unloaded: refused to new requests, deleted once their last request ends. */
  private readonly unloading = new Set<string>();

  constructor(
    readonly model: CausalLM,
    readonly engine: BatchEngine,
    /** The base model's name (what `model` means when it names no adapter). */
    readonly baseName: string,
    /** The folder run-time loads read from; null disables loading and unloading over HTTP. */
    readonly root: string | null,
  ) {
    if (root !== null && !(existsSync(root) && statSync(root).isDirectory()))
      throw new Error(`lorakit: --adapter-dir ${root} is not a folder.`);
  }

  /** Loaded adapters that new requests may use, in load order. */
  list(): AdapterInfo[] {
    return [...this.infos.values()].filter((a) => !this.unloading.has(a.name));
  }

  /** The adapter a request's `model` field names: null for the base model. */
  resolveModel(model: unknown): string | null {
    if (typeof model !== 'string' || model === '')
      throw new ServeError(400, 'invalid_request', "lorakit: 'model' must be a non-empty string.", 'model');
    if (model === this.baseName) return null;
    if (this.infos.has(model) && !this.unloading.has(model)) return model;
    throw new ServeError(
      404,
      'model_not_found',
      `The model '${model}' does not exist (this server has: ${[this.baseName, ...this.list().map((a) => a.name)].join(', ')}).`,
      'model',
    );
  }

  /** Loads an adapter from any folder (the operator's command line). */
  loadFrom(name: string, dir: string, source = dir): AdapterInfo {
    checkAdapterName(name);
    if (name === this.baseName)
      throw new ServeError(
        400,
        'invalid_adapter_name',
        `lorakit: adapter name '${name}' is the base model's name.`,
        'name',
      );
    if (this.infos.has(name))
      throw new ServeError(
        409,
        'adapter_exists',
        `lorakit: an adapter named '${name}' is already ${this.unloading.has(name) ? 'being unloaded' : 'loaded'}.`,
        'name',
      );
    const previous = this.model.activeAdapter;
    try {
      loadAdapter(this.model, dir, name);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      throw new ServeError(
        400,
        'invalid_adapter',
        msg.startsWith('lorakit') ? msg : `lorakit: ${msg}`,
        'path',
      );
    } finally {
      // loadAdapter activates the new adapter; serving picks adapters per row instead.
      this.model.activeAdapter = previous;
    }
    const info = { name, source, created: Math.floor(Date.now() / 1000) };
    this.infos.set(name, info);
    return info;
  }

  /** A run-time load: `path` must lie inside the adapter folder. */
  load(name: unknown, path: unknown): AdapterInfo {
    if (this.root === null)
      throw new ServeError(
        403,
        'adapter_loading_disabled',
        'lorakit: loading adapters at run time is off; start the server with --adapter-dir DIR.',
      );
    checkAdapterName(name);
    const dir = resolveAdapterPath(this.root, path);
    return this.loadFrom(name, dir, String(path));
  }

  /** Stops new requests for the adapter now; frees it when its running requests have ended. */
  async unload(name: unknown): Promise<void> {
    if (this.root === null)
      throw new ServeError(
        403,
        'adapter_loading_disabled',
        'lorakit: unloading adapters at run time is off; start the server with --adapter-dir DIR.',
      );
    checkAdapterName(name);
    if (!this.infos.has(name) || this.unloading.has(name))
      throw new ServeError(
        404,
        'adapter_not_found',
        `lorakit: no adapter named '${name}' is loaded.`,
        'name',
      );
    this.unloading.add(name);
    await this.engine.whenUnused(name);
    deleteAdapter(this.model, name);
    this.infos.delete(name);
    this.unloading.delete(name);
  }
}
