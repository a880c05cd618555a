// A real classification task on this CPU: SST-2 sentiment (../shared/data/datasets/sst2/dev.tsv, the
// GLUE validation split) as text labels with SmolLM2-135M-Instruct. Trains a LoRA adapter on the first
// rows and reports accuracy on the held-out rest before and after, plus eval loss.
//   node --import tsx bench/classify-sst2.ts [--train 600] [--epochs 1] [--model PATH]
import { describeCpuPath } from '../src/backend/cpu/addon.js';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { generate } from '../src/infer/generate.js';
import { loadModel } from '../src/models/load.js';
import type { CausalLM } from '../src/models/llama.js';
import { addAdapter, setActiveAdapter } from '../src/peft/adapters.js';
import { LORA_DEFAULTS } from '../src/peft/config.js';
import type { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { loadData, type Example } from '../src/train/data.js';
import { evaluate } from '../src/train/evaluate.js';
import { train } from '../src/train/trainer.js';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';

const { values } = parseArgs({
  options: {
    train: { type: 'string', default: '600' },
    epochs: { type: 'string', default: '1' },
    model: { type: 'string' },
  },
});
const root = new URL('..', import.meta.url).pathname;
const tsv = join(root, '..', 'shared', 'data', 'datasets', 'sst2', 'dev.tsv');
const rows = readFileSync(tsv, 'utf8')
  .trim()
  .split('\n')
  .slice(1)
  .map((l) => {
    const [sentence, label] = l.split('\t');
    return { sentence, label: label === '1' ? 'positive' : 'negative' };
  });
const nTrain = Number(values.train);
const SYSTEM = 'Classify the sentiment of the movie review. Answer with one word: positive or negative.';
const chat = (r: { sentence: string; label: string }) => ({
  messages: [
    { role: 'system', content: SYSTEM },
    { role: 'user', content: r.sentence },
    { role: 'assistant', content: r.label },
  ],
});
const dir = mkdtempSync(join(tmpdir(), 'lorakit-sst2-'));
const trainPath = join(dir, 'train.jsonl');
const testPath = join(dir, 'test.jsonl');
writeFileSync(
  trainPath,
  rows
    .slice(0, nTrain)
    .map((r) => JSON.stringify(chat(r)))
    .join('\n') + '\n',
);
writeFileSync(
  testPath,
  rows
    .slice(nTrain)
    .map((r) => JSON.stringify(chat(r)))
    .join('\n') + '\n',
);
const test = rows.slice(nTrain);

function accuracy(model: CausalLM, tokenizer: Tokenizer): number {
  let right = 0;
  for (const r of test) {
    const { text } = generate(model, tokenizer, {
      messages: [
        { role: 'system', content: SYSTEM },
        { role: 'user', content: r.sentence },
      ],
      maxNewTokens: 3,
      temperature: 0,
    });
    if (text.trim().toLowerCase().startsWith(r.label)) right++;
  }
  return right / test.length;
}

const model_path =
  values.model ?? execFileSync('bash', [join(root, 'scripts/fetch-smollm2.sh')], { encoding: 'utf8' }).trim();
const { model, tokenizer } = await loadModel(model_path);
const testSet: Example[] = (await loadData(testPath, tokenizer, { completionOnly: true, maxSeqLen: 512 }))
  .examples;
const t0 = Date.now();
const before = { acc: accuracy(model, tokenizer), loss: (await evaluate(model, testSet)).loss };
addAdapter(model, 'sst2', { ...LORA_DEFAULTS, r: 8, alpha: 16, dropout: 0.05 }, 1);
const t1 = Date.now();
const r = await train(model, tokenizer, {
  data: trainPath,
  epochs: Number(values.epochs),
  batchSize: 8,
  lr: 1e-3,
  completionOnly: true,
  warmupSteps: 5,
  seed: 1,
});
const trainSeconds = (Date.now() - t1) / 1000;
setActiveAdapter(model, 'sst2');
const after = { acc: accuracy(model, tokenizer), loss: (await evaluate(model, testSet)).loss };
console.log(
  `SST-2 (GLUE validation split): ${nTrain} rows trained, ${test.length} held out; SmolLM2-135M-Instruct fp32, LoRA r=8 all-linear, ${r.steps} steps, batch 8, lr 1e-3, completion-only`,
);
console.log(
  `machine: ${describeCpuPath()}, ${cpus().length} threads; training took ${trainSeconds.toFixed(0)} s; whole run ${((Date.now() - t0) / 1000).toFixed(0)} s`,
);
console.log('| | accuracy | eval loss (label tokens) |');
console.log('|---|---|---|');
console.log(`| before (zero-shot) | ${(100 * before.acc).toFixed(1)}% | ${before.loss.toFixed(4)} |`);
console.log(`| after LoRA | ${(100 * after.acc).toFixed(1)}% | ${after.loss.toFixed(4)} |`);
model.dispose();
