#!/usr/bin/env node
// Exact-match accuracy of the order-extraction task: greedy generation for every eval row, parsed as
// JSON and compared field by field with the reference answer; plus the eval loss.
// Usage: node examples/orders/accuracy.mjs --model M [--adapter DIR] [--limit N]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { evaluate, generate, loadAdapter, loadData, loadModel } from '../../dist/index.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    adapter: { type: 'string' },
    data: { type: 'string' },
    limit: { type: 'string' },
  },
});
if (!values.model) throw new Error('--model is required');
const dataPath = values.data ?? new URL('./eval.jsonl', import.meta.url).pathname;
const rows = readFileSync(dataPath, 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l));
const limit = values.limit ? Number(values.limit) : rows.length;

const { model, tokenizer } = await loadModel(values.model);
if (values.adapter) loadAdapter(model, values.adapter);
const { examples } = await loadData(dataPath, tokenizer, { completionOnly: true, maxSeqLen: 1024 });
const { loss } = await evaluate(model, examples);
let exact = 0;
let fields = 0;
const started = Date.now();
for (const row of rows.slice(0, limit)) {
  const messages = row.messages.filter((m) => m.role !== 'assistant');
  const want = JSON.parse(row.messages.find((m) => m.role === 'assistant').content);
  const { text } = generate(model, tokenizer, { messages, maxNewTokens: 64, temperature: 0 });
  let got = null;
  try {
    got = JSON.parse(text.trim());
  } catch {}
  const keys = Object.keys(want);
  const right = got ? keys.filter((k) => JSON.stringify(got[k]) === JSON.stringify(want[k])).length : 0;
  fields += right / keys.length;
  if (right === keys.length) exact++;
}
const n = Math.min(limit, rows.length);
console.log(
  JSON.stringify({
    adapter: values.adapter ?? null,
    eval_loss: Number(loss.toFixed(4)),
    exact_match: exact / n,
    field_accuracy: Number((fields / n).toFixed(4)),
    rows: n,
    seconds: Math.round((Date.now() - started) / 1000),
  }),
);
model.dispose();
