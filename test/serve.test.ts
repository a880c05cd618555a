// Serving: the batching engine gives generate()'s tokens for every request whatever it is batched
// with (mixed adapters, rows joining and leaving, chunked prompts); the fast sampler makes Sampler's
// choices; stop strings; and the OpenAI-compatible server driven by the official `openai` client.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { noGrad } from '../src/autograd/tape.js';
import { generate, type GenerateOptions } from '../src/infer/generate.js';
import { Sampler } from '../src/infer/sampling.js';
import type { CausalLM } from '../src/models/llama.js';
import { loadModel } from '../src/models/load.js';
import { deleteAdapter, loadAdapter, setActiveAdapter } from '../src/peft/adapters.js';
import { PagedKVCache } from '../src/models/paged-kv-cache.js';
import { BatchEngine, EngineError, type GenerationRequest } from '../src/serve/engine.js';
import { sortDescending } from '../src/infer/sampling.js';
import { seededUniform } from '../src/peft/lora.js';
import { LorakitServer } from '../src/serve/server.js';
import { TextStream } from '../src/serve/text.js';
import { Tensor, tidy, type Device } from '../src/tensor/tensor.js';
import { cudaAvailable } from '../src/backend/cuda/device.js';
import type { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { fixture, projectRoot, randn, rng } from './helpers.js';

const MODEL = fixture('models', 'llama');
const ADAPTERS = ['llama-lora', 'llama-rslora', 'llama-dora'].map((n) => ({
  name: n,
  dir: fixture('peft', n, 'adapter'),
}));
const missing = !MODEL || ADAPTERS.some((a) => !a.dir);
const SKIP = 'fixtures missing: run scripts/reference/make-all.sh';

const work = mkdtempSync(join(tmpdir(), 'lorakit-serve-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

// The fixture model with its adapters (LoRA, rsLoRA, DoRA) on `device`.
async function tinyModel(
  device: Device = 'cpu',
  dtype: 'float32' | 'bfloat16' = 'float32',
): Promise<{ model: CausalLM; tokenizer: Tokenizer }> {
  const { model, tokenizer } = await loadModel(MODEL!, { device, dtype });
  for (const a of ADAPTERS) loadAdapter(model, a.dir!, a.name);
  model.activeAdapter = null;
  return { model, tokenizer };
}

/** generate() alone, with `adapter` active. */
function reference(model: CausalLM, tokenizer: Tokenizer, adapter: string | null, o: GenerateOptions) {
  const before = model.activeAdapter;
  setActiveAdapter(model, adapter);
  try {
    return generate(model, tokenizer, o);
  } finally {
    model.activeAdapter = before;
  }
}

// ---- sampler and text -------------------------------------------------------------------------------

test('sortDescending orders by value, largest first, ties in index order (a stable sort)', () => {
  const r = rng(3);
  for (const n of [1, 7, 33, 1000]) {
    const v = new Float32Array(n).map(() => Math.round((r() - 0.5) * 20) / 4); // many ties, negatives, ±0
    if (n > 2) v[1] = -0;
    const want = Array.from(v.keys()).sort((a, b) => v[b] - v[a]);
    assert.deepEqual(Array.from(sortDescending(v)), want);
  }
});

/** The plain definition the radix-sorted Sampler must reproduce: comparator sort, top-k, top-p, one draw. */
class ReferenceSampler {
  private readonly rand: () => number;
  constructor(readonly opts: { temperature: number; topK: number; topP: number; seed: number }) {
    this.rand = seededUniform(opts.seed);
  }
  next(logits: Float32Array): number {
    if (this.opts.temperature <= 0)
      return Array.from(logits.keys()).reduce((b, i) => (logits[i] > logits[b] ? i : b), 0);
    let idx = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]);
    if (this.opts.topK > 0) idx = idx.slice(0, this.opts.topK);
    let probs = idx.map((i) => Math.exp((logits[i] - logits[idx[0]]) / this.opts.temperature));
    let total = probs.reduce((a, b) => a + b, 0);
    if (this.opts.topP < 1) {
      let acc = 0;
      let keep = 0;
      while (keep < probs.length && acc < this.opts.topP * total) acc += probs[keep++];
      idx = idx.slice(0, Math.max(1, keep));
      probs = probs.slice(0, Math.max(1, keep));
      total = probs.reduce((a, b) => a + b, 0);
    }
    let u = this.rand() * total;
    for (let k = 0; k < idx.length; k++) if ((u -= probs[k]) <= 0) return idx[k];
    return idx[idx.length - 1];
  }
}

test('Sampler makes the same choices as the plain definition (greedy, temperature, top-k, top-p, seeds)', () => {
  const V = 257;
  for (const [i, opts] of [
    { temperature: 0, topK: 0, topP: 1 },
    { temperature: 1, topK: 0, topP: 1 },
    { temperature: 0.7, topK: 0, topP: 0.9 },
    { temperature: 1.3, topK: 5, topP: 1 },
    { temperature: 0.5, topK: 40, topP: 0.5 },
  ].entries()) {
    for (const seed of [0, 1, 12345]) {
      const a = new ReferenceSampler({ ...opts, seed });
      const b = new Sampler({ ...opts, seed });
      for (let step = 0; step < 40; step++) {
        const logits = Float32Array.from(randn(V, 1000 * i + 10 * seed + step, 2));
        assert.equal(
          b.next(logits),
          a.next(logits),
          `options ${JSON.stringify(opts)} seed ${seed} step ${step}`,
        );
      }
    }
  }
});

test(
  'TextStream: stop strings across tokens are cut and never streamed; held-back text is released at the end',
  { skip: missing && SKIP },
  async () => {
    const { model, tokenizer } = await loadModel(MODEL!);
    model.dispose();
    const ids = tokenizer.encode('the cat sat on the mat', { addSpecialTokens: false });
    const text = tokenizer.decode(ids, { skipSpecialTokens: true });
    const run = (stop: string[]) => {
      const s = new TextStream(tokenizer, stop);
      let streamed = '';
      let stopped = false;
      for (const id of ids) {
        stopped = s.push(id);
        streamed += s.take();
        if (stopped) break;
      }
      streamed += s.take(true);
      return { streamed, text: s.text, stopped };
    };
    assert.deepEqual(run([]), { streamed: text, text, stopped: false });
    const cut = text.indexOf('sat');
    assert.deepEqual(run(['sat']), { streamed: text.slice(0, cut), text: text.slice(0, cut), stopped: true });
    assert.deepEqual(run(['t o']), {
      streamed: text.slice(0, text.indexOf('t o')),
      text: text.slice(0, text.indexOf('t o')),
      stopped: true,
    });
    // A stop string that never completes: its prefix is held back, then released.
    assert.deepEqual(run(['mat!']), { streamed: text, text, stopped: false });
  },
);

// ---- the engine ---------------------------------------------------------------------------------------

// The engine on the CPU, and on the GPU where there is one: the same forward path on both.
// On the GPU in fp32 (--dtype float32), where greedy tokens can be held to generate()'s exactly; bf16
// rounds the batch's products at other points than one sequence's, and a near-tie between two logits
// of this tiny model then picks the other token (the bf16 test below compares runs of the engine).
const ENGINE_DEVICES: Device[] = cudaAvailable() ? ['cpu', 'cuda'] : ['cpu'];
for (const device of ENGINE_DEVICES)
  describe(`BatchEngine (${device}, fp32)`, { skip: missing && SKIP }, () => {
    let model: CausalLM;
    let tokenizer: Tokenizer;
    before(async () => ({ model, tokenizer } = await tinyModel(device)));
    after(() => model.dispose());

    const PROMPTS = [
      'hello there',
      'the quick brown fox',
      'a',
      'once upon a time in a land far away there lived a',
      'xyz 123',
      'tell me a story',
    ];
    const ADAPTER_NAMES = [null, 'llama-lora', 'llama-rslora', 'llama-dora'];
    const requests = () =>
      PROMPTS.flatMap((prompt, i) =>
        ADAPTER_NAMES.map((adapter, j) => ({ prompt, adapter, max: 3 + ((i * 7 + j * 5) % 30) })),
      );

    // generate() alone for each request, computed once for all the batching variants below.
    let refs: ReturnType<typeof generate>[] = [];
    const wanted = () => {
      if (refs.length === 0)
        refs = requests().map((r) =>
          reference(model, tokenizer, r.adapter, { prompt: r.prompt, maxNewTokens: r.max }),
        );
      return refs;
    };

    async function check(opts: ConstructorParameters<typeof BatchEngine>[2], what: string) {
      const reqs = requests();
      const refs = wanted();
      const engine = new BatchEngine(model, tokenizer, opts);
      const streamed = reqs.map(() => '');
      const got = await Promise.all(
        reqs.map((r, i) =>
          engine.submit({
            promptIds: tokenizer.encode(r.prompt),
            adapter: r.adapter,
            maxTokens: r.max,
            onText: (t) => (streamed[i] += t),
          }),
        ),
      );
      reqs.forEach((r, i) => {
        const want = refs[i];
        const where = `${what}: request ${i} (${r.adapter ?? 'base'}, '${r.prompt}')`;
        assert.deepEqual(got[i].tokenIds, want.tokenIds, where);
        assert.equal(got[i].text, want.text, where);
        assert.equal(streamed[i], want.text, `${where}: streamed text`);
        assert.equal(got[i].finishReason, want.finishReason, where);
        assert.equal(got[i].promptTokens, tokenizer.encode(r.prompt).length);
        assert.equal(got[i].completionTokens, want.tokenIds.length);
      });
      return engine;
    }

    test('greedy tokens equal generate() alone, all adapters in one batch', async () => {
      const e = await check({ maxBatch: 32 }, 'one batch');
      assert.ok(e.stats.maxRows >= 20, `rows per step ${e.stats.maxRows}`);
      assert.ok(e.stats.steps < 40, `${e.stats.steps} steps for 24 requests`);
    });

    test('greedy tokens equal generate() with rows joining and leaving (3 rows at a time)', async () => {
      const e = await check({ maxBatch: 3 }, 'three rows');
      assert.equal(e.stats.maxRows, 3);
    });

    test('greedy tokens equal generate() with prompts prefilled in chunks beside decoding rows', async () => {
      await check({ maxBatch: 8, maxStepTokens: 8 }, 'chunked');
    });

    // Starting prompts go through flash attention on a GPU and the paged kernel on the CPU by default:
    // the other way round gives the same tokens too.
    test('greedy tokens equal generate() with starting prompts through the other attention kernel', async () => {
      const flashPrefill = device === 'cpu';
      await check({ maxBatch: 32, flashPrefill }, 'one batch, other prefill kernel');
      await check({ maxBatch: 8, maxStepTokens: 8, flashPrefill }, 'chunked, other prefill kernel');
    });

    test('greedy tokens equal generate() with a KV cache too small for every request at once (blocks reused, sequences preempted and recomputed)', async () => {
      const c = model.config;
      const block = 4;
      // Room for about 60 positions: the longest request alone fits, the 24 together do not.
      const bytes = 16 * PagedKVCache.bytesPerBlock(c, block, model.activationDType);
      const e = await check({ maxBatch: 32, kvBlockSize: block, kvCacheBytes: bytes }, 'small cache');
      assert.equal(e.cache.freeBlocks, e.cache.numBlocks, 'every block returned');
      assert.ok(e.stats.preemptions > 0, 'the cache ran out at least once');
    });

    test('greedy tokens equal generate() under the single-adapter policy', async () => {
      await check({ maxBatch: 32, policy: 'single-adapter' }, 'single-adapter');
    });

    test('sampling with a seed gives generate()’s tokens for the same seed', async () => {
      const engine = new BatchEngine(model, tokenizer);
      const opts = { temperature: 0.8, topP: 0.9, topK: 20 };
      const got = await Promise.all(
        [1, 2, 3].map((seed) =>
          engine.submit({
            promptIds: tokenizer.encode('hello'),
            adapter: 'llama-lora',
            maxTokens: 12,
            seed,
            ...opts,
          }),
        ),
      );
      got.forEach((g, i) => {
        const want = reference(model, tokenizer, 'llama-lora', {
          prompt: 'hello',
          maxNewTokens: 12,
          seed: i + 1,
          ...opts,
        });
        assert.deepEqual(g.tokenIds, want.tokenIds);
      });
    });

    test('stop strings, ignore_eos, abort, and refused requests', async () => {
      const engine = new BatchEngine(model, tokenizer, { contextLength: 100, maxQueue: 2 });
      const ids = tokenizer.encode('once upon a time');
      const full = await engine.submit({ promptIds: ids, maxTokens: 20, ignoreEos: true });
      assert.equal(full.tokenIds.length, 20);
      assert.equal(full.finishReason, 'length');
      const stop = full.text.slice(3, 5);
      const cut = await engine.submit({ promptIds: ids, maxTokens: 20, ignoreEos: true, stop: [stop] });
      assert.equal(cut.text, full.text.slice(0, full.text.indexOf(stop)));
      assert.equal(cut.finishReason, 'stop');
      // Aborted mid-way: the request ends early and its row is free again.
      const ac = new AbortController();
      let pieces = 0;
      const aborted = await engine.submit({
        promptIds: ids,
        maxTokens: 50,
        ignoreEos: true,
        signal: ac.signal,
        onText: () => {
          if (++pieces === 3) ac.abort();
        },
      });
      assert.equal(aborted.finishReason, 'abort');
      assert.ok(aborted.tokenIds.length < 10);
      assert.deepEqual(engine.load, { active: 0, queued: 0 });
      const refused = (r: Partial<GenerationRequest>, code: string) =>
        assert.throws(
          () => engine.submit({ promptIds: ids, maxTokens: 4, ...r }),
          (e: unknown) => e instanceof EngineError && e.code === code && e.message.startsWith('lorakit: '),
        );
      refused({ maxTokens: 100 }, 'context_length_exceeded');
      refused({ adapter: 'nope' }, 'adapter_not_found');
      refused({ promptIds: [] }, 'invalid_request');
      refused({ promptIds: [1, 100000] }, 'invalid_request');
      const queued = [
        engine.submit({ promptIds: ids, maxTokens: 2 }),
        engine.submit({ promptIds: ids, maxTokens: 2 }),
      ];
      refused({}, 'queue_full');
      await Promise.all(queued);
    });

    test('Linear per-row adapters: rows of one adapter, adjacent or not, equal a forward with that adapter alone', () => {
      const ids = tokenizer.encode('the quick brown fox').slice(0, 4);
      const rows: (string | null)[] = ['llama-lora', null, 'llama-lora', 'llama-dora'];
      noGrad(() =>
        tidy(() => {
          const B = rows.length;
          const T = ids.length;
          const batch = {
            ids: Tensor.from(
              rows.flatMap(() => ids),
              [B, T],
              'i32',
            ),
            positions: Tensor.from(
              rows.flatMap(() => ids.map((_, i) => i)),
              [B, T],
              'i32',
            ),
            segments: Tensor.from(new Array<number>(B * T).fill(1), [B, T], 'i32'),
          };
          const all = model.logits(batch, { ctx: { rowAdapters: rows } }).toFloat32();
          const one = {
            ids: batch.ids.sliceRows(0, 1),
            positions: batch.positions.sliceRows(0, 1),
            segments: batch.segments.sliceRows(0, 1),
          };
          const row = all.length / B;
          rows.forEach((a, b) => {
            const want = model.logits(one, { ctx: { adapter: a } }).toFloat32();
            let err = 0;
            for (let i = 0; i < row; i++) err = Math.max(err, Math.abs(all[b * row + i] - want[i]));
            // The GPU's fp32 GEMMs sum in another order for another number of rows.
            const tol = device === 'cpu' ? 1e-5 : 1e-4;
            assert.ok(err < tol, `row ${b} (${a}): max difference ${err}`);
          });
        }),
      );
    });
  });

describe(
  'BatchEngine (cuda, bf16): every row of a mixed batch gives the tokens of its request run alone',
  {
    skip: !cudaAvailable() ? 'no GPU' : missing && SKIP,
  },
  () => {
    test('16 requests over 3 adapters (LoRA, rsLoRA, DoRA) and the base, in one batch and each alone', async () => {
      const { model, tokenizer } = await tinyModel('cuda', 'bfloat16');
      try {
        const prompts = [
          'hello there',
          'the quick brown fox',
          'once upon a time in a land far away',
          'xyz 123',
        ];
        const reqs = prompts.flatMap((p, i) =>
          [null, 'llama-lora', 'llama-rslora', 'llama-dora'].map((adapter, j) => ({
            promptIds: tokenizer.encode(p),
            adapter,
            maxTokens: 4 + ((i * 7 + j * 5) % 20),
          })),
        );
        const alone: number[][] = [];
        for (const r of reqs) {
          const e = new BatchEngine(model, tokenizer, { kvCacheBytes: 64 << 20 });
          alone.push((await e.submit(r)).tokenIds);
          e.close();
        }
        const e = new BatchEngine(model, tokenizer, { maxBatch: 32, kvCacheBytes: 64 << 20 });
        const got = await Promise.all(reqs.map((r) => e.submit(r)));
        e.close();
        assert.ok(e.stats.maxRows >= 10, `rows per step ${e.stats.maxRows}`);
        got.forEach((g, i) =>
          assert.deepEqual(g.tokenIds, alone[i], `request ${i} (${reqs[i].adapter ?? 'base'})`),
        );
      } finally {
        model.dispose();
      }
    });
  },
);

// ---- the HTTP server, through the official client -------------------------------------------------------

for (const device of ENGINE_DEVICES)
  describe(`OpenAI-compatible server (${device})`, { skip: missing && SKIP }, () => {
    let model: CausalLM;
    let tokenizer: Tokenizer;
    let server: LorakitServer;
    let url = '';
    let client: OpenAI;
    const KEY = 'sk-test-1234';
    const adapterDir = join(work, `adapters-${device}`);
    const log: string[] = [];

    before(async () => {
      // fp32 on the GPU too: a batch row's tokens then equal its request run alone exactly.
      ({ model, tokenizer } = await loadModel(MODEL!, { device, dtype: 'float32' }));
      mkdirSync(adapterDir);
      cpSync(ADAPTERS[1].dir!, join(adapterDir, 'rs'), { recursive: true });
      cpSync(ADAPTERS[2].dir!, join(adapterDir, 'team', 'dora'), { recursive: true });
      // Ways out of the folder a client might try.
      const outside = join(work, 'outside');
      cpSync(ADAPTERS[0].dir!, outside, { recursive: true });
      symlinkSync(outside, join(adapterDir, 'link-out'));
      mkdirSync(join(adapterDir, 'file-link'));
      symlinkSync(join(outside, 'adapter_config.json'), join(adapterDir, 'file-link', 'adapter_config.json'));
      cpSync(
        join(outside, 'adapter_model.safetensors'),
        join(adapterDir, 'file-link', 'adapter_model.safetensors'),
      );
      mkdirSync(join(adapterDir, 'empty'));
      server = new LorakitServer({
        model,
        tokenizer,
        modelName: 'tiny-llama',
        adapters: [{ name: 'lora', dir: ADAPTERS[0].dir! }],
        adapterDir,
        apiKey: KEY,
        maxBodyBytes: 64 * 1024,
        maxTokens: 64,
        log: (l) => log.push(l),
      });
      ({ url } = await server.listen(0));
      client = new OpenAI({ baseURL: `${url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 20000 });
    });
    after(async () => {
      await server.close();
      model.dispose();
    });

    const chatRef = (adapter: string | null, content: string, max: number) =>
      reference(model, tokenizer, adapter, { messages: [{ role: 'user', content }], maxNewTokens: max });

    test('GET /v1/models lists the base model and its adapters', async () => {
      const list = await client.models.list();
      assert.deepEqual(
        list.data.map((m) => [m.id, m.object, m.owned_by]),
        [
          ['tiny-llama', 'model', 'lorakit'],
          ['lora', 'model', 'lorakit'],
        ],
      );
      assert.equal((await client.models.retrieve('lora')).id, 'lora');
      await assert.rejects(client.models.retrieve('nope'), (e: unknown) => e instanceof OpenAI.NotFoundError);
    });

    test('chat completion: OpenAI shape, usage, and generate()’s reply for the base model and an adapter', async () => {
      for (const model_ of ['tiny-llama', 'lora']) {
        const r = await client.chat.completions.create({
          model: model_,
          messages: [{ role: 'user', content: 'Hi there' }],
          temperature: 0,
          max_tokens: 24,
        });
        const want = chatRef(model_ === 'lora' ? 'lora' : null, 'Hi there', 24);
        assert.match(r.id, /^chatcmpl-[0-9a-f]{24}$/);
        assert.equal(r.object, 'chat.completion');
        assert.equal(r.model, model_);
        assert.ok(Math.abs(r.created - Date.now() / 1000) < 60);
        assert.equal(r.choices.length, 1);
        assert.equal(r.choices[0].message.role, 'assistant');
        assert.equal(r.choices[0].message.content, want.text);
        assert.equal(r.choices[0].finish_reason, want.finishReason);
        const promptTokens = tokenizer.encode(
          tokenizer.applyChatTemplate([{ role: 'user', content: 'Hi there' }], { addGenerationPrompt: true }),
          { addSpecialTokens: false },
        ).length;
        assert.deepEqual(r.usage, {
          prompt_tokens: promptTokens,
          completion_tokens: want.tokenIds.length,
          total_tokens: promptTokens + want.tokenIds.length,
        });
      }
    });

    test('chat completion streamed: role first, deltas add up to the whole reply, finish_reason, usage, [DONE]', async () => {
      const body = {
        model: 'lora',
        messages: [{ role: 'user' as const, content: 'Tell me' }],
        temperature: 0,
        max_tokens: 30,
      };
      const whole = await client.chat.completions.create(body);
      const stream = await client.chat.completions.create({
        ...body,
        stream: true,
        stream_options: { include_usage: true },
      });
      const chunks: OpenAI.ChatCompletionChunk[] = [];
      for await (const c of stream) chunks.push(c);
      assert.equal(chunks[0].choices[0].delta.role, 'assistant');
      assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id));
      const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
      assert.equal(text, whole.choices[0].message.content);
      assert.ok(
        chunks.filter((c) => c.choices[0]?.delta.content).length > 1,
        'text arrives in several pieces',
      );
      const last = [...chunks].reverse().find((c) => c.choices.length > 0)!;
      assert.equal(last.choices[0].finish_reason, whole.choices[0].finish_reason);
      assert.deepEqual(chunks.at(-1)!.usage, whole.usage);
      // The raw stream: server-sent events ending with data: [DONE].
      const raw = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ ...body, stream: true }),
      });
      assert.match(raw.headers.get('content-type') ?? '', /^text\/event-stream/);
      const events = (await raw.text()).split('\n\n').filter(Boolean);
      assert.ok(events.every((e) => e.startsWith('data: ')));
      assert.equal(events.at(-1), 'data: [DONE]');
    });

    test('completions, streamed and not, one prompt or several, text or token ids', async () => {
      const want = reference(model, tokenizer, null, { prompt: 'once upon', maxNewTokens: 16 });
      const r = await client.completions.create({
        model: 'tiny-llama',
        prompt: 'once upon',
        temperature: 0,
        max_tokens: 16,
      });
      assert.match(r.id, /^cmpl-/);
      assert.equal(r.object, 'text_completion');
      assert.equal(r.choices[0].text, want.text);
      assert.equal(r.choices[0].finish_reason, want.finishReason);
      assert.equal(r.usage!.completion_tokens, want.tokenIds.length);
      const many = await client.completions.create({
        model: 'tiny-llama',
        prompt: ['once upon', 'the cat'],
        temperature: 0,
        max_tokens: 16,
      });
      assert.deepEqual(
        many.choices.map((c) => [c.index, c.text]),
        [
          [0, want.text],
          [1, reference(model, tokenizer, null, { prompt: 'the cat', maxNewTokens: 16 }).text],
        ],
      );
      const byIds = await client.completions.create({
        model: 'tiny-llama',
        prompt: tokenizer.encode('once upon'),
        temperature: 0,
        max_tokens: 16,
      });
      assert.equal(byIds.choices[0].text, want.text);
      const stream = await client.completions.create({
        model: 'tiny-llama',
        prompt: 'once upon',
        temperature: 0,
        max_tokens: 16,
        stream: true,
      });
      let text = '';
      let finish: string | null = null;
      for await (const c of stream) {
        assert.equal(c.object, 'text_completion');
        text += c.choices[0]?.text ?? '';
        finish = c.choices[0]?.finish_reason ?? finish;
      }
      assert.equal(text, want.text);
      assert.equal(finish, want.finishReason);
    });

    test('max_tokens, stop and seed are honoured', async () => {
      const base = { model: 'tiny-llama', prompt: 'the story', max_tokens: 40, ignore_eos: true } as const;
      const full = await client.completions.create({ ...base, temperature: 0 });
      assert.equal(full.usage!.completion_tokens, 40);
      assert.equal(full.choices[0].finish_reason, 'length');
      const stop = full.choices[0].text.slice(4, 6);
      const cut = await client.completions.create({ ...base, temperature: 0, stop: [stop, 'never-appears'] });
      assert.equal(cut.choices[0].text, full.choices[0].text.slice(0, full.choices[0].text.indexOf(stop)));
      assert.equal(cut.choices[0].finish_reason, 'stop');
      const sampled = () => client.completions.create({ ...base, temperature: 0.9, top_p: 0.95, seed: 7 });
      const [a, b] = await Promise.all([sampled(), sampled()]);
      assert.equal(a.choices[0].text, b.choices[0].text);
      const want = reference(model, tokenizer, null, {
        prompt: 'the story',
        maxNewTokens: 40,
        temperature: 0.9,
        topP: 0.95,
        seed: 7,
      });
      assert.equal(a.choices[0].text.startsWith(want.text), true);
    });

    test('concurrent requests for different adapters are batched and each gets its own adapter’s reply', async () => {
      const jobs = Array.from({ length: 12 }, (_, i) => ({
        model: ['tiny-llama', 'lora'][i % 2],
        content: `question ${i}`,
        max: 8 + (i % 5) * 4,
      }));
      const steps = server.engine.stats.steps;
      const replies = await Promise.all(
        jobs.map((j) =>
          client.chat.completions.create({
            model: j.model,
            messages: [{ role: 'user', content: j.content }],
            temperature: 0,
            max_tokens: j.max,
          }),
        ),
      );
      replies.forEach((r, i) =>
        assert.equal(
          r.choices[0].message.content,
          chatRef(jobs[i].model === 'lora' ? 'lora' : null, jobs[i].content, jobs[i].max).text,
        ),
      );
      const used = server.engine.stats.steps - steps;
      assert.ok(
        used < jobs.reduce((a, j) => a + j.max + 1, 0) / 2,
        `${used} steps: requests were not batched`,
      );
    });

    test('wrong or missing API key: 401 in OpenAI’s error shape', async () => {
      const bad = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
      await assert.rejects(bad.models.list(), (e: unknown) => {
        assert.ok(e instanceof OpenAI.AuthenticationError);
        assert.equal(e.status, 401);
        assert.equal(e.code, 'invalid_api_key');
        assert.equal(e.type, 'invalid_request_error');
        return true;
      });
      const none = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body: '{}' });
      assert.equal(none.status, 401);
      const body = (await none.json()) as { error: { message: string; code: string } };
      assert.equal(body.error.code, 'invalid_api_key');
      assert.equal((await fetch(`${url}/health`)).status, 200, 'health needs no key');
    });

    test('unknown model, bad fields, oversized body, long prompt, too many tokens: clear 4xx errors', async () => {
      const chat = (extra: Record<string, unknown>) =>
        client.chat.completions.create({
          model: 'tiny-llama',
          messages: [{ role: 'user', content: 'hi' }],
          ...extra,
        } as OpenAI.ChatCompletionCreateParamsNonStreaming);
      const rejects = async (p: Promise<unknown>, status: number, code: string | RegExp, param?: string) =>
        assert.rejects(p, (e: unknown) => {
          assert.ok(e instanceof OpenAI.APIError, String(e));
          assert.equal(e.status, status, e.message);
          if (typeof code === 'string') assert.equal(e.code, code);
          else assert.match(e.message, code);
          if (param) assert.equal(e.param, param);
          return true;
        });
      await rejects(chat({ model: 'gpt-4' }), 404, 'model_not_found', 'model');
      await rejects(chat({ temperature: 7 }), 400, 'invalid_request', 'temperature');
      await rejects(chat({ n: 3 }), 400, 'unsupported_parameter', 'n');
      await rejects(chat({ messages: [] }), 400, 'invalid_request', 'messages');
      await rejects(
        chat({ messages: [{ role: 'wizard', content: 'x' }] }),
        400,
        'invalid_request',
        'messages[0].role',
      );
      await rejects(chat({ max_tokens: 65 }), 400, 'invalid_request', 'max_tokens');
      await rejects(chat({ max_tokens: 0 }), 400, 'invalid_request', 'max_tokens');
      await rejects(chat({ stop: ['a', 'b', 'c', 'd', 'e'] }), 400, 'invalid_request', 'stop');
      await rejects(
        chat({ messages: [{ role: 'user', content: 'x'.repeat(100 * 1024) }] }),
        413,
        'request_too_large',
      );
      await rejects(
        chat({ messages: [{ role: 'user', content: 'word '.repeat(200) }] }),
        400,
        'context_length_exceeded',
      );
      await rejects(
        client.completions.create({ model: 'tiny-llama', prompt: [1, 2, 999999], max_tokens: 4 }),
        400,
        /outside the vocabulary/,
        'prompt',
      );
      // A chunked upload (no Content-Length) that grows past the limit still gets its 413.
      const chunked = await new Promise<number>((resolve, reject) => {
        const r = request(
          `${url}/v1/chat/completions`,
          { method: 'POST', headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' } },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        r.on('error', reject);
        for (let i = 0; i < 10; i++) r.write('x'.repeat(10 * 1024));
        r.end();
      });
      assert.equal(chunked, 413);
      const raw = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
        body: '{not json',
      });
      assert.equal(raw.status, 400);
      assert.equal(((await raw.json()) as { error: { code: string } }).error.code, 'invalid_json');
      assert.equal(
        (await fetch(`${url}/v1/nowhere`, { headers: { Authorization: `Bearer ${KEY}` } })).status,
        404,
      );
      assert.equal(
        (await fetch(`${url}/v1/models`, { method: 'POST', headers: { Authorization: `Bearer ${KEY}` } }))
          .status,
        405,
      );
    });

    const call = async (method: 'POST' | 'DELETE' | 'GET', path: string, body?: unknown) => {
      const r = await fetch(`${url}/v1${path}`, {
        method,
        headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return {
        status: r.status,
        body: (await r.json()) as Record<string, unknown> & { error?: { code: string; message: string } },
      };
    };

    test('adapters load and unload at run time, and serve in between', async () => {
      // The client's generic post() reaches the adapter routes too.
      const loaded = await client.post('/adapters', { body: { name: 'rs', path: 'rs' } });
      assert.deepEqual(
        { ...(loaded as Record<string, unknown>), created: 0 },
        { id: 'rs', object: 'adapter', path: 'rs', created: 0 },
      );
      assert.ok((await client.models.list()).data.some((m) => m.id === 'rs'));
      const nested = await call('POST', '/adapters', { name: 'dora.v2', path: 'team/dora' });
      assert.equal(nested.status, 200);
      // The loaded adapters answer as generate() does with the same adapter files.
      loadAdapter(model, ADAPTERS[1].dir!, 'rs-check');
      const r = await client.chat.completions.create({
        model: 'rs',
        messages: [{ role: 'user', content: 'hey' }],
        temperature: 0,
        max_tokens: 12,
      });
      assert.equal(r.choices[0].message.content, chatRef('rs-check', 'hey', 12).text);
      server.adapters.model.activeAdapter = null;
      assert.equal(
        (await call('POST', '/adapters', { name: 'rs', path: 'rs' })).body.error?.code,
        'adapter_exists',
      );
      assert.equal((await call('GET', '/adapters')).body.data instanceof Array, true);
      // Unloading waits for running requests, then the name is gone.
      const running = client.chat.completions.create({
        model: 'rs',
        messages: [{ role: 'user', content: 'long' }],
        temperature: 0,
        max_tokens: 60,
        ignore_eos: true,
      } as OpenAI.ChatCompletionCreateParamsNonStreaming);
      for (let i = 0; i < 400 && server.engine.usersOf('rs') === 0; i++)
        await new Promise((res) => setTimeout(res, 5));
      const del = await call('DELETE', '/adapters/rs');
      assert.equal(del.status, 200);
      assert.equal((await running).choices[0].finish_reason, 'length');
      assert.equal(model.adapterConfigs.has('rs'), false);
      await assert.rejects(
        client.chat.completions.create({ model: 'rs', messages: [{ role: 'user', content: 'hey' }] }),
        (e: unknown) => e instanceof OpenAI.NotFoundError,
      );
      assert.equal((await call('DELETE', '/adapters', { name: 'dora.v2' })).status, 200);
      assert.equal((await call('DELETE', '/adapters/dora.v2')).status, 404);
      assert.deepEqual(
        (await client.models.list()).data.map((m) => m.id),
        ['tiny-llama', 'lora'],
      );
      deleteAdapter(model, 'rs-check');
    });

    test('adapter names and paths are validated: nothing outside the adapter folder loads', async () => {
      const refused = async (body: unknown, status: number, code: string) => {
        const r = await call('POST', '/adapters', body);
        assert.equal(r.status, status, JSON.stringify(r.body));
        assert.equal(r.body.error?.code, code, JSON.stringify(r.body));
        assert.match(r.body.error!.message, /^lorakit: /);
      };
      await refused({ name: 'x', path: '../outside' }, 400, 'invalid_adapter_path');
      await refused({ name: 'x', path: 'rs/../../outside' }, 400, 'invalid_adapter_path');
      await refused({ name: 'x', path: join(work, 'outside') }, 400, 'invalid_adapter_path');
      await refused({ name: 'x', path: 'link-out' }, 400, 'invalid_adapter_path');
      await refused({ name: 'x', path: 'file-link' }, 400, 'invalid_adapter_path');
      await refused({ name: 'x', path: 'empty' }, 400, 'invalid_adapter');
      await refused({ name: 'x', path: 'missing' }, 404, 'adapter_path_not_found');
      await refused({ name: 'x', path: '' }, 400, 'invalid_adapter_path');
      await refused({ name: 'x' }, 400, 'invalid_adapter_path');
      await refused({ name: '../evil', path: 'rs' }, 400, 'invalid_adapter_name');
      await refused({ name: 'a/b', path: 'rs' }, 400, 'invalid_adapter_name');
      await refused({ name: '', path: 'rs' }, 400, 'invalid_adapter_name');
      await refused({ name: 'tiny-llama', path: 'rs' }, 400, 'invalid_adapter_name');
      await refused({ name: 'lora', path: 'rs' }, 409, 'adapter_exists');
      assert.equal((await call('DELETE', '/adapters/..%2Fx')).body.error?.code, 'invalid_adapter_name');
      assert.equal((await call('GET', '/models/%E0%A4%A')).status, 400);
      assert.deepEqual([...model.adapterConfigs.keys()], ['lora']);
    });

    test('a client that disconnects mid-stream frees its batch row', async () => {
      const ac = new AbortController();
      const stream = await client.chat.completions.create(
        {
          model: 'lora',
          messages: [{ role: 'user', content: 'go on' }],
          temperature: 0,
          max_tokens: 64,
          ignore_eos: true,
          stream: true,
        } as OpenAI.ChatCompletionCreateParamsStreaming,
        { signal: ac.signal },
      );
      let n = 0;
      try {
        for await (const c of stream) if (c.choices[0]?.delta.content && ++n === 3) ac.abort();
      } catch {
        // the client reports the abort as an error or just ends the stream
      }
      assert.equal(n, 3);
      for (let i = 0; i < 200 && server.engine.load.active + server.engine.load.queued > 0; i++)
        await new Promise((r) => setTimeout(r, 5));
      assert.deepEqual(server.engine.load, { active: 0, queued: 0 });
      assert.ok(
        log.some((l) => l.includes('client gone')),
        log.join('\n'),
      );
    });

    test('without --adapter-dir, run-time loading is refused', async () => {
      const s = new LorakitServer({ model, tokenizer, modelName: 'm' });
      const { url: u } = await s.listen(0);
      try {
        const r = await fetch(`${u}/v1/adapters`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ name: 'x', path: 'rs' }),
        });
        assert.equal(r.status, 403);
        assert.equal(
          ((await r.json()) as { error: { code: string } }).error.code,
          'adapter_loading_disabled',
        );
      } finally {
        await s.close();
      }
    });
  });

for (const device of ENGINE_DEVICES)
  test(
    `lorakit serve --device ${device}: starts, answers, and stops on SIGTERM`,
    { skip: missing && SKIP },
    async () => {
      const dir = join(work, `cli-adapters-${device}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'README'), 'adapters');
      const child = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          join(projectRoot, 'test', 'lorakit-cli.mts'),
          'serve',
          '--model',
          MODEL!,
          '--adapter',
          `lora=${ADAPTERS[0].dir}`,
          '--adapter',
          ADAPTERS[1].dir!,
          '--adapter-dir',
          dir,
          '--port',
          '0',
          '--api-key',
          'k',
          '--quiet',
          '--device',
          device,
        ],
        { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      try {
        for (let i = 0; i < 600 && !/listening on (\S+)\/v1/.test(out); i++)
          await new Promise((r) => setTimeout(r, 50));
        const base = /listening on (\S+)\/v1/.exec(out)?.[1];
        assert.ok(base, `no listening line: ${out}${err}`);
        assert.match(out, /model 'llama', adapters: lora, llama-rslora/);
        const c = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'k', maxRetries: 0 });
        assert.deepEqual(
          (await c.models.list()).data.map((m) => m.id),
          ['llama', 'lora', 'llama-rslora'],
        );
        const r = await c.chat.completions.create({
          model: 'llama-rslora',
          messages: [{ role: 'user', content: 'hi' }],
          temperature: 0,
          max_tokens: 5,
        });
        assert.equal(r.object, 'chat.completion');
      } finally {
        child.kill('SIGTERM');
      }
      assert.equal(await exited, 0, err);
    },
  );
