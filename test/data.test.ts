// Data formats: every row shape of DESIGN.md through a real tokenizer and chat template, completion-only
// labels, packing, and one clear sentence for each kind of bad file.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { packBatches, padBatch } from '../src/train/batching.js';
import { IGNORE, loadData, type Example } from '../src/train/data.js';
import { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { fixture, sharedData } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'lorakit-data-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}
const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
const opts = { completionOnly: false, maxSeqLen: 512 };

function chatTokenizer(): Tokenizer | null {
  const d = fixture('models', 'llama');
  return d ? Tokenizer.fromFile(join(d, 'tokenizer.json')) : null;
}

test('text rows: the tokenizer encoding (with BOS) followed by EOS, all tokens targets', (t) => {
  const d = sharedData('models', 'stories260K-hf');
  if (!d) return t.skip('../shared/data is absent');
  const tok = Tokenizer.fromFile(join(d, 'tokenizer.json'));
  const { examples, format } = loadData(file('t.jsonl', jsonl([{ text: 'Once upon a time' }])), tok, opts);
  assert.equal(format, 'text');
  assert.deepEqual(examples[0].ids, [...tok.encode('Once upon a time'), tok.eosId!]);
  assert.deepEqual(examples[0].labels, examples[0].ids);
  // Without a chat template, prompt/completion is prompt + completion + EOS.
  const pc = loadData(file('pc.jsonl', jsonl([{ prompt: 'The cat', completion: ' sat.' }])), tok, {
    ...opts,
    completionOnly: true,
  });
  const p = tok.encode('The cat');
  assert.deepEqual(pc.examples[0].ids, [
    ...p,
    ...tok.encode(' sat.', { addSpecialTokens: false }),
    tok.eosId!,
  ]);
  assert.deepEqual(
    pc.examples[0].labels.slice(0, p.length),
    p.map(() => IGNORE),
  );
});

test('chat formats render through the chat template; completion-only keeps assistant turns', (t) => {
  const tok = chatTokenizer();
  if (!tok) return t.skip('fixture missing: run scripts/reference/make-all.sh');
  const messages = [
    { role: 'user', content: 'hi there' },
    { role: 'assistant', content: 'hello friend' },
    { role: 'user', content: 'how are you' },
    { role: 'assistant', content: 'very well' },
  ];
  const rendered = tok.applyChatTemplate(messages, { addGenerationPrompt: false });
  const sources = {
    messages: { messages },
    sharegpt: {
      conversations: messages.map((m) => ({ from: m.role === 'user' ? 'human' : 'gpt', value: m.content })),
    },
  };
  for (const [fmt, row] of Object.entries(sources)) {
    const full: Example = loadData(file(`${fmt}.jsonl`, jsonl([row])), tok, opts).examples[0];
    assert.equal(tok.decode(full.ids), tok.decode(tok.encode(rendered, { addSpecialTokens: false })), fmt);
    const co = loadData(file(`${fmt}.jsonl`, jsonl([row])), tok, { ...opts, completionOnly: true })
      .examples[0];
    const kept = tok.decode(co.ids.filter((_, i) => co.labels[i] !== IGNORE));
    // The assistant turns as the template ends them ("<|im_end|>\n"; this tiny vocabulary has no "\n").
    assert.equal(kept, 'hello friend<|im_end|> <unk>very well<|im_end|> <unk>', fmt);
  }
  const alpaca = loadData(
    file('a.json', JSON.stringify([{ instruction: 'Add', input: 'two and three', output: 'five' }])),
    tok,
    { ...opts, completionOnly: true },
  );
  assert.equal(alpaca.format, 'alpaca');
  const ex = alpaca.examples[0];
  assert.match(tok.decode(ex.ids), /user<unk>Add<unk><unk>two and three<\|im_end\|>/);
  assert.equal(tok.decode(ex.ids.filter((_, i) => ex.labels[i] !== IGNORE)).trim(), 'five<|im_end|> <unk>');
});

test('pre-tokenized rows are used exactly as given', (t) => {
  const tok = chatTokenizer();
  if (!tok) return t.skip('fixture missing');
  const { examples } = loadData(
    file('ids.jsonl', jsonl([{ input_ids: [5, 6, 7, 8], labels: [-100, -100, 7, 8] }])),
    tok,
    opts,
  );
  assert.deepEqual(examples[0], { ids: [5, 6, 7, 8], labels: [-100, -100, 7, 8] });
});

test('packing keeps sequences apart and batches count each target once', () => {
  const ex = [
    { ids: [1, 2, 3], labels: [1, 2, 3] },
    { ids: [4, 5], labels: [IGNORE, 5] },
    { ids: [6, 7, 8, 9], labels: [6, 7, 8, 9] },
  ];
  const [hb] = packBatches(ex, 16, 4);
  assert.equal(hb.B, 1);
  assert.deepEqual(Array.from(hb.segments), [1, 1, 1, 2, 2, 3, 3, 3, 3]);
  assert.deepEqual(Array.from(hb.positions), [0, 1, 2, 0, 1, 0, 1, 2, 3]);
  // The last token of each sequence predicts nothing (no target across the boundary).
  assert.deepEqual(Array.from(hb.targets), [2, 3, IGNORE, 5, IGNORE, 7, 8, 9, IGNORE]);
  assert.equal(hb.targetCount, padBatch(ex).targetCount);
});

test('bad data files give one clear sentence naming the file and line', (t) => {
  const tok = chatTokenizer();
  if (!tok) return t.skip('fixture missing');
  const cases: [string, string, RegExp][] = [
    ['empty.jsonl', '', /empty/],
    ['blank.jsonl', '\n\n', /empty|no rows/],
    ['broken.jsonl', '{"text": "a"}\n{"text": \n', /line 2 is not valid JSON/],
    ['array.json', '[{"text": "a"}, ', /invalid JSON/],
    ['keys.jsonl', '{"foo": 1}\n', /row 1 has keys \{foo\}/],
    [
      'missing.jsonl',
      jsonl([{ prompt: 'a', completion: 'b' }, { prompt: 'a' }]),
      /row 2: missing field 'completion'/,
    ],
    ['type.jsonl', jsonl([{ text: 3 }]), /row 1: field 'text' must be a string/],
    [
      'roles.jsonl',
      jsonl([{ messages: [{ role: 'user', content: 'x' }] }]),
      /row 1: the conversation has no assistant message/,
    ],
    ['ids.jsonl', jsonl([{ input_ids: [1, 99999] }]), /row 1: 'input_ids' must be/],
    [
      'sharegpt.jsonl',
      jsonl([{ conversations: [{ from: 'robot', value: 'x' }] }]),
      /unknown 'from' value 'robot'/,
    ],
    ['notobj.jsonl', '[1, 2]\n', /row 1 is not a JSON object/],
  ];
  for (const [name, text, re] of cases) {
    const p = file(name, text);
    assert.throws(
      () => loadData(p, tok, opts),
      (e: Error) => re.test(e.message) && e.message.includes(p) && e.message.startsWith('lorakit: '),
      name,
    );
  }
  assert.throws(() => loadData(join(dir, 'nope.jsonl'), tok, opts), /cannot read data file/);
});

test('rows longer than max-seq-len are cut and counted', (t) => {
  const tok = chatTokenizer();
  if (!tok) return t.skip('fixture missing');
  const long = 'once upon a time there was a very long story '.repeat(20);
  const r = loadData(file('long.jsonl', jsonl([{ text: long }, { text: 'short one' }])), tok, {
    completionOnly: false,
    maxSeqLen: 16,
  });
  assert.equal(r.truncated, 1);
  assert.equal(r.examples[0].ids.length, 16);
});
