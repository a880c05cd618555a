// Models from files' bytes (what a browser has): loadModelFromBytes gives the model and tokenizer that
// loadModel gives from the same folder or .gguf, a sharded set of safetensors reads as the folder does,
// and wrong sets of files fail in one sentence. Runs in Node on the CPU; test/browser.test.ts runs the
// same entry point in Chromium.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { noGrad } from '../src/autograd/tape.js';
import { exportGGUF } from '../src/export/gguf.js';
import { openSafetensorsModel, safetensorsModelFromBytes } from '../src/io/safetensors.js';
import type { CausalLM } from '../src/models/llama.js';
import { loadModelFromBytes, loadModelFromBytesOptionalTokenizer } from '../src/models/load-bytes.js';
import { loadModel } from '../src/models/load.js';
import { tidy } from '../src/tensor/tensor.js';
import { padBatch, toDevice } from '../src/train/batching.js';
import { lossSum } from '../src/train/loss.js';
import { fixture } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'lorakit-bytes-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

const ROWS = [
  [1, 5, 9, 14, 3, 27, 8],
  [1, 42, 7, 7, 19],
];
const TEXT = 'Once upon a time, a little cat sat on the mat.';

function filesOf(dir: string): Record<string, Uint8Array> {
  return Object.fromEntries(readdirSync(dir).map((n) => [n, new Uint8Array(readFileSync(join(dir, n)))]));
}

function loss(model: CausalLM): number {
  return noGrad(() =>
    tidy(() => {
      const { batch, targets } = toDevice(padBatch(ROWS.map((ids) => ({ ids, labels: ids }))));
      return lossSum(model, batch, targets).item();
    }),
  );
}

test('loadModelFromBytes: a Hugging Face folder and a .gguf give what loadModel gives from their paths', async (t) => {
  const dir = fixture('models', 'llama');
  if (!dir) return t.skip('test/fixtures/models/llama is missing: run scripts/reference/make-all.sh');
  const byPath = await loadModel(dir, { dtype: 'float32' });
  const fromBytes = await loadModelFromBytes(filesOf(dir), { dtype: 'float32', name: 'llama' });
  assert.equal(fromBytes.path, 'llama');
  assert.deepEqual(fromBytes.tokenizer.encode(TEXT), byPath.tokenizer.encode(TEXT));
  assert.deepEqual(fromBytes.tokenizer.eosIds, byPath.tokenizer.eosIds);
  assert.equal(loss(fromBytes.model), loss(byPath.model), 'the same bytes give the same loss, bit for bit');

  const gguf = join(work, 'llama.gguf');
  await exportGGUF(byPath.model, byPath.tokenizer, dir, gguf, { quant: 'f32' });
  const ggufByPath = await loadModel(gguf, { dtype: 'float32' });
  const ggufBytes = await loadModelFromBytes({ 'llama.gguf': new Uint8Array(readFileSync(gguf)) });
  assert.equal(ggufBytes.path, 'llama.gguf');
  assert.deepEqual(ggufBytes.tokenizer.encode(TEXT), ggufByPath.tokenizer.encode(TEXT));
  assert.equal(loss(ggufBytes.model), loss(ggufByPath.model));
});

test('safetensorsModelFromBytes: a sharded model reads as openSafetensorsModel reads its folder', (t) => {
  const dir = fixture('io', 'sharded');
  if (!dir) return t.skip('test/fixtures/io/sharded is missing: run scripts/reference/make-all.sh');
  const folder = openSafetensorsModel(dir);
  const bytes = safetensorsModelFromBytes(filesOf(dir), 'sharded');
  assert.deepEqual([...bytes.tensors.keys()].sort(), [...folder.tensors.keys()].sort());
  assert.deepEqual(bytes.metadata, folder.metadata);
  for (const name of folder.tensors.keys()) {
    const [a, b] = [folder.read(name), bytes.read(name)];
    assert.deepEqual(b.shape, a.shape, name);
    assert.deepEqual(b.data(), a.data(), name);
    a.dispose();
    b.dispose();
  }
  const files = filesOf(dir);
  delete files['model-00002-of-00002.safetensors'];
  assert.throws(
    () => safetensorsModelFromBytes(files, 'sharded'),
    /^Error: lorakit: sharded: shard model-00002-of-00002\.safetensors listed in model\.safetensors\.index\.json is missing\.$/,
  );
});

test('loadModelFromBytes: wrong sets of files fail in one sentence', async (t) => {
  const dir = fixture('models', 'llama');
  if (!dir) return t.skip('test/fixtures/models/llama is missing: run scripts/reference/make-all.sh');
  const files = filesOf(dir);
  await assert.rejects(
    loadModelFromBytes({}),
    /^Error: lorakit: model: has no config\.json \(pass a Hugging Face folder's files by name, or one \.gguf file\)\.$/,
  );
  await assert.rejects(
    loadModelFromBytes({ ...files, 'x.gguf': new Uint8Array(8) }),
    /^Error: lorakit: model files: pass one \.gguf file or a Hugging Face folder's files, not x\.gguf, config\.json, model\.safetensors together\.$/,
  );
  const { 'tokenizer.json': _, ...noTokenizer } = files;
  await assert.rejects(
    loadModelFromBytes(noTokenizer),
    /^Error: lorakit: model: has no tokenizer\.json, which text data/,
  );
  const optional = await loadModelFromBytesOptionalTokenizer(noTokenizer);
  assert.equal(optional.tokenizer, null);
  await assert.rejects(
    loadModelFromBytes({ ...files, 'config.json': new TextEncoder().encode('{"model_type": ') }),
    /^Error: lorakit: model\/config\.json: not a readable JSON file \(/,
  );
});
