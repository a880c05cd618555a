// DecodeStep (the CPU's native one-token path, src/models/decode-step.ts) against the full forward:
// logits of every position fed one token at a time equal those of one forward over the whole sequence,
// and generation with and without it gives the same greedy tokens, for fp32, bf16 and int8 weights and
// the fixtures' variants (biases: qwen2; q/k norms: qwen3; grouped kv heads; tied embeddings).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { noGrad } from '../src/autograd/tape.js';
import { generateIds } from '../src/infer/generate.js';
import { GREEDY, Sampler } from '../src/infer/sampling.js';
import { DecodeStep } from '../src/models/decode-step.js';
import { KVCache } from '../src/models/kv-cache.js';
import type { CausalLM } from '../src/models/llama.js';
import { PagedKVCache, PagedSequence } from '../src/models/paged-kv-cache.js';
import { loadModel, type LoadOptions } from '../src/models/load.js';
import { adapterParameters, addAdapter } from '../src/peft/adapters.js';
import { seededUniform } from '../src/peft/lora.js';
import { LORA_DEFAULTS } from '../src/peft/config.js';
import { Tensor } from '../src/tensor/tensor.js';
import { assertClose, fixture } from './helpers.js';

const MODELS = ['llama', 'qwen2', 'qwen3', 'mistral', 'llama3-tied'];
const VARIANTS: [string, LoadOptions, number][] = [
  ['f32', { dtype: 'float32' }, 1e-5],
  ['bf16', { dtype: 'bfloat16' }, 1e-5],
  ['int8', { dtype: 'float32', quantize: 'int8' }, 1e-4],
];

// Logits of one forward over `ids` against DecodeStep fed one token at a time, with the model's active
// adapter: over a contiguous KV cache (generate) and over a paged one in shuffled blocks of 3 (serve).
function checkAgainstFull(model: CausalLM, ids: number[], tol: number): void {
  const c = model.config;
  const T = ids.length;
  const full = noGrad(() =>
    model.logits({
      ids: Tensor.from(ids, [1, T], 'i32'),
      positions: Tensor.from(
        ids.map((_, i) => i),
        [1, T],
        'i32',
      ),
      segments: Tensor.from(new Array<number>(T).fill(1), [1, T], 'i32'),
    }),
  );
  const want = full.toFloat32();
  full.dispose();
  const step = DecodeStep.for(model);
  assert.ok(step, 'the fast path applies');
  const V = c.vocabSize;
  const cache = new KVCache(1, T, c.numLayers, c.numKvHeads, c.headDim);
  try {
    for (let p = 0; p < T; p++)
      assertClose(step.logits(ids[p], p, cache), want.subarray(p * V, (p + 1) * V), tol, `position ${p}`);
    assert.equal(cache.length, T);
  } finally {
    cache.dispose();
  }
  const pool = new PagedKVCache(c, Math.ceil(T / 3) + 3, 3);
  try {
    // Another sequence holds blocks 0 and 1 until the first block is full, then gives them back:
    // this one's blocks run 2, 1, 0, 3, ….
    const other = new PagedSequence();
    const seq = new PagedSequence();
    assert.ok(pool.reserve(other, 6));
    for (let p = 0; p < T; p++) {
      if (p === 3) pool.release(other);
      assert.ok(pool.reserve(seq, p + 1));
      assertClose(
        step.pagedLogits(ids[p], seq, pool),
        want.subarray(p * V, (p + 1) * V),
        tol,
        `paged position ${p}`,
      );
    }
    assert.equal(seq.length, T);
    assert.deepEqual(seq.blocks.slice(0, 4), [2, 1, 0, 3]);
  } finally {
    pool.dispose();
  }
}

// Greedy tokens with and without the fast path.
function assertSameGreedy(model: CausalLM, ids: number[]): void {
  const gen = (fastDecode: boolean) =>
    generateIds(model, ids, { maxNewTokens: 12, sampler: new Sampler(GREEDY), eos: new Set(), fastDecode })
      .tokenIds;
  assert.deepEqual(gen(true), gen(false), 'greedy tokens');
}

for (const name of MODELS)
  for (const [label, opts, tol] of VARIANTS)
    test(`DecodeStep matches the full forward: tiny ${name}, ${label} weights`, async (t) => {
      const dir = fixture('models', name);
      if (!dir) return t.skip('fixture missing: run scripts/reference/make-all.sh');
      const { model } = await loadModel(dir, opts);
      try {
        const ids = Array.from({ length: 13 }, (_, i) => (i * 7919 + 3) % model.config.vocabSize);
        checkAgainstFull(model, ids, tol);
        assertSameGreedy(model, ids.slice(0, 5));
      } finally {
        model.dispose();
      }
    });

// B starts at zero (the adapter would change nothing): fill every trainable tensor with small noise.
function perturb(model: CausalLM, name: string, seed: number): void {
  const u = seededUniform(seed);
  for (const [, t] of adapterParameters(model, name)) {
    const d = t.as('f32');
    for (let i = 0; i < d.length; i++) d[i] += (u() - 0.5) * 0.2;
  }
}

for (const [name, opts, tol] of [
  ['llama', { dtype: 'float32' }, 1e-5],
  ['qwen2', { dtype: 'bfloat16' }, 1e-5],
  ['llama3-tied', { dtype: 'float32', quantize: 'int8' }, 1e-4],
] as [string, LoadOptions, number][])
  test(`DecodeStep with a LoRA adapter (rank 4 on every linear, rank 8 on q and v, embed_tokens saved) matches the full forward: tiny ${name}`, async (t) => {
    const dir = fixture('models', name);
    if (!dir) return t.skip('fixture missing: run scripts/reference/make-all.sh');
    const { model } = await loadModel(dir, opts);
    try {
      const c = model.config;
      const ids = Array.from({ length: 11 }, (_, i) => (i * 7919 + 5) % c.vocabSize);
      addAdapter(model, 'a', { ...LORA_DEFAULTS, r: 4, alpha: 8, modulesToSave: ['embed_tokens'] }, 1);
      perturb(model, 'a', 3);
      checkAgainstFull(model, ids, tol);
      addAdapter(
        model,
        'b',
        { ...LORA_DEFAULTS, r: 8, alpha: 8, useRslora: true, targetModules: ['q_proj', 'v_proj'] },
        2,
      );
      perturb(model, 'b', 4);
      checkAgainstFull(model, ids, tol);
      assertSameGreedy(model, ids.slice(0, 4));
    } finally {
      model.dispose();
    }
  });

test('DecodeStep does not apply to DoRA, a saved lm_head, or 4-bit weights', async (t) => {
  const dir = fixture('models', 'llama');
  if (!dir) return t.skip('fixture missing: run scripts/reference/make-all.sh');
  const { model } = await loadModel(dir);
  try {
    addAdapter(model, 'dora', { ...LORA_DEFAULTS, r: 4, alpha: 8, useDora: true }, 1);
    assert.equal(DecodeStep.for(model, 'dora'), null);
    addAdapter(
      model,
      'head',
      { ...LORA_DEFAULTS, r: 4, alpha: 8, modulesToSave: ['lm_head'], targetModules: ['q_proj'] },
      1,
    );
    assert.equal(DecodeStep.for(model, 'head'), null);
    assert.ok(DecodeStep.for(model, null));
  } finally {
    model.dispose();
  }
  const q = await loadModel(dir, { quantize: 'nf4' });
  try {
    assert.equal(DecodeStep.for(q.model), null);
  } finally {
    q.model.dispose();
  }
});
