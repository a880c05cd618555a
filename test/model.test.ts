// Forward-pass parity with transformers (fixtures from scripts/reference/model_ref.py): fp32 logits,
// the loss, and greedy generation with the KV cache, for tiny random models of every supported
// architecture and the pre-trained stories260K.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { noGrad } from '../src/autograd/tape.js';
import { generate } from '../src/infer/generate.js';
import { loadModel } from '../src/models/load.js';
import type { CausalLM } from '../src/models/llama.js';
import { padBatch, packBatches, toDevice } from '../src/train/batching.js';
import { evaluate } from '../src/train/evaluate.js';
import { tidy } from '../src/tensor/tensor.js';
import type { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { fixture, relError, sharedData } from './helpers.js';

interface Expected {
  rows: number[][];
  logits: number[][];
  loss_sum: number;
  loss_tokens: number;
  greedy: { prompt: number[]; tokens: number[] }[];
}

const MODELS = ['llama', 'llama3-tied', 'llama-linear', 'mistral', 'qwen2', 'qwen3'];

function logitsOf(model: CausalLM, rows: number[][], packed: boolean): Float32Array[] {
  const examples = rows.map((ids) => ({ ids, labels: ids }));
  const hb = packed ? packBatches(examples, 1 << 20, 1)[0] : padBatch(examples);
  return noGrad(() =>
    tidy(() => {
      const { batch } = toDevice(hb);
      const all = model.logits(batch).as('f32');
      const V = model.config.vocabSize;
      let offset = 0;
      return rows.map((r, i) => {
        const start = packed ? offset : i * hb.T;
        offset += r.length;
        return all.slice(start * V, (start + r.length) * V);
      });
    }),
  );
}

async function checkModel(
  t: { skip: (m: string) => void },
  dir: string,
  expected: Expected,
  tokenizerCheck?: (tok: Tokenizer) => void,
) {
  for (const dtype of ['float32', 'bfloat16'] as const) {
    const { model, tokenizer } = await loadModel(dir, { dtype });
    try {
      tokenizerCheck?.(tokenizer);
      // bf16 storage rounds the weights, so it is held to a looser bound than fp32's 1e-4.
      const tol = dtype === 'float32' ? 1e-4 : 5e-2;
      for (const packed of [false, true]) {
        const got = logitsOf(model, expected.rows, packed);
        got.forEach((g, i) => {
          const err = relError(g, expected.logits[i]);
          assert.ok(
            err < tol,
            `${dir} ${dtype} ${packed ? 'packed' : 'padded'} row ${i}: logits rel. error ${err.toExponential(2)}`,
          );
        });
      }
      if (dtype === 'float32') {
        const r = await evaluate(
          model,
          expected.rows.map((ids) => ({ ids, labels: ids })),
          2,
        );
        assert.equal(r.tokens, expected.loss_tokens);
        const want = expected.loss_sum / expected.loss_tokens;
        assert.ok(Math.abs(r.loss - want) / want < 1e-4, `loss ${r.loss} vs ${want}`);
        for (const g of expected.greedy) {
          const out = generate(model, tokenizer, {
            inputIds: g.prompt,
            maxNewTokens: g.tokens.length,
            temperature: 0,
          });
          // transformers was run without EOS stopping; compare up to our first EOS stop.
          assert.deepEqual(out.tokenIds, g.tokens.slice(0, out.tokenIds.length), `${dir}: greedy tokens`);
          if (out.finishReason === 'length') assert.equal(out.tokenIds.length, g.tokens.length);
        }
      }
    } finally {
      model.dispose();
    }
  }
}

for (const name of MODELS) {
  test(`transformers parity: tiny ${name}`, async (t) => {
    const dir = fixture('models', name);
    if (!dir) return t.skip('fixture missing: run scripts/reference/make-all.sh');
    const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected;
    await checkModel(t, dir, expected);
  });
}

test('transformers parity: pre-trained stories260K (../shared/data)', async (t) => {
  const dir = sharedData('models', 'stories260K-hf');
  const fx = fixture('models', 'stories260K', 'expected.json');
  if (!dir) return t.skip('../shared/data/models/stories260K-hf is absent');
  if (!fx) return t.skip('fixture missing: run scripts/reference/make-all.sh');
  const expected = JSON.parse(readFileSync(fx, 'utf8')) as Expected & { texts: string[] };
  await checkModel(t, dir, expected, (tok) => {
    expected.texts.forEach((text, i) => assert.deepEqual(tok.encode(text), expected.rows[i]));
  });
});

test('bad model folders give one clear sentence', async () => {
  await assert.rejects(loadModel('/nonexistent/model-folder'), /lorakit: .*nonexistent/);
});

test('SmolLM2-135M-Instruct from its GGUF: eval loss and greedy tokens as transformers on the same file', async (t) => {
  const fx = fixture('smollm2', 'expected.json');
  if (!fx)
    return t.skip(
      'fixture missing: run scripts/reference/make-all.sh (needs SmolLM2 via scripts/fetch-smollm2.sh)',
    );
  const e = JSON.parse(readFileSync(fx, 'utf8')) as {
    gguf: string;
    rows: number[][];
    loss: number;
    tokens: number;
    prompt: number[];
    greedy: number[];
  };
  const { model, tokenizer } = await loadModel(e.gguf);
  try {
    const r = await evaluate(
      model,
      e.rows.map((ids) => ({ ids, labels: ids })),
      3,
    );
    assert.equal(r.tokens, e.tokens);
    assert.ok(Math.abs(r.loss - e.loss) / e.loss < 1e-4, `loss ${r.loss} vs transformers ${e.loss}`);
    const g = generate(model, tokenizer, {
      inputIds: e.prompt,
      maxNewTokens: e.greedy.length,
      temperature: 0,
    });
    assert.deepEqual(g.tokenIds, e.greedy.slice(0, g.tokenIds.length));
  } finally {
    model.dispose();
  }
});
