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
import { loadModel, type LoadOptions } from '../src/models/load.js';
import { addAdapter } from '../src/peft/adapters.js';
import { LORA_DEFAULTS } from '../src/peft/config.js';
import { Tensor } from '../src/tensor/tensor.js';
import { assertClose, fixture } from './helpers.js';

const MODELS = ['llama', 'qwen2', 'qwen3', 'mistral', 'llama3-tied'];
const VARIANTS: [string, LoadOptions, number][] = [
  ['f32', { dtype: 'float32' }, 1e-5],
  ['bf16', { dtype: 'bfloat16' }, 1e-5],
  ['int8', { dtype: 'float32', quantize: 'int8' }, 1e-4],
];

for (const name of MODELS)
  for (const [label, opts, tol] of VARIANTS)
    test(`DecodeStep matches the full forward: tiny ${name}, ${label} weights`, async (t) => {
      const dir = fixture('models', name);
      if (!dir) return t.skip('fixture missing: run scripts/reference/make-all.sh');
      const { model } = await loadModel(dir, opts);
      try {
        const c = model.config;
        const ids = Array.from({ length: 13 }, (_, i) => (i * 7919 + 3) % c.vocabSize);
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
        const cache = new KVCache(1, T, c.numLayers, c.numKvHeads, c.headDim);
        try {
          const V = c.vocabSize;
          for (let p = 0; p < T; p++)
            assertClose(
              step.logits(ids[p], p, cache),
              want.subarray(p * V, (p + 1) * V),
              tol,
              `position ${p}`,
            );
          assert.equal(cache.length, T);
        } finally {
          cache.dispose();
        }
        const gen = (fastDecode: boolean) =>
          generateIds(model, ids.slice(0, 5), {
            maxNewTokens: 12,
            sampler: new Sampler(GREEDY),
            eos: new Set(),
            fastDecode,
          }).tokenIds;
        assert.deepEqual(gen(true), gen(false), 'greedy tokens');
      } finally {
        model.dispose();
      }
    });

test('DecodeStep does not apply where an adapter changes the layers, or to 4-bit weights', async (t) => {
  const dir = fixture('models', 'llama');
  if (!dir) return t.skip('fixture missing: run scripts/reference/make-all.sh');
  const { model } = await loadModel(dir);
  try {
    addAdapter(model, 'a', { ...LORA_DEFAULTS, r: 4, alpha: 8 }, 1);
    assert.equal(DecodeStep.for(model, 'a'), null);
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
