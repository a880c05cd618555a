// generateAsync, the decoding loop for devices whose reads cannot block (WebGPU in a page), against
// generate(): the same tokens and streamed text, greedy and sampled, with an adapter, on the CPU and
// on WebGPU (where the greedy pick is made on the device). Uses stories260K from ../shared/data.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generate, generateAsync, type GenerateOptions } from '../src/infer/generate.js';
import type { CausalLM } from '../src/models/llama.js';
import { loadModel } from '../src/models/load.js';
import { adapterParameters, addAdapter } from '../src/peft/adapters.js';
import { LORA_DEFAULTS } from '../src/peft/config.js';
import { Tensor } from '../src/tensor/tensor.js';
import { randn, sharedData } from './helpers.js';
import { WEBGPU_SKIP } from './webgpu-helpers.js';

const MODEL = sharedData('models', 'stories260K-hf');
const skip = MODEL ? false : '../shared/data/models/stories260K-hf is absent';

const CASES: [string, GenerateOptions][] = [
  ['greedy', { prompt: 'Once upon a time', maxNewTokens: 24 }],
  [
    'sampled',
    { prompt: 'The little dog', maxNewTokens: 24, temperature: 0.9, topK: 40, topP: 0.95, seed: 5 },
  ],
  ['stop string', { prompt: 'Once upon a time', maxNewTokens: 40, stop: ['.'] }],
];

// An adapter whose B is not zero, so that it changes the tokens; the same values on every model.
function withAdapter(model: CausalLM): void {
  addAdapter(model, 'default', { ...LORA_DEFAULTS, r: 4, alpha: 8, dropout: 0 }, 3);
  adapterParameters(model, 'default').forEach(([, p], i) => {
    const host = Tensor.from(Float32Array.from(randn(p.size, 100 + i, 0.05)), p.shape);
    p.copyFrom(host);
    host.dispose();
  });
}

async function run(
  model: CausalLM,
  tokenizer: Parameters<typeof generate>[1],
  o: GenerateOptions,
  async: boolean,
): Promise<{ text: string; tokenIds: number[]; finishReason: string; pieces: string[] }> {
  const pieces: string[] = [];
  const opts = { ...o, onToken: (piece: string) => pieces.push(piece) };
  const r = async ? await generateAsync(model, tokenizer, opts) : generate(model, tokenizer, opts);
  return { ...r, pieces };
}

test(
  'generateAsync on the CPU gives what generate gives: tokens, text, pieces, finish reason',
  { skip },
  async () => {
    const { model, tokenizer } = await loadModel(MODEL!, { dtype: 'float32' });
    try {
      withAdapter(model);
      for (const [label, o] of CASES) {
        const want = await run(model, tokenizer, o, false);
        assert.deepEqual(await run(model, tokenizer, o, true), want, label);
        assert.equal(want.pieces.join(''), want.text, label);
      }
    } finally {
      model.dispose();
    }
  },
);

test(
  "generateAsync on WebGPU gives the CPU generate()'s tokens, greedy and sampled, with an adapter",
  { skip: skip || WEBGPU_SKIP },
  async () => {
    const cpu = await loadModel(MODEL!, { dtype: 'float32' });
    const gpu = await loadModel(MODEL!, { device: 'webgpu', dtype: 'float32' });
    try {
      withAdapter(cpu.model);
      withAdapter(gpu.model);
      for (const [label, o] of CASES) {
        const want = await run(cpu.model, cpu.tokenizer, o, false);
        const got = await run(gpu.model, gpu.tokenizer, o, true);
        assert.deepEqual(got, want, label);
      }
      assert.throws(
        () => generate(gpu.model, gpu.tokenizer, CASES[0][1]),
        /webgpu|WebGPU/,
        'the blocking generate() refuses WebGPU in one sentence',
      );
    } finally {
      cpu.model.dispose();
      gpu.model.dispose();
    }
  },
);
