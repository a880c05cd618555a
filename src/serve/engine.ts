// The serving engine: a continuous-batching scheduler over one base model and its adapters.
//
// Requests wait in a queue; each step admits waiting requests into the running batch (up to maxBatch
// rows and while the paged KV cache has free blocks for their prompts), then runs ONE forward pass for every running sequence together —
// each decoding sequence feeds its newest token, each new sequence its prompt (in chunks when the
// step's token budget is short) — with every row going through its own adapter. Sequences leave the
// batch as soon as they finish (EOS, a stop string, max tokens, or their client went away), and new
// ones join at the next step. A sequence takes KV-cache blocks as it grows; when a decoding sequence
// needs a block and none is free, the newest running sequence gives its blocks back and waits at the
// head of the queue, to be recomputed from its prompt and the tokens it already produced (vLLM's
// recompute preemption). The event loop runs between steps, so HTTP traffic is served while a batch is
// generating.
import type { CausalLM } from '../models/llama.js';
import { PagedKVCache, PagedSequence } from '../models/paged-kv-cache.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { BatchForward, type Span, type StepOutput } from './batch-forward.js';
import { Sampler } from '../infer/sampling.js';
import { TextStream } from './text.js';

export interface GenerationRequest {
  promptIds: readonly number[];
  /** The adapter for this request; null or absent: the base model. */
  adapter?: string | null;
  /** New tokens at most. */
  maxTokens: number;
  /** 0 = greedy (the default). */
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  /** The reply ends before the first of these (which is left out). */
  stop?: readonly string[];
  /** Keep going past the end-of-sequence token (until maxTokens). */
  ignoreEos?: boolean;
  /** Aborting ends the request at the next step with finishReason 'abort'. */
  signal?: AbortSignal;
  /** Text as it becomes final (streaming); the pieces add up to the result's text. */
  onText?: (text: string) => void;
}

export interface GenerationResult {
  text: string;
  /** Generated ids (no prompt, no end-of-sequence token). */
  tokenIds: number[];
  finishReason: 'stop' | 'length' | 'abort';
  promptTokens: number;
  completionTokens: number;
}

export type EngineErrorCode =
  'queue_full' | 'context_length_exceeded' | 'adapter_not_found' | 'invalid_request' | 'closed';

/** A request the engine refuses (the server maps the code to an HTTP status). */
export class EngineError extends Error {
  constructor(
    readonly code: EngineErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface EngineOptions {
  /** Sequences generating together at most (32). */
  maxBatch?: number;
  /** Tokens per forward pass at most: decoding rows plus prompt chunks (512). */
  maxStepTokens?: number;
  /** Requests waiting for a batch row at most; more are refused with 'queue_full' (1024). */
  maxQueue?: number;
  /** Memory for the KV caches of running sequences (2 GiB), taken up front as one block pool. */
  kvCacheBytes?: number;
  /** Positions per KV-cache block (16). */
  kvBlockSize?: number;
  /** Positions per sequence at most (default: the model's max_position_embeddings / sliding window). */
  contextLength?: number;
  /**
   * 'mixed' (default): rows of any adapters share a step. 'single-adapter': each batch holds one
   * adapter's requests only (what a server without per-row adapters must do; for benchmarks).
   */
  policy?: 'mixed' | 'single-adapter';
  /**
   * Prompts starting in a step go through the flash-style attention kernel instead of the paged one
   * (default: on a GPU; PagedBatch says why not on the CPU).
   */
  flashPrefill?: boolean;
}

export interface EngineStats {
  /** Forward passes run. */
  steps: number;
  /** Sum over steps of the sequences in the step (rows / steps = mean batch size). */
  rows: number;
  promptTokens: number;
  generatedTokens: number;
  /** Time spent inside forward passes and sampling, in ms. */
  busyMs: number;
  /** Largest number of sequences in one step. */
  maxRows: number;
  /** Sequences that gave their KV blocks back to be recomputed later (the cache ran out). */
  preemptions: number;
}

class Sequence {
  /** Its KV-cache blocks while it is running. */
  paged: PagedSequence | null = null;
  /** Tokens not yet fed to the model: the (rest of the) prompt, then each new token. */
  pending: number[];
  prefilled = false;
  generated = 0;
  readonly text: TextStream;
  readonly sampler: Sampler;
  readonly capacity: number;
  done = false;

  constructor(
    readonly req: GenerationRequest,
    readonly adapter: string | null,
    tokenizer: Tokenizer,
    readonly resolve: (r: GenerationResult) => void,
    readonly reject: (e: unknown) => void,
  ) {
    this.pending = [...req.promptIds];
    this.capacity = req.promptIds.length + req.maxTokens;
    this.text = new TextStream(tokenizer, req.stop ?? [], req.promptIds);
    this.sampler = new Sampler({
      temperature: req.temperature ?? 0,
      topK: req.topK ?? 0,
      topP: req.topP ?? 1,
      seed: (req.seed ?? 0) >>> 0,
    });
  }
}

export class BatchEngine {
  readonly contextLength: number;
  readonly maxBatch: number;
  readonly maxStepTokens: number;
  readonly maxQueue: number;
  readonly kvCacheBytes: number;
  readonly policy: 'mixed' | 'single-adapter';
  /** The running sequences' keys and values. */
  readonly cache: PagedKVCache;
  readonly stats: EngineStats = {
    steps: 0,
    rows: 0,
    promptTokens: 0,
    generatedTokens: 0,
    busyMs: 0,
    maxRows: 0,
    preemptions: 0,
  };

  private readonly queue: Sequence[] = [];
  private readonly active: Sequence[] = [];
  private readonly forward: BatchForward;
  private readonly eos: Set<number>;
  private running = false;
  private closed = false;
  private idleWaiters: { adapter: string; resolve: () => void }[] = [];

  constructor(
    readonly model: CausalLM,
    readonly tokenizer: Tokenizer,
    opts: EngineOptions = {},
  ) {
    const c = model.config;
    const window = c.slidingWindow ?? Infinity;
    this.contextLength = opts.contextLength ?? Math.min(c.maxPositionEmbeddings, window);
    this.maxBatch = opts.maxBatch ?? 32;
    this.maxStepTokens = Math.max(opts.maxStepTokens ?? 512, this.maxBatch);
    this.maxQueue = opts.maxQueue ?? 1024;
    this.kvCacheBytes = opts.kvCacheBytes ?? 2 * 2 ** 30;
    this.policy = opts.policy ?? 'mixed';
    if (!(this.maxBatch >= 1)) throw new Error('lorakit: maxBatch must be at least 1.');
    const blockSize = opts.kvBlockSize ?? 16;
    const blockBytes = PagedKVCache.bytesPerBlock(c, blockSize, model.activationDType);
    const blocks = Math.floor(this.kvCacheBytes / blockBytes);
    if (blocks < 1)
      throw new Error(
        `lorakit: a KV cache of ${this.kvCacheBytes} bytes holds no block of ${blockSize} positions (${blockBytes} bytes); give it more memory.`,
      );
    this.cache = new PagedKVCache(c, blocks, blockSize, model.device, model.activationDType);
    this.forward = new BatchForward(model, this.cache, opts.flashPrefill);
    this.eos = new Set(tokenizer.eosIds);
  }

  /** Sequences generating now and requests waiting for a row. */
  get load(): { active: number; queued: number } {
    return { active: this.active.length, queued: this.queue.length };
  }

  /** Queues a request; resolves when it finishes. Throws EngineError for requests it cannot take. */
  submit(req: GenerationRequest): Promise<GenerationResult> {
    if (this.closed) throw new EngineError('closed', 'lorakit: the server is shutting down.');
    const adapter = req.adapter ?? null;
    if (adapter !== null && !this.model.adapterConfigs.has(adapter))
      throw new EngineError('adapter_not_found', `lorakit: no adapter named '${adapter}' is loaded.`);
    const n = req.promptIds.length;
    if (n === 0) throw new EngineError('invalid_request', 'lorakit: the prompt encodes to no tokens.');
    if (!Number.isInteger(req.maxTokens) || req.maxTokens < 1)
      throw new EngineError('invalid_request', 'lorakit: max tokens must be a positive integer.');
    const V = this.model.config.vocabSize;
    const bad = req.promptIds.find((id) => !Number.isInteger(id) || id < 0 || id >= V);
    if (bad !== undefined)
      throw new EngineError(
        'invalid_request',
        `lorakit: prompt token id ${bad} is outside the vocabulary (${V}).`,
      );
    if (n + req.maxTokens > this.contextLength)
      throw new EngineError(
        'context_length_exceeded',
        `lorakit: this model's context is ${this.contextLength} tokens, but the request needs ${n + req.maxTokens} (${n} in the prompt, ${req.maxTokens} to generate).`,
      );
    if (this.cache.blocksFor(n + req.maxTokens) > this.cache.numBlocks)
      throw new EngineError(
        'context_length_exceeded',
        `lorakit: the request needs ${n + req.maxTokens} positions of KV cache, more than the server's cache holds (${this.cache.numBlocks * this.cache.blockSize}).`,
      );
    if (this.queue.length >= this.maxQueue)
      throw new EngineError(
        'queue_full',
        `lorakit: the server is busy (${this.queue.length} requests waiting); retry later.`,
      );
    if (req.signal?.aborted) return Promise.resolve(this.result(req, [], '', 'abort'));
    return new Promise<GenerationResult>((resolve, reject) => {
      this.queue.push(new Sequence(req, adapter, this.tokenizer, resolve, reject));
      this.kick();
    });
  }

  /** How many queued or running requests use `adapter`. */
  usersOf(adapter: string): number {
    let n = 0;
    for (const s of [...this.queue, ...this.active]) if (s.adapter === adapter) n++;
    return n;
  }

  /** Resolves once no queued or running request uses `adapter` (e.g. before unloading it). */
  whenUnused(adapter: string): Promise<void> {
    if (this.usersOf(adapter) === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push({ adapter, resolve }));
  }

  /** Ends every request ('abort') and refuses new ones. */
  close(): void {
    this.closed = true;
    for (const s of [...this.queue.splice(0), ...this.active.splice(0)]) this.finish(s, 'abort');
    this.forward.dispose();
    this.cache.dispose();
  }

  private kick(): void {
    if (this.running) return;
    this.running = true;
    setImmediate(() => void this.loop());
  }

  private async loop(): Promise<void> {
    try {
      while (!this.closed && (this.queue.length > 0 || this.active.length > 0)) {
        try {
          this.dropAborted();
          this.admit();
          if (this.active.length > 0) this.step();
        } catch (e) {
          // A bug, not a bad request: fail what was running rather than the whole process.
          for (const s of this.active.splice(0)) this.fail(s, e);
        }
        // Let I/O run: new requests arrive, streamed text goes out, clients disconnect.
        await new Promise<void>((r) => setImmediate(r));
      }
    } finally {
      this.running = false;
    }
  }

  private dropAborted(): void {
    for (const list of [this.queue, this.active])
      for (let i = list.length - 1; i >= 0; i--)
        if (list[i].req.signal?.aborted) {
          const [s] = list.splice(i, 1);
          this.finish(s, 'abort');
        }
  }

  // Moves waiting requests into the batch, oldest first, while rows last and the cache has blocks for
  // their prompts (later positions take blocks as they come).
  private admit(): void {
    let only: string | null | undefined; // single-adapter policy: the adapter of this batch
    if (this.policy === 'single-adapter')
      only = this.active.length > 0 ? this.active[0].adapter : this.queue[0]?.adapter;
    for (let i = 0; i < this.queue.length && this.active.length < this.maxBatch;) {
      const s = this.queue[i];
      if (only !== undefined && s.adapter !== only) {
        i++;
        continue;
      }
      const paged = new PagedSequence();
      if (!this.cache.reserve(paged, s.pending.length + 1)) break;
      this.queue.splice(i, 1);
      s.paged = paged;
      this.active.push(s);
    }
  }

  // Gives the newest running sequence's blocks back and queues it first, to be recomputed from its
  // prompt and the tokens it produced; its text and sampler carry on where they were.
  private preemptNewest(): Sequence {
    const s = this.active.pop()!;
    this.stats.preemptions++;
    this.cache.release(s.paged!);
    s.paged = null;
    s.pending = [...s.req.promptIds, ...s.text.ids.slice(0, s.generated)];
    s.prefilled = false;
    this.queue.unshift(s);
    return s;
  }

  // Blocks for the step's new positions, preempting the newest sequences while the pool is short;
  // the parts of sequences still running.
  private reserve(parts: { seq: Sequence; take: number }[]): { seq: Sequence; take: number }[] {
    const preempted = new Set<Sequence>();
    for (const { seq, take } of parts)
      while (!preempted.has(seq) && !this.cache.reserve(seq.paged!, seq.paged!.length + take))
        preempted.add(this.preemptNewest());
    return parts.filter((p) => !preempted.has(p.seq));
  }

  // One forward pass for every running sequence, then one sampled token for each that wanted one.
  private step(): void {
    const t0 = performance.now();
    let parts: { seq: Sequence; take: number }[] = [];
    let budget = this.maxStepTokens;
    // Decoding rows first (one token each), then prompt chunks in arrival order.
    for (const s of this.active)
      if (s.prefilled) {
        parts.push({ seq: s, take: 1 });
        budget--;
      }
    for (const s of this.active) {
      if (s.prefilled || budget <= 0) continue;
      const take = Math.min(s.pending.length, budget);
      parts.push({ seq: s, take });
      budget -= take;
    }
    parts = this.reserve(parts);
    if (parts.length === 0) return;
    // Rows of one adapter next to each other: each adapter then runs once per layer on a slice.
    const order = new Map<string | null, number>();
    for (const p of parts) if (!order.has(p.seq.adapter)) order.set(p.seq.adapter, order.size);
    parts.sort((a, b) => order.get(a.seq.adapter)! - order.get(b.seq.adapter)!);
    const spans: Span[] = parts.map(({ seq, take }) => ({
      seq: seq.paged!,
      tokens: seq.pending.slice(0, take),
      adapter: seq.adapter,
      wantLogits: take === seq.pending.length,
      greedy: seq.sampler.greedy,
    }));
    let outputs: StepOutput[];
    try {
      outputs = this.forward.run(spans);
    } catch (e) {
      // A failed forward fails the sequences in it (their caches may be half-written).
      for (const { seq } of parts) {
        this.active.splice(this.active.indexOf(seq), 1);
        this.fail(seq, e);
      }
      return;
    }
    this.stats.steps++;
    this.stats.rows += parts.length;
    this.stats.maxRows = Math.max(this.stats.maxRows, parts.length);
    let li = 0;
    parts.forEach(({ seq, take }, j) => {
      if (!seq.prefilled) this.stats.promptTokens += take;
      seq.pending.splice(0, take);
      if (!spans[j].wantLogits) return;
      seq.prefilled = true;
      const out = outputs[li++];
      const next = typeof out === 'number' ? out : seq.sampler.next(out);
      this.accept(seq, next);
    });
    this.stats.busyMs += performance.now() - t0;
  }

  // A newly sampled token: end the sequence, or stream its text and feed it next step.
  private accept(seq: Sequence, id: number): void {
    if (this.eos.has(id) && !seq.req.ignoreEos) return this.retire(seq, 'stop');
    seq.generated++;
    this.stats.generatedTokens++;
    if (seq.text.push(id)) return this.retire(seq, 'stop');
    if (!this.emit(seq, seq.text.take())) return;
    if (seq.generated >= seq.req.maxTokens) return this.retire(seq, 'length');
    seq.pending.push(id);
  }

  private retire(seq: Sequence, reason: GenerationResult['finishReason']): void {
    this.active.splice(this.active.indexOf(seq), 1);
    this.finish(seq, reason);
  }

  private result(
    req: GenerationRequest,
    ids: number[],
    text: string,
    reason: GenerationResult['finishReason'],
  ): GenerationResult {
    return {
      text,
      tokenIds: ids,
      finishReason: reason,
      promptTokens: req.promptIds.length,
      completionTokens: ids.length,
    };
  }

  private release(seq: Sequence): void {
    seq.done = true;
    if (seq.paged) this.cache.release(seq.paged);
    seq.paged = null;
    if (seq.adapter !== null && this.idleWaiters.length > 0) {
      const still = this.idleWaiters.filter((w) => this.usersOf(w.adapter) > 0);
      const ready = this.idleWaiters.filter((w) => !still.includes(w));
      this.idleWaiters = still;
      ready.forEach((w) => w.resolve());
    }
  }

  private finish(seq: Sequence, reason: GenerationResult['finishReason']): void {
    if (seq.done) return;
    this.release(seq);
    if (reason !== 'abort' && !this.emit(seq, seq.text.take(true))) return;
    seq.resolve(this.result(seq.req, seq.text.ids, seq.text.text, reason));
  }

  // Hands streamed text to the request's callback; a callback that throws fails its request only.
  private emit(seq: Sequence, piece: string): boolean {
    if (!piece || !seq.req.onText) return true;
    try {
      seq.req.onText(piece);
      return true;
    } catch (e) {
      const i = this.active.indexOf(seq);
      if (i >= 0) this.active.splice(i, 1);
      this.fail(seq, e);
      seq.reject(e);
      return false;
    }
  }

  private fail(seq: Sequence, e: unknown): void {
    if (seq.done) return;
    this.release(seq);
    seq.reject(e);
  }
}
