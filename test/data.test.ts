// Data formats: every row shape of DESIGN.md through a real tokenizer and chat template, completion-only
// labels, packing, and one clear sentence for each kind of bad file.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { packBatches, padBatch } from '../src/train/batching.js';
import { IGNORE, loadData, loadDataFromText, type Example } from '../src/train/data.js';
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

test('text rows: the tokenizer encoding (with BOS) followed by EOS, all tokens targets', async (t) => {
  const d = sharedData('models', 'stories260K-hf');
  if (!d) return t.skip('../shared/data is absent');
  const tok = Tokenizer.fromFile(join(d, 'tokenizer.json'));
  const { examples, format } = await loadData(
    file('t.jsonl', jsonl([{ text: 'Once upon a time' }])),
    tok,
    opts,
  );
  assert.equal(format, 'text');
  assert.deepEqual(examples[0].ids, [...tok.encode('Once upon a time'), tok.eosId!]);
  assert.deepEqual(examples[0].labels, examples[0].ids);
  // Without a chat template, prompt/completion is prompt + completion + EOS.
  const pc = await loadData(file('pc.jsonl', jsonl([{ prompt: 'The cat', completion: ' sat.' }])), tok, {
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

test('chat formats render through the chat template; completion-only keeps assistant turns', async (t) => {
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
    const full: Example = (await loadData(file(`${fmt}.jsonl`, jsonl([row])), tok, opts)).examples[0];
    assert.equal(tok.decode(full.ids), tok.decode(tok.encode(rendered, { addSpecialTokens: false })), fmt);
    const co = (await loadData(file(`${fmt}.jsonl`, jsonl([row])), tok, { ...opts, completionOnly: true }))
      .examples[0];
    const kept = tok.decode(co.ids.filter((_, i) => co.labels[i] !== IGNORE));
    // The assistant turns as the template ends them ("<|im_end|>\n"; this tiny vocabulary has no "\n").
    assert.equal(kept, 'hello friend<|im_end|> <unk>very well<|im_end|> <unk>', fmt);
  }
  const alpaca = await loadData(
    file('a.json', JSON.stringify([{ instruction: 'Add', input: 'two and three', output: 'five' }])),
    tok,
    { ...opts, completionOnly: true },
  );
  assert.equal(alpaca.format, 'alpaca');
  const ex = alpaca.examples[0];
  assert.match(tok.decode(ex.ids), /user<unk>Add<unk><unk>two and three<\|im_end\|>/);
  assert.equal(tok.decode(ex.ids.filter((_, i) => ex.labels[i] !== IGNORE)).trim(), 'five<|im_end|> <unk>');
});

test('pre-tokenized rows are used exactly as given', async (t) => {
  const tok = chatTokenizer();
  if (!tok) return t.skip('fixture missing');
  const { examples } = await loadData(
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

test('bad data files give one clear sentence naming the file and line', async (t) => {
  const tok = chatTokenizer();
  if (!tok) return t.skip('fixture missing');
  const cases: [string, string, RegExp][] = [
    ['empty.jsonl', '', /empty/],
    ['blank.jsonl', '\n\n', /empty|no rows/],
    ['broken.jsonl', '{"text": "a"}\n{"text": \n', /line 2 is not valid JSON/],
    ['array.json', '[{"text": "a"}, ', /invalid JSON/],
    ['keys.jsonl', '{"foo": 1}\n', /has columns 'foo'; expected text, prompt\+completion/],
    [
      'missing.jsonl',
      jsonl([{ prompt: 'a', completion: 'b' }, { prompt: 'a' }]),
      /line 2: missing field 'completion'/,
    ],
    ['type.jsonl', jsonl([{ text: [3] }]), /line 1: field 'text' must be text, not a list/],
    [
      'roles.jsonl',
      jsonl([{ messages: [{ role: 'user', content: 'x' }] }]),
      /line 1: the conversation has no assistant message/,
    ],
    ['ids.jsonl', jsonl([{ input_ids: [1, 99999] }]), /line 1: 'input_ids' must be/],
    [
      'sharegpt.jsonl',
      jsonl([{ conversations: [{ from: 'robot', value: 'x' }] }]),
      /line 1: message 1 has 'from' value 'robot'; accepted values are human, gpt and system/,
    ],
    ['notobj.json', '[1, 2]\n', /row 1 is not a JSON object/],
    ['notobj.jsonl', '{"text": "a"}\n3\n', /line 2 is not a JSON object/],
    ['notobj2.json', '[{"text": "a"}, 2]', /row 2 is not a JSON object/],
  ];
  for (const [name, text, re] of cases) {
    const p = file(name, text);
    let message = '';
    await assert.rejects(
      async () => loadData(p, tok, opts),
      (e: Error) => {
        message = e.message;
        return re.test(e.message) && e.message.includes(p) && e.message.startsWith('lorakit: ');
      },
      name,
    );
    // The file's text (a browser's File) fails with the same sentence, naming the file and line.
    await assert.rejects(async () => loadDataFromText(text, p, tok, opts), { message }, `${name} as text`);
  }
  await assert.rejects(async () => loadData(join(dir, 'nope.jsonl'), tok, opts), /cannot read data file/);
});

test('rows longer than max-seq-len are cut and counted', async (t) => {
  const tok = chatTokenizer();
  if (!tok) return t.skip('fixture missing');
  const long = 'once upon a time there was a very long story '.repeat(20);
  const r = await loadData(file('long.jsonl', jsonl([{ text: long }, { text: 'short one' }])), tok, {
    completionOnly: false,
    maxSeqLen: 16,
  });
  assert.equal(r.truncated, 1);
  assert.equal(r.examples[0].ids.length, 16);
});

/** The stories260K tokenizer (shared data) with a chat template, built in a temp folder; or null. */
function storiesChat(template: string): Tokenizer | null {
  const d = sharedData('models', 'stories260K-hf');
  if (!d) return null;
  const tokDir = mkdtempSync(join(dir, 'tok-'));
  copyFileSync(join(d, 'tokenizer.json'), join(tokDir, 'tokenizer.json'));
  const config = JSON.parse(readFileSync(join(d, 'tokenizer_config.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  writeFileSync(
    join(tokDir, 'tokenizer_config.json'),
    JSON.stringify({ ...config, chat_template: template }),
  );
  return Tokenizer.fromFile(join(tokDir, 'tokenizer.json'));
}
const CHATML =
  "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const NO_TOOLS =
  "{% for m in messages %}{% if m.role != 'tool' %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endif %}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** Asserts that loading `p` fails with one sentence starting 'lorakit: ', naming p and matching re. */
async function refuses(p: string, tok: Tokenizer | null, re: RegExp, o = opts): Promise<void> {
  await assert.rejects(
    async () => loadData(p, tok, o),
    (e: Error) => {
      assert.match(e.message, re);
      assert.ok(e.message.startsWith(`lorakit: ${p}: `), e.message);
      assert.ok(!e.message.includes('\n'), e.message);
      return true;
    },
  );
}

test('unknown chat roles are refused, naming the file, line and role and listing the accepted ones', async (t) => {
  const tok = storiesChat(CHATML);
  if (!tok) return t.skip('../shared/data is absent');
  const ok = {
    messages: [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
    ],
  };
  const robot = {
    messages: [
      { role: 'user', content: 'hi' },
      { role: 'robot', content: 'beep' },
      { role: 'assistant', content: 'hello' },
    ],
  };
  await refuses(
    file('robot.jsonl', jsonl([ok, robot])),
    tok,
    /: line 2: message 2 has role 'robot'; accepted roles are system, user, assistant and tool\.$/,
  );
  const sharegpt = {
    conversations: [
      { from: 'human', value: 'hi' },
      { from: 'robot', value: 'beep' },
      { from: 'gpt', value: 'hello' },
    ],
  };
  await refuses(
    file('robot-sharegpt.jsonl', jsonl([sharegpt])),
    tok,
    /: line 1: message 2 has 'from' value 'robot'; accepted values are human, gpt and system/,
  );
  // Tool results are rendered by a template that knows them, refused by one that would drop them.
  const tool = {
    messages: [
      { role: 'user', content: 'weather?' },
      { role: 'tool', content: 'sunny and warm' },
      { role: 'assistant', content: 'It is sunny.' },
    ],
  };
  const withTool = await loadData(file('tool.jsonl', jsonl([tool])), tok, opts);
  assert.match(tok.decode(withTool.examples[0].ids), /sunny and warm/);
  await refuses(
    file('tool.jsonl', jsonl([tool])),
    storiesChat(NO_TOOLS),
    /: line 1: message 2 has role 'tool', which this model's chat template does not render\./,
  );
});

test('empty rows are refused, naming the file and line; an empty prompt with a completion is fine', async (t) => {
  const tok = storiesChat(CHATML);
  const plain = sharedData('models', 'stories260K-hf');
  if (!tok || !plain) return t.skip('../shared/data is absent');
  const noTemplate = Tokenizer.fromFile(join(plain, 'tokenizer.json'));
  const cases: [string, unknown, unknown, RegExp][] = [
    ['empty-text', { text: 'Once' }, { text: '' }, /line 2: field 'text' is empty\./],
    ['blank-text', { text: 'Once' }, { text: '  \n\t ' }, /line 2: field 'text' is empty\./],
    [
      'empty-completion',
      { prompt: 'a', completion: 'b' },
      { prompt: 'a', completion: '' },
      /line 2: field 'completion' is empty\./,
    ],
    [
      'empty-output',
      { instruction: 'a', output: 'b' },
      { instruction: 'a', input: '', output: ' ' },
      /line 2: field 'output' is empty\./,
    ],
  ];
  for (const [name, good, bad, re] of cases)
    for (const t of [noTemplate, tok]) await refuses(file(`${name}.jsonl`, jsonl([good, bad])), t, re);
  const emptyReply = {
    messages: [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: '' },
    ],
  };
  for (const completionOnly of [true, false])
    await refuses(
      file('empty-reply.jsonl', jsonl([emptyReply])),
      tok,
      /line 1: message 2 \(assistant\) is empty\./,
      { ...opts, completionOnly },
    );
  await refuses(
    file('no-reply.jsonl', jsonl([{ messages: [{ role: 'user', content: 'hi' }] }])),
    tok,
    /line 1: the conversation has no assistant message/,
    { ...opts, completionOnly: true },
  );
  const unconditional = await loadData(
    file('empty-prompt.jsonl', jsonl([{ prompt: '', completion: 'Once upon a time' }])),
    noTemplate,
    { ...opts, completionOnly: true },
  );
  assert.deepEqual(unconditional.examples[0].ids, [
    ...noTemplate.encode(''),
    ...noTemplate.encode('Once upon a time', { addSpecialTokens: false }),
    noTemplate.eosId!,
  ]);
});

test('row errors name the real line of a file with blank lines, a CSV record and a JSON array row', async (t) => {
  const d = sharedData('models', 'stories260K-hf');
  if (!d) return t.skip('../shared/data is absent');
  const tok = Tokenizer.fromFile(join(d, 'tokenizer.json'));
  const blanks = '\n{"prompt": "a", "completion": "b"}\n\n\n{"prompt": "c"}\n';
  await refuses(file('blanks.jsonl', blanks), tok, /: line 5: missing field 'completion'\.$/);
  await refuses(
    file('blanks-crlf.jsonl', '{"text": "a"}\r\n\r\n{"text": ""}\r\n'),
    tok,
    /: line 3: field 'text' is empty\./,
  );
  // A quoted field over two lines: the next record starts on line 5, after a blank line.
  const csv = 'prompt,completion\n"two\nlines",ok\n\n,\n';
  await refuses(file('lines.csv', csv), tok, /: line 5: field 'completion' is empty\./);
  await refuses(
    file('rows.json', JSON.stringify([{ text: 'a' }, { text: 'b' }, { text: ' ' }], null, 2)),
    tok,
    /: row 3: field 'text' is empty\./,
  );
});

test('loadDataFromText: the text or bytes of a JSONL file give the examples loadData gives; CSV by name is refused', async (t) => {
  const d = sharedData('models', 'stories260K-hf');
  if (!d) return t.skip('../shared/data is absent');
  const tok = Tokenizer.fromFile(join(d, 'tokenizer.json'));
  const text = jsonl([
    { text: 'Once upon a time' },
    { text: 'The cat sat on the mat and looked at the bird for a long time.' },
  ]);
  const want = await loadData(file('same.jsonl', text), tok, { ...opts, maxSeqLen: 8 });
  assert.equal(want.truncated, 1);
  for (const input of [text, new TextEncoder().encode(text)])
    assert.deepEqual(await loadDataFromText(input, 'same.jsonl', tok, { ...opts, maxSeqLen: 8 }), want);
  await assert.rejects(async () => loadDataFromText('prompt,completion\na,b\n', 'rows.csv', tok, opts), {
    message:
      'lorakit: rows.csv: CSV data is read from a file by path, which needs Node; give JSONL or JSON text instead.',
  });
});
