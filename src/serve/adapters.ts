// The adapters a server offers: loaded at start or at run time from inside one configured folder,
// unloaded once no request uses them any more.
import { constants, existsSync, statSync, type Stats } from 'node:fs';
import { open, readlink, realpath, stat, type FileHandle } from 'node:fs/promises';
import { isAbsolute, join, resolve, sep } from 'node:path';
import { SafetensorsFile } from '../io/safetensors.js';
import type { CausalLM } from '../models/llama.js';
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  addAdapterFrom,
  deleteAdapter,
  loadAdapter,
} from '../peft/adapters.js';
import { readPeftConfig, type LoraConfig } from '../peft/config.js';
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

/** PEFT writes a few KB of config; anything much larger is not one. */
const MAX_CONFIG_BYTES = 1 << 20;
/** PEFT's safetensors headers are KBs; parsing a huge one would hold up every other request. */
const MAX_HEADER_BYTES = 16 << 20;
// A link as the last component is refused (the path was resolved already), and a FIFO opens at once
// instead of waiting for a writer (then fstat refuses it); a flag the system lacks is 0.
const OPEN_FLAGS =
  constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);

function errno(e: unknown): string | undefined {
  return e instanceof Error && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}

function pathError(rel: unknown, why: string): ServeError {
  return new ServeError(
    400,
    'invalid_adapter_path',
    `lorakit: adapter path ${JSON.stringify(rel)} ${why}`,
    'path',
  );
}

/** `rel` as a path inside the adapter folder: relative, no NUL, no '..'. */
function checkRelative(rel: unknown): string {
  if (typeof rel !== 'string' || rel.trim() === '') throw pathError(rel, 'must be a non-empty string.');
  if (rel.includes('\0')) throw pathError(rel, 'contains a NUL character.');
  if (isAbsolute(rel) || /^[A-Za-z]:/.test(rel) || rel.startsWith('\\'))
    throw pathError(rel, 'must be relative to the adapter folder.');
  if (rel.split(/[\\/]+/).includes('..')) throw pathError(rel, "must not contain '..'.");
  return rel;
}

function changed(rel: string, what: string): ServeError {
  return new ServeError(
    409,
    'adapter_changed',
    `lorakit: adapter path ${JSON.stringify(rel)} changed while it was being opened (${what}); try again.`,
    'path',
  );
}

/**
 * Whether open file `fh` is the file at `real`: on Linux, the kernel's own name for the descriptor;
 * elsewhere (no /proc), a second lookup of `real` must find the same file.
 */
async function isFileAt(fh: FileHandle, st: Stats, real: string): Promise<boolean> {
  try {
    return (await readlink(`/proc/self/fd/${fh.fd}`)) === real;
  } catch {
    try {
      const again = await stat(real);
      return again.dev === st.dev && again.ino === st.ino;
    } catch {
      return false;
    }
  }
}

/**
 * The whole of `file` in adapter folder `dir` (a real path inside `base`), read once through one
 * descriptor that is checked after opening: a regular file, and still the file inside the folder (a
 * file or parent folder swapped for a link to elsewhere meanwhile is refused). Reads are asynchronous.
 */
async function readChecked(
  base: string,
  rel: string,
  dir: string,
  file: string,
  max: number,
): Promise<Buffer> {
  let real: string;
  try {
    real = await realpath(join(dir, file));
  } catch (e) {
    if (errno(e) === 'ENOENT')
      throw new ServeError(
        400,
        'invalid_adapter',
        `lorakit: ${JSON.stringify(rel)} is not a PEFT adapter folder (it has no ${file}).`,
        'path',
      );
    throw pathError(rel, `has a ${file} that cannot be read (${errno(e) ?? String(e)}).`);
  }
  if (!inside(base, real)) throw pathError(rel, `has a ${file} that links outside the adapter folder.`);
  let fh: FileHandle;
  try {
    fh = await open(real, OPEN_FLAGS);
  } catch (e) {
    const code = errno(e);
    if (code === 'ELOOP' || code === 'ENOENT') throw changed(rel, file);
    if (code === 'ENXIO') throw pathError(rel, `has a ${file} that is not a regular file.`); // a socket
    throw pathError(rel, `has a ${file} that cannot be opened (${code ?? String(e)}).`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw pathError(rel, `has a ${file} that is not a regular file.`);
    if (!(await isFileAt(fh, st, real))) throw changed(rel, file);
    if (st.size > max)
      throw pathError(rel, `has a ${file} of ${st.size} bytes; at most ${max} are accepted.`);
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

/** An adapter folder's config and weights, read from inside `root` without blocking the event loop. */
export interface AdapterFiles {
  config: LoraConfig;
  weights: SafetensorsFile;
  /** How messages name the weights file (relative to the adapter folder). */
  weightsName: string;
}

/**
 * Reads adapter folder `rel` inside `root`, refusing anything that leaves it: absolute paths, '..'
 * segments, symbolic links (of the folder, its parents or its files) that resolve outside, files
 * swapped while being opened, and files that are not regular files (a FIFO would block the read).
 */
export async function readAdapterFolder(root: string, relIn: unknown): Promise<AdapterFiles> {
  const rel = checkRelative(relIn);
  const base = await realpath(root);
  const target = resolve(base, rel);
  if (!inside(base, target)) throw pathError(rel, 'leaves the adapter folder.');
  let dir: string;
  try {
    dir = await realpath(target);
  } catch (e) {
    if (errno(e) !== 'ENOENT' && errno(e) !== 'ENOTDIR')
      throw pathError(rel, `cannot be opened (${errno(e) ?? String(e)}).`);
    throw new ServeError(
      404,
      'adapter_path_not_found',
      `lorakit: there is no folder ${JSON.stringify(rel)} in the adapter folder.`,
      'path',
    );
  }
  if (!inside(base, dir)) throw pathError(rel, 'leaves the adapter folder (through a symbolic link).');
  const st = await stat(dir).catch(() => null);
  if (st === null) throw changed(rel, 'the folder');
  if (!st.isDirectory()) throw pathError(rel, 'is not a folder.');
  const configText = await readChecked(base, rel, dir, ADAPTER_CONFIG, MAX_CONFIG_BYTES);
  const bytes = await readChecked(base, rel, dir, ADAPTER_WEIGHTS, Number.MAX_SAFE_INTEGER);
  const configName = join(rel, ADAPTER_CONFIG);
  const weightsName = join(rel, ADAPTER_WEIGHTS);
  const config = readPeftConfig(configName, configText.toString('utf8'));
  const header = bytes.length >= 8 ? bytes.readBigUInt64LE(0) : 0n;
  if (header > BigInt(MAX_HEADER_BYTES))
    throw new Error(
      `lorakit: ${weightsName}: header length ${header} is larger than run-time loads accept (${MAX_HEADER_BYTES} bytes).`,
    );
  const view = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { config, weights: SafetensorsFile.fromBytes(view, weightsName), weightsName };
}

/** A failed load as the client sees it: our own errors as they are, any other as a 400 naming the file. */
function asAdapterError(e: unknown): ServeError {
  if (e instanceof ServeError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new ServeError(400, 'invalid_adapter', msg.startsWith('lorakit') ? msg : `lorakit: ${msg}`, 'path');
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
  /** Names of run-time loads whose files are still being read. */
  private readonly loading = new Set<string>();

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
    this.checkFree(name);
    return this.install(name, source, () => loadAdapter(this.model, dir, name));
  }

  /** A run-time load: `path` must lie inside the adapter folder. */
  async load(name: unknown, path: unknown): Promise<AdapterInfo> {
    if (this.root === null)
      throw new ServeError(
        403,
        'adapter_loading_disabled',
        'lorakit: loading adapters at run time is off; start the server with --adapter-dir DIR.',
      );
    this.checkFree(name);
    // The name is taken while the files are read, so two loads of one name cannot both succeed.
    this.loading.add(name);
    try {
      let files: AdapterFiles;
      try {
        files = await readAdapterFolder(this.root, path);
      } catch (e) {
        throw asAdapterError(e);
      }
      const { config, weights, weightsName } = files;
      return this.install(name, String(path), () =>
        addAdapterFrom(this.model, name, config, weights, weightsName),
      );
    } finally {
      this.loading.delete(name);
    }
  }

  /** Throws unless `name` is a valid adapter name that nothing holds (base model, loaded, loading). */
  private checkFree(name: unknown): asserts name is string {
    checkAdapterName(name);
    if (name === this.baseName)
      throw new ServeError(
        400,
        'invalid_adapter_name',
        `lorakit: adapter name '${name}' is the base model's name.`,
        'name',
      );
    if (this.infos.has(name) || this.loading.has(name))
      throw new ServeError(
        409,
        'adapter_exists',
        `lorakit: an adapter named '${name}' is already ${this.unloading.has(name) ? 'being unloaded' : this.loading.has(name) ? 'being loaded' : 'loaded'}.`,
        'name',
      );
  }

  // Adds the adapter `add` puts on the model to the served ones (synchronously: no request runs meanwhile).
  private install(name: string, source: string, add: () => unknown): AdapterInfo {
    const previous = this.model.activeAdapter;
    try {
      add();
    } catch (e) {
      throw asAdapterError(e);
    } finally {
      // Loading activates the new adapter; serving picks adapters per row instead.
      this.model.activeAdapter = previous;
    }
    const info = { name, source, created: Math.floor(Date.now() / 1000) };
    this.infos.set(name, info);
    return info;
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
