// Hugging Face Hub: turns `org/name` into a local folder, sharing huggingface_hub's cache layout
// (models--org--name/{blobs,snapshots/<commit>,refs/<revision>}), so files Python already downloaded
// are reused and ours are reused by Python. Downloads are resumable (blobs/<etag>.incomplete + HTTP
// Range), land under a temporary name and are renamed into place, so an interrupted run never leaves
// a half file where a whole one is expected.
import { createHash } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  ftruncateSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { INDEX_FILE, readIndex, SINGLE_FILE } from './safetensors.js';

export interface ResolveOptions {
  /** Exactly these files (all required) instead of the default model file set. */
  files?: string[];
  /** Branch, tag or commit; default 'main'. */
  revision?: string;
  /** Never touch the network (also when HF_HUB_OFFLINE=1). */
  offline?: boolean;
  /** Cache root; default $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Default $HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Default $HF_TOKEN. */
  token?: string;
  /** Called as bytes arrive (total is null when the server does not say). */
  onProgress?: (file: string, received: number, total: number | null) => void;
}

const REQUIRED = ['config.json', 'tokenizer.json', 'tokenizer_config.json'];
const OPTIONAL = ['generation_config.json'];
const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;
const ATTEMPTS = 5;
const IDLE_TIMEOUT_MS = 60_000;

export function hubCacheDir(): string {
  if (process.env.HF_HUB_CACHE) return process.env.HF_HUB_CACHE;
  if (process.env.HF_HOME) return join(process.env.HF_HOME, 'hub');
  return join(homedir(), '.cache', 'huggingface', 'hub');
}

function isOffline(opts: ResolveOptions): boolean {
  const env = (process.env.HF_HUB_OFFLINE ?? '').toLowerCase();
  return opts.offline === true || ['1', 'true', 'yes', 'on'].includes(env);
}

/** A failure the user must act on (bad id, 401, 404): reported as is, never hidden by the cache. */
class HubError extends Error {}

/**
 * A local folder (or file) for `idOrPath`: an existing path is returned as it is; a Hub id `org/name`
 * is found in the Hugging Face cache or downloaded into it, and its snapshot folder returned. The
 * default file set is config.json, tokenizer.json, tokenizer_config.json, generation_config.json (if
 * the repo has one) and model.safetensors, or model.safetensors.index.json and every shard it names.
 */
export async function resolveModel(idOrPath: string, opts: ResolveOptions = {}): Promise<string> {
  if (existsSync(idOrPath)) return idOrPath;
  if (!REPO_ID.test(idOrPath) || idOrPath.includes('..') || idOrPath.includes('--'))
    throw new Error(
      `lorakit: ${idOrPath}: no such file or folder, and not a Hugging Face model id (org/name).`,
    );
  const repo = new Repo(idOrPath, opts);
  if (isOffline(opts)) {
    const cached = repo.cachedSnapshot();
    if (cached) return cached;
    throw new Error(
      `lorakit: ${idOrPath} is not in the Hugging Face cache (${repo.dir}) and downloads are off (HF_HUB_OFFLINE); ${repo.manualHint()}`,
    );
  }
  try {
    return await repo.download();
  } catch (e) {
    if (e instanceof HubError) throw e;
    const cached = repo.cachedSnapshot();
    if (cached) return cached; // the network is down but everything needed is already here
    const reason = e instanceof Error ? networkReason(e) : String(e);
    throw new Error(
      `lorakit: could not download ${idOrPath} from ${repo.endpoint} (${reason}); ${repo.manualHint()}`,
    );
  }
}

function networkReason(e: Error): string {
  const cause = (e as Error & { cause?: unknown }).cause;
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    return code ? `${code}` : cause.message;
  }
  return e.message.replace(/^lorakit: /, '').replace(/\.$/, '');
}

interface FileMeta {
  commit: string | null;
  etag: string;
  size: number | null;
  /** Where to GET the bytes (a CDN for large files). */
  url: string;
}

class Repo {
  readonly dir: string;
  readonly endpoint: string;
  readonly revision: string;
  private readonly token: string | undefined;

  constructor(
    readonly id: string,
    private readonly opts: ResolveOptions,
  ) {
    this.dir = join(opts.cacheDir ?? hubCacheDir(), `models--${id.replace('/', '--')}`);
    this.endpoint = (opts.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(
      /\/+$/,
      '',
    );
    this.revision = opts.revision ?? 'main';
    this.token = opts.token ?? (process.env.HF_TOKEN || undefined);
  }

  /** One sentence telling the user what to fetch by hand (the tail of the offline/network errors). */
  manualHint(): string {
    const files = this.opts.files ?? [
      ...REQUIRED,
      ...OPTIONAL.map((f) => `${f} (if present)`),
      `${SINGLE_FILE} (or ${INDEX_FILE} and its shards)`,
    ];
    return `download ${files.join(', ')} from ${this.endpoint}/${this.id} into one folder and pass that folder to --model (a local .gguf file works too).`;
  }

  private fileUrl(file: string): string {
    const path = file.split('/').map(encodeURIComponent).join('/');
    return `${this.endpoint}/${this.id}/resolve/${encodeURIComponent(this.revision)}/${path}`;
  }

  private headers(url: string): Record<string, string> {
    const h: Record<string, string> = { 'Accept-Encoding': 'identity', 'User-Agent': 'lorakit' };
    // The token goes to the Hub only, never to the storage a large file redirects to.
    if (this.token && new URL(url).origin === new URL(this.endpoint).origin)
      h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  // ---- cache ----

  private snapshotDir(commit: string): string {
    return join(this.dir, 'snapshots', commit);
  }

  private cachedCommit(): string | null {
    if (/^[0-9a-f]{40}$/.test(this.revision)) return this.revision;
    const ref = join(this.dir, 'refs', this.revision);
    return existsSync(ref) ? readFileSync(ref, 'utf8').trim() : null;
  }

  /** The snapshot folder when every needed file is in it, else null. */
  cachedSnapshot(): string | null {
    const commit = this.cachedCommit();
    if (!commit) return null;
    const snap = this.snapshotDir(commit);
    const has = (f: string) => existsSync(join(snap, f));
    if (this.opts.files) return this.opts.files.every(has) ? snap : null;
    if (!REQUIRED.every(has)) return null;
    if (has(SINGLE_FILE)) return snap;
    if (!has(INDEX_FILE)) return null;
    try {
      return [...new Set(readIndex(join(snap, INDEX_FILE)).values())].every(has) ? snap : null;
    } catch {
      return null;
    }
  }

  // ---- network ----

  async download(): Promise<string> {
    let commit: string | null = null;
    const fetchOne = async (file: string, optional: boolean): Promise<boolean> => {
      const meta = await this.head(file, optional);
      if (!meta) return false;
      if (meta.commit) commit ??= meta.commit;
      const snapCommit = meta.commit ?? commit ?? this.revision;
      await this.fetchBlob(file, meta, snapCommit);
      return true;
    };
    if (this.opts.files) {
      for (const f of this.opts.files) await fetchOne(f, false);
    } else {
      for (const f of REQUIRED) await fetchOne(f, false);
      for (const f of OPTIONAL) await fetchOne(f, true);
      if (!(await fetchOne(SINGLE_FILE, true))) {
        if (!(await fetchOne(INDEX_FILE, true)))
          throw new HubError(
            `lorakit: ${this.id} has neither ${SINGLE_FILE} nor ${INDEX_FILE} at revision ${this.revision}; pass --model a folder or .gguf file instead.`,
          );
        const snap = this.snapshotDir(commit ?? this.revision);
        for (const shard of new Set(readIndex(join(snap, INDEX_FILE)).values())) await fetchOne(shard, false);
      }
    }
    const finalCommit = commit ?? this.revision;
    if (finalCommit !== this.revision) {
      const ref = join(this.dir, 'refs', this.revision);
      mkdirSync(dirname(ref), { recursive: true });
      writeFileSync(ref, finalCommit);
    }
    return this.snapshotDir(finalCommit);
  }

  /** File metadata from a HEAD request (relative redirects followed, a CDN redirect recorded). */
  private async head(file: string, optional: boolean): Promise<FileMeta | null> {
    let url = this.fileUrl(file);
    for (let hop = 0; hop < 10; hop++) {
      const res = await fetch(url, {
        method: 'HEAD',
        redirect: 'manual',
        headers: this.headers(url),
        signal: AbortSignal.timeout(IDLE_TIMEOUT_MS),
      });
      const commit = res.headers.get('x-repo-commit');
      const etagRaw = res.headers.get('x-linked-etag') ?? res.headers.get('etag');
      if (res.status >= 300 && res.status < 400) {
        const location = res.headers.get('location');
        if (!location) throw new Error(`redirect without a location for ${file}`);
        const next = new URL(location, url);
        if (next.origin === new URL(url).origin) {
          url = next.toString(); // a renamed repo, or the Hub's own cache: ask there
          continue;
        }
        // A large file: the bytes live elsewhere; this response describes them.
        return this.meta(file, commit, etagRaw, res.headers.get('x-linked-size'), next.toString());
      }
      if (res.status === 404) {
        if (optional) return null;
        throw new HubError(
          `lorakit: ${this.id} has no file ${file} at revision ${this.revision} (404 from ${this.endpoint}).`,
        );
      }
      if (res.status === 401 || res.status === 403) {
        const what = this.token
          ? 'the token (HF_TOKEN) is not allowed to read it'
          : 'set HF_TOKEN to a token that may read it (gated or private repository)';
        throw new HubError(`lorakit: ${this.id}: access denied (${res.status}) for ${file}; ${what}.`);
      }
      if (!res.ok) throw new Error(`HTTP ${res.status} for ${file}`);
      return this.meta(
        file,
        commit,
        etagRaw,
        res.headers.get('x-linked-size') ?? res.headers.get('content-length'),
        url,
      );
    }
    throw new Error(`too many redirects for ${file}`);
  }

  private meta(
    file: string,
    commit: string | null,
    etagRaw: string | null,
    sizeRaw: string | null,
    url: string,
  ): FileMeta {
    let etag = (etagRaw ?? '').replace(/^W\//, '').replace(/"/g, '');
    if (!/^[\w.-]+$/.test(etag))
      etag = createHash('sha256')
        .update(`${commit ?? this.revision}/${file}`)
        .digest('hex');
    const size = sizeRaw !== null && /^\d+$/.test(sizeRaw) ? Number(sizeRaw) : null;
    return { commit: commit && /^[\w.-]+$/.test(commit) ? commit : null, etag, size, url };
  }

  /** Ensures blobs/<etag> holds the file, then links snapshots/<commit>/<file> to it. */
  private async fetchBlob(file: string, meta: FileMeta, commit: string): Promise<void> {
    const blobs = join(this.dir, 'blobs');
    mkdirSync(blobs, { recursive: true });
    const blob = join(blobs, meta.etag);
    const complete = existsSync(blob) && (meta.size === null || statSync(blob).size === meta.size);
    if (!complete) {
      const part = `${blob}.incomplete`;
      await downloadResumable(
        meta.url,
        part,
        meta.size,
        (u) => this.headers(u),
        (n) => this.opts.onProgress?.(file, n, meta.size),
        file,
      );
      renameSync(part, blob);
    }
    const target = join(this.snapshotDir(commit), file);
    mkdirSync(dirname(target), { recursive: true });
    rmSync(target, { force: true });
    try {
      symlinkSync(relative(dirname(target), blob), target);
    } catch {
      copyFileSync(blob, target); // file systems without symlinks (as huggingface_hub does)
    }
  }
}

/**
 * Downloads url into `part`, appending to whatever an earlier attempt left there (HTTP Range), and
 * retrying a dropped connection from where it stopped. Returns when `part` holds the whole file.
 */
async function downloadResumable(
  url: string,
  part: string,
  size: number | null,
  headers: (url: string) => Record<string, string>,
  progress: (received: number) => void,
  file: string,
): Promise<void> {
  let lastError: unknown = null;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const fd = openSync(part, existsSync(part) ? 'r+' : 'w+'); // not append mode: positional writes
    try {
      let have = fstatSync(fd).size;
      if (size !== null && have > size) {
        ftruncateSync(fd, 0);
        have = 0;
      }
      if (size !== null && have === size) return;
      const h = headers(url);
      if (have > 0) h.Range = `bytes=${have}-`;
      const ctrl = new AbortController();
      let timer = setTimeout(() => ctrl.abort(), IDLE_TIMEOUT_MS);
      try {
        const res = await fetch(url, { headers: h, signal: ctrl.signal });
        if (res.status === 416 && have > 0) {
          ftruncateSync(fd, 0); // the partial file is not a prefix of this one: start over
          continue;
        }
        if (res.status === 401 || res.status === 403)
          throw new HubError(`lorakit: access denied (${res.status}) downloading ${file}.`);
        if (!res.ok) throw new Error(`HTTP ${res.status} downloading ${file}`);
        if (have > 0 && res.status !== 206) {
          ftruncateSync(fd, 0); // the server ignored Range and sends everything again
          have = 0;
        }
        if (res.status === 206) {
          const start = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
          if (!start || Number(start[1]) !== have) {
            ftruncateSync(fd, 0);
            continue;
          }
        }
        if (!res.body) throw new Error(`empty response downloading ${file}`);
        const reader = res.body.getReader();
        let position = have;
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          clearTimeout(timer);
          timer = setTimeout(() => ctrl.abort(), IDLE_TIMEOUT_MS);
          for (let off = 0; off < value.length;)
            off += writeSync(fd, value, off, value.length - off, position + off);
          position += value.length;
          progress(position);
        }
        if (size === null || position === size) return;
        lastError = new Error(`connection closed at byte ${position} of ${size} downloading ${file}`);
      } finally {
        clearTimeout(timer);
      }
    } catch (e) {
      if (e instanceof HubError) throw e;
      lastError = e;
    } finally {
      closeSync(fd);
    }
  }
  throw lastError instanceof Error ? lastError : new Error(`download of ${file} failed`);
}
