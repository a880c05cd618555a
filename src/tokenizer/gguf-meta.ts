// Tokenizers between the two worlds: GGUF's tokenizer.ggml.* metadata from a Hugging Face
// tokenizer.json (or passed through from a source GGUF), and tokenizer.json / tokenizer_config.json
// synthesized from GGUF metadata. Whatever is produced is checked by encoding a test text with the
// result and with the source tokenizer: the ids must agree, or the export says so.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GGUFFile, GGUFValue } from '../io/gguf.js';
import type { GGUFKV } from '../io/gguf-kv.js';
import { sentencepieceDecoder } from './from-gguf.js';
import { Tokenizer, type TokenizerConfig } from './tokenizer.js';

// llama.cpp token types (llama_token_type).
const NORMAL = 1;
const UNKNOWN = 2;
const CONTROL = 3;
const USER_DEFINED = 4;
const UNUSED = 5;
const BYTE = 6;

/**
 * Text that exercises pre-tokenizers: digits of several lengths, contractions, runs of spaces and
 * newlines, punctuation, accents, CJK and emoji (in the spirit of llama.cpp's chktxt).
 */
export const TOKENIZER_CHECK_TEXT =
  "Hello world! It's 2024-05-17, the 3rd time we've met: 1 12 123 1234 12345.\n\n  \t indented  text\r\n" +
  "über café naïve résumé — «quotes» don't I'LL WE'RE 😀🚀 中文测试 日本語 한국어 ١٢٣ x=a+b*c/d; <tag> {json: [1,2]}\n" +
  '   trailing spaces   \n\n\nend';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObj = { [k: string]: Json };

function isObj(v: Json | undefined): v is JsonObj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function readJson(path: string): Json {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Json;
  } catch (e) {
    throw new Error(
      `lorakit: ${path}: not a readable JSON file (${e instanceof Error ? e.message : String(e)}).`,
    );
  }
}

/** Whether the tokenizer adds BOS / EOS when encoding with special tokens. */
function addsSpecial(tok: Tokenizer): { bos: boolean; eos: boolean } {
  const withSpecial = tok.encode('a');
  const plain = tok.encode('a', { addSpecialTokens: false });
  return {
    bos: tok.bosId !== null && withSpecial.length > plain.length && withSpecial[0] === tok.bosId,
    eos:
      tok.eosId !== null &&
      withSpecial.length > plain.length &&
      withSpecial[withSpecial.length - 1] === tok.eosId,
  };
}

/** Token ids of the check text by two tokenizers agree. */
export function sameEncoding(a: Tokenizer, b: Tokenizer, text = TOKENIZER_CHECK_TEXT): boolean {
  const x = a.encode(text);
  const y = b.encode(text);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

// ---- HF tokenizer.json -> GGUF ------------------------------------------------------------------------

// llama.cpp pre-tokenizer names tried for a byte-level BPE, most likely first; the one whose encoding
// of the check text matches the source tokenizer is written (llama.cpp's converter picks the name by a
// hash of such an encoding the same way).
const BYTE_LEVEL_PRES = [
  'smollm',
  'llama-bpe',
  'qwen2',
  'gpt-2',
  'default',
  'deepseek-v3',
  'gpt-4o',
  'tekken',
  'falcon',
  'dbrx',
];

function preComponents(pre: Json | undefined): JsonObj[] {
  if (!isObj(pre)) return [];
  if (pre.type === 'Sequence' && Array.isArray(pre.pretokenizers)) return pre.pretokenizers.filter(isObj);
  return [pre];
}

/** A first guess of llama.cpp's pre-tokenizer name from the structure of tokenizer.json's pre_tokenizer. */
function guessPre(pre: Json | undefined): string | null {
  const parts = preComponents(pre);
  const types = parts.map((p) => String(p.type));
  if (types.join() === 'Digits,ByteLevel' && parts[0].individual_digits === true) return 'smollm';
  if (types.join() === 'ByteLevel' && parts[0].use_regex !== false) return 'gpt-2';
  if (types.join() === 'Split,ByteLevel') {
    const pattern = parts[0].pattern;
    const regex = isObj(pattern) && typeof pattern.Regex === 'string' ? pattern.Regex : '';
    if (regex.includes('\\p{N}{1,3}')) return 'llama-bpe';
    if (regex.includes('\\p{N}|')) return 'qwen2';
  }
  return null;
}

export interface TokenizerMeta {
  kvs: GGUFKV[];
  /** Problems the caller should tell the user about (the export still went ahead). */
  warnings: string[];
}

function idsKVs(tok: Tokenizer, vocabSize: number): GGUFKV[] {
  const kvs: GGUFKV[] = [];
  const id = (key: string, v: number | null): void => {
    if (v !== null && v >= 0 && v < vocabSize)
      kvs.push({ key: `tokenizer.ggml.${key}`, type: 'u32', value: v });
  };
  id('bos_token_id', tok.bosId);
  id('eos_token_id', tok.eosId);
  // A second id that ends generation (generation_config may list several): llama.cpp's end-of-turn.
  const more = tok.eosIds.filter((e) => e !== tok.eosId);
  if (more.length > 0) id('eot_token_id', more[0]);
  id('unknown_token_id', tok.unkId);
  id('padding_token_id', tok.padId);
  const adds = addsSpecial(tok);
  kvs.push({ key: 'tokenizer.ggml.add_bos_token', type: 'bool', value: adds.bos });
  kvs.push({ key: 'tokenizer.ggml.add_eos_token', type: 'bool', value: adds.eos });
  if (tok.chatTemplate !== null)
    kvs.push({ key: 'tokenizer.chat_template', type: 'string', value: tok.chatTemplate });
  return kvs;
}

/**
 * tokenizer.ggml.* for a model folder's tokenizer.json: 'gpt2' (byte-level BPE, with merges and the
 * llama.cpp pre-tokenizer name that reproduces its splits) or 'llama' (sentencepiece-style BPE with ▁;
 * scores ranked by merge order, since llama.cpp merges by score). The vocabulary is padded with
 * [PADn] tokens to `vocabSize` (the embedding rows) as llama.cpp's converter does.
 */
export function ggufTokenizerFromHF(dir: string, tok: Tokenizer, vocabSize: number): TokenizerMeta {
  const path = join(dir, 'tokenizer.json');
  if (!existsSync(path)) throw new Error(`lorakit: ${dir} has no tokenizer.json to put into the GGUF file.`);
  const json = readJson(path);
  if (!isObj(json) || !isObj(json.model)) throw new Error(`lorakit: ${path}: has no "model".`);
  const model = json.model;
  if (model.type !== 'BPE' && !(model.type === undefined && model.merges !== undefined))
    throw new Error(
      `lorakit: ${path}: only BPE tokenizers can be written to GGUF, not '${String(model.type)}'.`,
    );
  if (!isObj(model.vocab)) throw new Error(`lorakit: ${path}: model.vocab must be an object.`);
  const merges: [string, string][] = (Array.isArray(model.merges) ? model.merges : []).map((m) => {
    if (typeof m === 'string') {
      const i = m.indexOf(' ', 1);
      return [m.slice(0, i), m.slice(i + 1)];
    }
    if (Array.isArray(m) && typeof m[0] === 'string' && typeof m[1] === 'string') return [m[0], m[1]];
    throw new Error(`lorakit: ${path}: merge ${JSON.stringify(m)} is not "a b".`);
  });
  const n = Math.max(vocabSize, tok.vocabSize);
  const tokens: string[] = new Array<string>(n);
  for (const [t, i] of Object.entries(model.vocab)) if (typeof i === 'number' && i < n) tokens[i] = t;
  const added = Array.isArray(json.added_tokens) ? json.added_tokens.filter(isObj) : [];
  const addedById = new Map<number, JsonObj>();
  for (const a of added)
    if (typeof a.id === 'number' && typeof a.content === 'string' && a.id < n) {
      tokens[a.id] = a.content;
      addedById.set(a.id, a);
    }
  const byteLevel =
    preComponents(json.pre_tokenizer).some((p) => p.type === 'ByteLevel') ||
    (isObj(json.decoder) && json.decoder.type === 'ByteLevel');
  // Special added tokens are CONTROL; only a sentencepiece vocabulary has an UNKNOWN token (a byte-level
  // one never needs it), as llama.cpp's converters write them.
  const types = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const a = addedById.get(i);
    const unk = !byteLevel && i === tok.unkId;
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = UNUSED;
    } else if (unk) types[i] = UNKNOWN;
    else if (a) types[i] = a.special === true ? CONTROL : USER_DEFINED;
    else if (model.byte_fallback === true && /^<0x[0-9A-F]{2}>$/.test(tokens[i])) types[i] = BYTE;
    else types[i] = NORMAL;
  }
  const common = idsKVs(tok, n);
  const warnings: string[] = [];
  if (byteLevel) {
    const base: GGUFKV[] = [
      { key: 'tokenizer.ggml.model', type: 'string', value: 'gpt2' },
      { key: 'tokenizer.ggml.tokens', type: 'array', elem: 'string', value: tokens },
      { key: 'tokenizer.ggml.token_type', type: 'array', elem: 'i32', value: types },
      {
        key: 'tokenizer.ggml.merges',
        type: 'array',
        elem: 'string',
        value: merges.map(([a, b]) => `${a} ${b}`),
      },
    ];
    const guess = guessPre(json.pre_tokenizer);
    const order = guess ? [guess, ...BYTE_LEVEL_PRES.filter((p) => p !== guess)] : BYTE_LEVEL_PRES;
    for (const pre of order) {
      const preKV: GGUFKV = { key: 'tokenizer.ggml.pre', type: 'string', value: pre };
      const kvs = [...base, preKV, ...common];
      let ok = false;
      try {
        ok = sameEncoding(Tokenizer.fromGGUF(metadataOf(kvs)), tok);
      } catch {
        ok = false;
      }
      if (ok) return { kvs, warnings };
    }
    warnings.push(
      `no llama.cpp pre-tokenizer reproduces ${path} exactly; wrote '${guess ?? 'default'}', so llama.cpp may split some text differently.`,
    );
    return {
      kvs: [...base, { key: 'tokenizer.ggml.pre', type: 'string', value: guess ?? 'default' }, ...common],
      warnings,
    };
  }
  // Sentencepiece style: a token made by merge k scores −k (earlier merges win, as in llama.cpp's
  // score-ordered merging); single characters score 0; other multi-character tokens never come from a
  // merge and score lowest.
  const scores = new Float32Array(n);
  for (let i = 0; i < n; i++) scores[i] = [...tokens[i]].length <= 1 ? 0 : -1e6;
  const vocab = new Map<string, number>();
  tokens.forEach((t, i) => vocab.set(t, i));
  merges.forEach(([a, b], k) => {
    const id = vocab.get(a + b);
    if (id !== undefined && scores[id] === -1e6) scores[id] = -(k + 1);
  });
  for (let i = 0; i < n; i++) if (types[i] !== NORMAL) scores[i] = types[i] === UNUSED ? -1e6 : 0;
  const prepends =
    isObj(json.normalizer) ||
    preComponents(json.pre_tokenizer).some((p) => p.type === 'Metaspace' && p.prepend_scheme !== 'never');
  const kvs: GGUFKV[] = [
    { key: 'tokenizer.ggml.model', type: 'string', value: 'llama' },
    { key: 'tokenizer.ggml.pre', type: 'string', value: 'default' },
    { key: 'tokenizer.ggml.tokens', type: 'array', elem: 'string', value: tokens },
    { key: 'tokenizer.ggml.scores', type: 'array', elem: 'f32', value: scores },
    { key: 'tokenizer.ggml.token_type', type: 'array', elem: 'i32', value: types },
    { key: 'tokenizer.ggml.add_space_prefix', type: 'bool', value: prepends },
    ...common,
  ];
  let ok = false;
  try {
    ok = sameEncoding(Tokenizer.fromGGUF(metadataOf(kvs)), tok);
  } catch {
    ok = false;
  }
  if (!ok)
    warnings.push(
      `the sentencepiece-style vocabulary written from ${path} does not split the check text exactly as tokenizer.json does.`,
    );
  if (!vocab.has('<0x0A>') && !vocab.has('\n'))
    warnings.push(
      `${path} has neither a <0x0A> nor a newline token, which llama.cpp requires of a sentencepiece vocabulary: llama.cpp will not load this file.`,
    );
  return { kvs, warnings };
}

/** The metadata record GGUF readers see for a list of KVs (to load the result back for checks). */
export function metadataOf(kvs: readonly GGUFKV[]): Record<string, GGUFValue> {
  const out: Record<string, GGUFValue> = {};
  for (const kv of kvs) {
    if (kv.type !== 'array') out[kv.key] = kv.value;
    else if (kv.elem === 'string' || kv.elem === 'bool') out[kv.key] = [...kv.value];
    else out[kv.key] = Array.from(kv.value);
  }
  return out;
}

// ---- GGUF -> GGUF (pass-through) ----------------------------------------------------------------------

const ARRAY_ELEM: Record<string, 'string' | 'i32' | 'f32' | 'u32'> = {
  'tokenizer.ggml.tokens': 'string',
  'tokenizer.ggml.merges': 'string',
  'tokenizer.ggml.token_type': 'i32',
  'tokenizer.ggml.scores': 'f32',
};

const SCALAR = {
  uint8: 'u8',
  int8: 'i8',
  uint16: 'u16',
  int16: 'i16',
  uint32: 'u32',
  int32: 'i32',
  float32: 'f32',
  float64: 'f64',
} as const;

/** The tokenizer.* metadata of a source GGUF file, with its stored types, for writing into another. */
export function ggufTokenizerFromGGUF(f: GGUFFile): GGUFKV[] {
  const out: GGUFKV[] = [];
  for (const [key, value] of Object.entries(f.metadata)) {
    if (!key.startsWith('tokenizer.')) continue;
    const type = f.metadataTypes[key];
    if (type === 'array') {
      if (!Array.isArray(value)) continue;
      const strings = value.every((v) => typeof v === 'string');
      const elem =
        ARRAY_ELEM[key] ??
        (strings
          ? 'string'
          : value.every((v) => typeof v === 'number' && Number.isInteger(v))
            ? 'i32'
            : 'f32');
      if (elem === 'string') out.push({ key, type: 'array', elem, value: value.map(String) });
      else out.push({ key, type: 'array', elem, value: value.map(Number) });
    } else if (type === 'string') out.push({ key, type, value: String(value) });
    else if (type === 'bool') out.push({ key, type, value: value === true });
    else if (type === 'uint64' || type === 'int64') {
      if (typeof value === 'number' || typeof value === 'bigint')
        out.push({ key, type: type === 'uint64' ? 'u64' : 'i64', value });
    } else if (type !== undefined && typeof value === 'number') out.push({ key, type: SCALAR[type], value });
  }
  return out;
}

// ---- GGUF -> HF tokenizer files -------------------------------------------------------------------------

const PRE_REGEXES: Record<string, string[]> = {
  smollm: ['\\p{N}', "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"],
  'gpt-2': ["'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"],
  'llama-bpe': [
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  ],
  qwen2: [
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  ],
};
PRE_REGEXES.llama3 = PRE_REGEXES['llama-v3'] = PRE_REGEXES['llama-bpe'];
PRE_REGEXES.starcoder = PRE_REGEXES.smollm;

function specialTokens(meta: Readonly<Record<string, GGUFValue>>, tokens: string[]): TokenizerConfig {
  const id = (k: string): string | null => {
    const v = meta[`tokenizer.ggml.${k}`];
    const n = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : null;
    return n !== null && n >= 0 && n < tokens.length ? tokens[n] : null;
  };
  const out: TokenizerConfig = {};
  const bos = id('bos_token_id');
  const eos = id('eos_token_id');
  const unk = id('unknown_token_id');
  const pad = id('padding_token_id');
  if (bos !== null) out.bos_token = bos;
  if (eos !== null) out.eos_token = eos;
  if (unk !== null) out.unk_token = unk;
  if (pad !== null) out.pad_token = pad;
  return out;
}

/**
 * tokenizer.json and tokenizer_config.json (Hugging Face) equivalent to a GGUF file's tokenizer, for
 * a merged model written from a GGUF base. The result is checked against `tok` (the GGUF's tokenizer
 * as lorakit reads it) on the check text; a mismatch throws.
 */
export function hfTokenizerFromGGUF(
  meta: Readonly<Record<string, GGUFValue>>,
  tok: Tokenizer,
): { tokenizer: JsonObj; config: JsonObj } {
  const kind = meta['tokenizer.ggml.model'];
  const tokensV = meta['tokenizer.ggml.tokens'];
  if (!Array.isArray(tokensV) || !tokensV.every((t): t is string => typeof t === 'string'))
    throw new Error('lorakit: the GGUF file has no tokenizer.ggml.tokens to write tokenizer.json from.');
  const tokens = tokensV;
  const typesV = meta['tokenizer.ggml.token_type'];
  const types = Array.isArray(typesV) ? typesV.map(Number) : [];
  const vocab: JsonObj = {};
  tokens.forEach((t, i) => {
    if (!(t in vocab)) vocab[t] = i;
  });
  const added: Json[] = [];
  tokens.forEach((t, i) => {
    const ty = types[i];
    if (ty === CONTROL || ty === UNKNOWN || ty === USER_DEFINED)
      added.push({
        id: i,
        content: t,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: ty === USER_DEFINED,
        special: ty !== USER_DEFINED,
      });
  });
  const adds = addsSpecial(tok);
  const single: Json[] = [];
  const special: JsonObj = {};
  if (adds.bos && tok.bosId !== null) {
    single.push({ SpecialToken: { id: tokens[tok.bosId], type_id: 0 } });
    special[tokens[tok.bosId]] = { id: tokens[tok.bosId], ids: [tok.bosId], tokens: [tokens[tok.bosId]] };
  }
  single.push({ Sequence: { id: 'A', type_id: 0 } });
  if (adds.eos && tok.eosId !== null) {
    single.push({ SpecialToken: { id: tokens[tok.eosId], type_id: 0 } });
    special[tokens[tok.eosId]] = { id: tokens[tok.eosId], ids: [tok.eosId], tokens: [tokens[tok.eosId]] };
  }
  const postProcessor: Json = {
    type: 'TemplateProcessing',
    single,
    pair: [...single, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: special,
  };
  let tokenizer: JsonObj;
  if (kind === 'gpt2') {
    const pre =
      typeof meta['tokenizer.ggml.pre'] === 'string' && meta['tokenizer.ggml.pre'] !== ''
        ? meta['tokenizer.ggml.pre']
        : 'default';
    const regexes = PRE_REGEXES[pre];
    if (!regexes)
      throw new Error(
        `lorakit: cannot write a tokenizer.json for the GGUF pre-tokenizer '${pre}' (supported: ${Object.keys(PRE_REGEXES).join(', ')}).`,
      );
    const mergesV = meta['tokenizer.ggml.merges'];
    const merges = Array.isArray(mergesV) ? mergesV.map(String) : [];
    tokenizer = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [
          ...regexes.map((r): Json => ({
            type: 'Split',
            pattern: { Regex: r },
            behavior: 'Isolated',
            invert: false,
          })),
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
        ],
      },
      post_processor: postProcessor,
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: pre === 'llama-bpe' || pre === 'llama3' || pre === 'llama-v3',
        vocab,
        merges: merges.map((m) => {
          const i = m.indexOf(' ', 1);
          return [m.slice(0, i), m.slice(i + 1)];
        }),
      },
    };
  } else if (kind === 'llama') {
    // Sentencepiece BPE: merges are every pair whose concatenation is a token, ordered by its score.
    const scoresV = meta['tokenizer.ggml.scores'];
    const scores = Array.isArray(scoresV) ? scoresV.map(Number) : [];
    const merges: [string, string, number, number][] = [];
    tokens.forEach((t, id) => {
      if ((types[id] ?? NORMAL) !== NORMAL) return;
      const chars = [...t];
      for (let k = 1; k < chars.length; k++) {
        const a = chars.slice(0, k).join('');
        const b = chars.slice(k).join('');
        const ia = vocab[a];
        const ib = vocab[b];
        if (typeof ia === 'number' && typeof ib === 'number') merges.push([a, b, scores[id] ?? 0, id]);
      }
    });
    merges.sort((x, y) => y[2] - x[2] || x[3] - y[3]);
    const prefix = meta['tokenizer.ggml.add_space_prefix'] !== false;
    tokenizer = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: {
        type: 'Sequence',
        normalizers: [
          ...(prefix ? [{ type: 'Prepend', prepend: '▁' }] : []),
          { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
        ],
      },
      pre_tokenizer: null,
      post_processor: postProcessor,
      decoder: sentencepieceDecoder(prefix),
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: tok.unkId !== null ? tokens[tok.unkId] : null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: true,
        byte_fallback: true,
        ignore_merges: false,
        vocab,
        merges: merges.map(([a, b]) => [a, b]),
      },
    };
  } else
    throw new Error(`lorakit: cannot write a tokenizer.json for GGUF tokenizer model '${String(kind)}'.`);
  const names = specialTokens(meta, tokens);
  const config: JsonObj = {
    ...Object.fromEntries(
      Object.entries(names).filter((e): e is [string, string] => typeof e[1] === 'string'),
    ),
    add_bos_token: adds.bos,
    add_eos_token: adds.eos,
    clean_up_tokenization_spaces: false,
    model_max_length: 1_000_000,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
  if (tok.chatTemplate !== null) config.chat_template = tok.chatTemplate;
  const check = Tokenizer.fromJSON(tokenizer, { ...names, add_bos_token: adds.bos, add_eos_token: adds.eos });
  if (!sameEncoding(check, tok))
    throw new Error(
      'lorakit: the tokenizer.json written from the GGUF metadata would split text differently from the GGUF tokenizer; refusing to write it.',
    );
  return { tokenizer, config };
}
