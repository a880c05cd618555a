// Data files beyond JSONL: CSV and TSV (the real banking77 and SST-2 files), Parquet (written here by
// hyparquet-writer, and by pyarrow in scripts/reference/data_ref.py), column mapping flags, typed
// columns; and pre-tokenized rows with a model folder that has no tokenizer.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { loadModel, loadModelOptionalTokenizer } from '../src/models/load.js';
import { loadData, type DataOptions } from '../src/train/data.js';
import { openRows } from '../src/train/tables.js';
import { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { fixture, projectRoot, sharedData } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'lorakit-formats-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const opts: DataOptions = { completionOnly: false, maxSeqLen: 512 };
const MODEL = sharedData('models', 'stories260K-hf');
const BANKING = sharedData('datasets', 'banking77', 'test.csv');
const SST2 = sharedData('datasets', 'sst2', 'dev.tsv');
const SKIP = '../shared/data is absent';

function tokenizer(): Tokenizer {
  return Tokenizer.fromFile(join(MODEL!, 'tokenizer.json'));
}
function file(name: string, text: string | ArrayBuffer): string {
  const p = join(dir, name);
  writeFileSync(p, typeof text === 'string' ? text : new Uint8Array(text));
  return p;
}
async function rowsOf(path: string): Promise<{ values: Record<string, unknown>; at: string }[]> {
  const source = await openRows(path);
  const out = [];
  for await (const r of source.rows(source.columns)) out.push(r);
  return out;
}
/** SST-2 dev as {sentence, label}, split by hand: the file has no quoting. */
function sst2Rows(): { sentence: string; label: number }[] {
  return readFileSync(SST2!, 'utf8')
    .split('\n')
    .slice(1)
    .filter((l) => l !== '')
    .map((l) => {
      const [sentence, label] = l.split('\t');
      return { sentence, label: Number(label) };
    });
}

test('CSV: banking77 read as Python csv reads it; --prompt-column/--completion-column map its columns', async (t) => {
  if (!MODEL || !BANKING) return t.skip(SKIP);
  const tok = tokenizer();
  const rows = await rowsOf(BANKING);
  assert.equal(rows.length, 3080);
  assert.equal(new Set(rows.map((r) => r.values.category)).size, 77);
  // Quoted fields: a comma inside, and doubled quotes.
  assert.deepEqual(rows[1], {
    values: {
      text: 'I still have not received my new card, I ordered over a week ago.',
      category: 'card_arrival',
    },
    at: 'line 3',
  });
  const autoTop = rows.find((r) => r.at === 'line 332')!;
  assert.equal(autoTop.values.text, 'Where can I find the "auto-top" feature?');

  // A `text` column alone is the text format, as in JSONL.
  const plain = await loadData(BANKING, tok, opts);
  assert.equal(plain.format, 'text');
  assert.equal(plain.examples.length, 3080);
  const mapped = await loadData(BANKING, tok, {
    ...opts,
    completionOnly: true,
    columns: { prompt: 'text', completion: 'category' },
  });
  assert.equal(mapped.format, 'prompt-completion');
  const p = tok.encode('I still have not received my new card, I ordered over a week ago.');
  const c = [...tok.encode('card_arrival', { addSpecialTokens: false }), tok.eosId!];
  assert.deepEqual(mapped.examples[1], { ids: [...p, ...c], labels: [...p.map(() => -100), ...c] });
});

test('TSV: SST-2 needs a mapping, the error names its columns and the flags; a 0/1 label becomes text', async (t) => {
  if (!MODEL || !SST2) return t.skip(SKIP);
  const tok = tokenizer();
  await assert.rejects(
    async () => loadData(SST2, tok, opts),
    (e: Error) =>
      e.message ===
      `lorakit: ${SST2} has columns 'sentence', 'label'; expected text, prompt+completion, instruction+output, messages, conversations or input_ids, or name yours with --text-column, --prompt-column and --completion-column, or --messages-column.`,
  );
  await assert.rejects(
    async () => loadData(SST2, tok, { ...opts, columns: { text: 'review' } }),
    (e: Error) =>
      e.message ===
      `lorakit: ${SST2} has no column 'review' (--text-column); its columns are 'sentence', 'label'.`,
  );
  await assert.rejects(
    async () => loadData(SST2, tok, { ...opts, columns: { prompt: 'sentence' } }),
    /has no column 'completion'; name its completion column with --completion-column/,
  );
  await assert.rejects(
    async () => loadData(SST2, tok, { ...opts, columns: { text: 'sentence', prompt: 'label' } }),
    /give only one of --text-column, --prompt-column\/--completion-column and --messages-column/,
  );
  const truth = sst2Rows();
  const text = await loadData(SST2, tok, { ...opts, columns: { text: 'sentence' } });
  assert.equal(text.examples.length, 872);
  assert.deepEqual(text.examples[0].ids, [...tok.encode(truth[0].sentence), tok.eosId!]);
  const labelled = await loadData(SST2, tok, {
    ...opts,
    columns: { prompt: 'sentence', completion: 'label' },
  });
  const ones = labelled.examples.filter(
    (e) => e.ids.at(-2) === tok.encode('1', { addSpecialTokens: false }).at(-1),
  );
  assert.equal(ones.length, 444);
});

test('column flags map JSONL too, and numbers and booleans in a mapped column are written as text', async (t) => {
  if (!MODEL) return t.skip(SKIP);
  const tok = tokenizer();
  const p = file(
    'typed.jsonl',
    [
      { sentence: 'a fine film', label: 1 },
      { sentence: 'dull', label: false },
      { sentence: 'ok', label: 0.5 },
    ]
      .map((r) => JSON.stringify(r))
      .join('\n'),
  );
  const r = await loadData(p, tok, { ...opts, columns: { prompt: 'sentence', completion: 'label' } });
  const completion = (i: number, s: string) =>
    assert.deepEqual(r.examples[i].ids.slice(-(tok.encode(s, { addSpecialTokens: false }).length + 1)), [
      ...tok.encode(s, { addSpecialTokens: false }),
      tok.eosId!,
    ]);
  completion(0, '1');
  completion(1, 'false');
  completion(2, '0.5');
  const text = await loadData(p, tok, { ...opts, columns: { text: 'sentence' } });
  assert.equal(text.format, 'text');
  assert.deepEqual(text.examples[1].ids, [...tok.encode('dull'), tok.eosId!]);
});

test('Parquet (snappy, several row groups, int64 labels) gives the examples the same rows give as TSV', async (t) => {
  if (!MODEL || !SST2) return t.skip(SKIP);
  const tok = tokenizer();
  const truth = sst2Rows();
  const p = file(
    'sst2.parquet',
    parquetWriteBuffer({
      columnData: [
        { name: 'idx', data: truth.map((_, i) => i), type: 'INT32' },
        { name: 'sentence', data: truth.map((r) => r.sentence), type: 'STRING' },
        { name: 'label', data: truth.map((r) => BigInt(r.label)), type: 'INT64' },
      ],
      rowGroupSize: 100,
    }),
  );
  const columns = { prompt: 'sentence', completion: 'label' };
  const fromParquet = await loadData(p, tok, { ...opts, columns });
  const fromTsv = await loadData(SST2, tok, { ...opts, columns });
  assert.equal(fromParquet.examples.length, 872);
  assert.deepEqual(fromParquet.examples, fromTsv.examples);
  // An empty row in the second row group is named by its row number.
  const bad = truth.map((r, i) => (i === 149 ? { ...r, sentence: ' ' } : r));
  const q = file(
    'bad.parquet',
    parquetWriteBuffer({
      columnData: [
        { name: 'sentence', data: bad.map((r) => r.sentence), type: 'STRING' },
        { name: 'label', data: bad.map((r) => r.label), type: 'INT32' },
      ],
      rowGroupSize: 100,
    }),
  );
  await assert.rejects(
    async () => loadData(q, tok, { ...opts, columns: { text: 'sentence' } }),
    (e: Error) => e.message === `lorakit: ${q}: row 150: field 'sentence' is empty.`,
  );
  await assert.rejects(
    async () => loadData(file('junk.parquet', 'not parquet at all'), tok, opts),
    (e: Error) => /^lorakit: .*junk\.parquet is not a readable Parquet file: .*\.$/.test(e.message),
  );
});

test('Parquet written by pyarrow (snappy and zstd, list<struct> messages, int64 token lists) reads as pyarrow reads it', async (t) => {
  const fx = fixture('data', 'expected.json');
  if (!fx || !MODEL) return t.skip('fixture missing: run scripts/reference/make-all.sh');
  const expected = JSON.parse(readFileSync(fx, 'utf8')) as Record<string, Record<string, unknown>[]>;
  const plain = (v: unknown): unknown =>
    JSON.parse(JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? Number(x) : x)));
  for (const [name, rows] of Object.entries(expected)) {
    const got = await rowsOf(fixture('data', name)!);
    assert.deepEqual(
      got.map((r) => plain(r.values)),
      rows,
      name,
    );
    assert.deepEqual(
      got.map((r) => r.at),
      rows.map((_, i) => `row ${i + 1}`),
      name,
    );
  }
  const tok = tokenizer();
  const columns = { text: 'sentence' };
  const tsv = (await loadData(SST2!, tok, { ...opts, columns })).examples.slice(0, 300);
  for (const name of ['sst2.parquet', 'sst2-zstd.parquet'])
    assert.deepEqual((await loadData(fixture('data', name)!, tok, { ...opts, columns })).examples, tsv, name);
  const tokens = await loadData(fixture('data', 'tokens.parquet')!, null, { ...opts, vocabSize: 512 });
  assert.equal(tokens.format, 'tokens');
  assert.deepEqual(
    tokens.examples,
    expected['tokens.parquet'].map((r) => ({ ids: r.input_ids, labels: r.labels })),
  );
  const chatDir = mkdtempSync(join(dir, 'chat-'));
  copyFileSync(join(MODEL, 'tokenizer.json'), join(chatDir, 'tokenizer.json'));
  writeFileSync(
    join(chatDir, 'tokenizer_config.json'),
    JSON.stringify({
      eos_token: '</s>',
      chat_template:
        "{% for m in messages %}{{ m.role + ': ' + m.content + '\\n' }}{% endfor %}" +
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}",
    }),
  );
  const chatTok = Tokenizer.fromFile(join(chatDir, 'tokenizer.json'));
  const chat = await loadData(fixture('data', 'chat.parquet')!, chatTok, { ...opts, completionOnly: true });
  assert.equal(chat.format, 'messages');
  assert.equal(
    chatTok.decode(chat.examples[1].ids.filter((_, i) => chat.examples[1].labels[i] !== -100)),
    'An apple.\nA pear.\n',
  );
});

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(
    process.execPath,
    ['--import', 'tsx', join(projectRoot, 'test', 'lorakit-cli.mts'), ...args],
    {
      encoding: 'utf8',
      cwd: projectRoot,
    },
  );
}

test('pre-tokenized rows need no tokenizer: eval and train on a model folder without tokenizer.json', async (t) => {
  if (!MODEL) return t.skip(SKIP);
  const bare = mkdtempSync(join(dir, 'bare-'));
  for (const f of ['config.json', 'model.safetensors', 'generation_config.json'])
    copyFileSync(join(MODEL, f), join(bare, f));
  const reason =
    'has no tokenizer.json, which text data, generation, chat, serving and export need (pre-tokenized {"input_ids"} data works without one).';
  await assert.rejects(
    () => loadModel(bare),
    (e: Error) => e.message === `lorakit: --model ${bare}: ${bare} ${reason}`,
  );
  const loaded = await loadModelOptionalTokenizer(bare);
  assert.equal(loaded.tokenizer, null);
  loaded.model.dispose();

  const tok = tokenizer();
  const stories = [
    'Once upon a time there was a cat.',
    'The dog ran to the park and played.',
    'Lily saw a big red ball.',
  ];
  const ids = file(
    'ids.jsonl',
    stories.map((s) => JSON.stringify({ input_ids: [...tok.encode(s), tok.eosId!] })).join('\n\n'),
  );
  const ev = cli('eval', '--model', bare, '--data', ids, '--json');
  assert.equal(ev.status, 0, ev.stderr);
  const withTokenizer = cli('eval', '--model', MODEL, '--data', ids, '--json');
  assert.equal(withTokenizer.status, 0, withTokenizer.stderr);
  assert.deepEqual(JSON.parse(ev.stdout), JSON.parse(withTokenizer.stdout));

  const out = join(dir, 'run');
  const tr = cli(
    'train',
    '--model',
    bare,
    '--data',
    ids,
    '--out',
    out,
    '--max-steps',
    '2',
    '--batch-size',
    '2',
    '--r',
    '4',
  );
  assert.equal(tr.status, 0, tr.stderr);
  assert.ok(readFileSync(join(out, 'adapter', 'adapter_config.json'), 'utf8').length > 0);

  // What needs a tokenizer fails in one sentence saying so.
  const text = file('text.jsonl', JSON.stringify({ text: 'Once upon a time' }));
  const bad = cli('eval', '--model', bare, '--data', text);
  assert.equal(bad.status, 1);
  assert.equal(
    bad.stderr.trim().split('\n').at(-1),
    `lorakit: ${text}: text rows need a tokenizer, and the model folder has no tokenizer.json; pre-tokenized {"input_ids"} rows work without one.`,
  );
  const gen = cli('generate', '--model', bare, '--prompt', 'Once');
  assert.notEqual(gen.status, 0);
  assert.ok(gen.stderr.includes(`${bare} ${reason}`), gen.stderr);
});

test('column flags on the command line and as YAML config keys; contradicting ones are refused before loading', async (t) => {
  if (!MODEL || !SST2) return t.skip(SKIP);
  const ev = cli('eval', '--model', MODEL, '--data', SST2, '--text-column', 'sentence', '--json');
  assert.equal(ev.status, 0, ev.stderr);
  assert.ok(JSON.parse(ev.stdout).tokens > 10000);
  const both = cli(
    'eval',
    '--model',
    join(dir, 'no-such-model'),
    '--data',
    SST2,
    '--text-column',
    'sentence',
    '--messages-column',
    'm',
  );
  assert.equal(both.status, 2);
  assert.match(
    both.stderr,
    /^lorakit eval: give only one of --text-column, --prompt-column\/--completion-column and --messages-column\.$/m,
  );
  const config = file(
    'train.yaml',
    `model: ${MODEL}\ndata: ${SST2}\nout: ${join(dir, 'yaml-run')}\nprompt_column: sentence\ncompletion-column: label\nmax_steps: 1\nbatch_size: 8\n`,
  );
  const tr = cli('train', '--config', config);
  assert.equal(tr.status, 0, tr.stderr);
  assert.match(tr.stderr, /872 training rows \(prompt-completion\)/);
});
