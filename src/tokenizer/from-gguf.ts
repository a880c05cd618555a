// Tokenizers from GGUF metadata (tokenizer.ggml.*). Two vocabulary kinds:
// - 'gpt2': byte-level BPE with merges. The pre-tokenizer comes from tokenizer.ggml.pre, as llama.cpp
//   maps it (e.g. 'smollm' splits digits one by one, 'llama-bpe' uses the Llama-3 regex), so ids match
//   the model's own tokenizer.json and llama.cpp.
// - 'llama': sentencepiece BPE (scores, <0xNN> byte fallback), with the legacy HF Llama pipeline
//   (prepend ▁ to each piece, spaces → ▁), as llama.cpp and transformers both do.
// Option compat: 'transformers' reproduces transformers' GGUF conversion instead (AutoTokenizer with
// gguf_file), which ignores tokenizer.ggml.pre: plain GPT-2 regex, byte fallback on.
import type { AddedToken } from './added-tokens.js';
import { BpeModel } from './bpe.js';
import { buildDecoder } from './decoders.js';
import type { Json, Source } from './json.js';
import { buildNormalizer, normalizerKeepsBytes } from './normalizers.js';
import { buildPostProcessor } from './post-processors.js';
import { buildPreTokenizer, GPT2_PATTERN, preTokenizerKeepsBytes } from './pre-tokenizers.js';
import type { TokenizerParts } from './tokenizer.js';

/** A GGUF metadata value as read from the file. */
export type GGUFValue = number | bigint | string | boolean | GGUFValue[];

export interface FromGGUFOptions {
  /**
   * 'llama.cpp' (default): the pre-tokenizer named by tokenizer.ggml.pre, as the model was trained.
   * 'transformers': exactly what transformers' GGUF loader builds (llama-architecture files only).
   */
  compat?: 'llama.cpp' | 'transformers';
}

const SRC: Source = { file: 'GGUF metadata' };

// GGUF token types (llama.cpp llama_token_type).
const TYPE_UNKNOWN = 2;
const TYPE_CONTROL = 3;
const TYPE_USER_DEFINED = 4;

const LLAMA3 =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2 =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const GPT2_NO_TAIL = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const DEEPSEEK3 = [
  '\\p{N}{1,3}',
  '[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+',
  '[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+',
];
const TEKKEN =
  '[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+';
const GPT4O =
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

interface PreSpec {
  /** Regexes applied in turn, each isolating its matches (llama.cpp's regex_exprs). */
  regexes: string[];
  ignoreMerges?: boolean;
  addBos?: boolean;
}

/** tokenizer.ggml.pre → the pre-tokenizer regexes llama.cpp (and the model's tokenizer.json) use. */
function preSpec(pre: string): PreSpec | null {
  switch (pre) {
    case 'default':
      return { regexes: ['[\\p{P}\\$\\+<=>\\^~\\|]+', GPT2_NO_TAIL, '\\p{N}+', '[0-9][0-9][0-9]'] };
    case 'llama3':
    case 'llama-v3':
    case 'llama-bpe':
    case 'falcon3':
    case 'falcon-h1':
    case 'pixtral':
    case 'midm-2.0':
    case 'lfm2':
      return { regexes: [LLAMA3], ignoreMerges: true, addBos: true };
    case 'dbrx':
    case 'smaug-bpe':
    case 'chatglm-bpe':
      return { regexes: [LLAMA3] };
    case 'gpt-2':
    case 'phi-2':
    case 'mpt':
    case 'olmo':
    case 'jais':
    case 'roberta-bpe':
    case 'trillion':
    case 'granite-docling':
    case 'gigachat':
    case 'jina-es':
    case 'jina-de':
    case 'jina-v1-en':
    case 'jina-v2-es':
    case 'jina-v2-de':
    case 'jina-v2-code':
    case 'a.x-4.0':
    case 'mellum':
      return { regexes: [GPT2_PATTERN] };
    case 'smollm':
    case 'starcoder':
    case 'refact':
    case 'command-r':
    case 'codeshell':
    case 'exaone':
    case 'minerva-7b':
      return { regexes: ['\\p{N}', GPT2_PATTERN] };
    case 'qwen2':
    case 'deepseek-r1-qwen':
    case 'megrez':
    case 'stablelm2':
    case 'hunyuan':
    case 'grok-2':
      return { regexes: [QWEN2] };
    case 'deepseek-v3':
    case 'hunyuan-dense':
      return { regexes: DEEPSEEK3 };
    case 'tekken':
      return { regexes: [TEKKEN], ignoreMerges: true, addBos: true };
    case 'gpt-4o':
    case 'llama4':
    case 'minimax-m2':
      return { regexes: [GPT4O] };
    case 'falcon':
      return { regexes: ['[\\p{P}\\$\\+<=>\\^~\\|`]+', GPT2_NO_TAIL, '[0-9][0-9][0-9]'] };
    default:
      return null;
  }
}

function get(meta: Readonly<Record<string, GGUFValue>>, key: string): GGUFValue | undefined {
  return meta[key];
}

function asNumber(v: GGUFValue | undefined): number | null {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return null;
}

function asBool(v: GGUFValue | undefined): boolean | null {
  return typeof v === 'boolean' ? v : null;
}

function asStrings(v: GGUFValue | undefined, key: string): string[] {
  if (!Array.isArray(v) || !v.every((x): x is string => typeof x === 'string'))
    throw new Error(`lorakit: GGUF metadata key ${key} must be a list of strings.`);
  return v;
}

function asNumbers(v: GGUFValue | undefined, key: string): number[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new Error(`lorakit: GGUF metadata key ${key} must be a list of numbers.`);
  return v.map((x) => {
    const n = asNumber(x);
    if (n === null) throw new Error(`lorakit: GGUF metadata key ${key} must be a list of numbers.`);
    return n;
  });
}

function splitPreTokenizer(regexes: string[]): Json {
  return {
    type: 'Sequence',
    pretokenizers: [
      ...regexes.map((r) => ({ type: 'Split', pattern: { Regex: r }, behavior: 'Isolated', invert: false })),
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    ],
  };
}

function templateWith(bos: number | null, eos: number | null, addBos: boolean, addEos: boolean): Json {
  const single: Json[] = [];
  const special: { [k: string]: Json } = {};
  if (addBos && bos !== null) {
    single.push({ SpecialToken: { id: 'BOS', type_id: 0 } });
    special.BOS = { id: 'BOS', ids: [bos], tokens: ['BOS'] };
  }
  single.push({ Sequence: { id: 'A', type_id: 0 } });
  if (addEos && eos !== null) {
    single.push({ SpecialToken: { id: 'EOS', type_id: 0 } });
    special.EOS = { id: 'EOS', ids: [eos], tokens: ['EOS'] };
  }
  return { type: 'TemplateProcessing', single, pair: [], special_tokens: special };
}

export function tokenizerFromGGUF(
  meta: Readonly<Record<string, GGUFValue>>,
  opts: FromGGUFOptions = {},
): TokenizerParts {
  const compat = opts.compat ?? 'llama.cpp';
  const kind = get(meta, 'tokenizer.ggml.model');
  if (typeof kind !== 'string')
    throw new Error('lorakit: GGUF metadata has no tokenizer (tokenizer.ggml.model is missing).');
  if (kind !== 'gpt2' && kind !== 'llama')
    throw new Error(
      `lorakit: unsupported tokenizer component GGUF tokenizer model '${kind}' in GGUF metadata`,
    );
  const tokens = asStrings(get(meta, 'tokenizer.ggml.tokens'), 'tokenizer.ggml.tokens');
  const types = asNumbers(get(meta, 'tokenizer.ggml.token_type'), 'tokenizer.ggml.token_type');
  const idKey = (k: string): number | null => {
    const n = asNumber(get(meta, `tokenizer.ggml.${k}`));
    return n !== null && n >= 0 && n < tokens.length ? n : null;
  };
  const bos = idKey('bos_token_id');
  const eos = idKey('eos_token_id');
  const unk = idKey('unknown_token_id') ?? idKey('unk_token_id');
  const pad = idKey('padding_token_id');
  const eot = idKey('eot_token_id');
  const eom = idKey('eom_token_id');
  const addSpacePrefix = asBool(get(meta, 'tokenizer.ggml.add_space_prefix'));
  const addBosKey = asBool(get(meta, 'tokenizer.ggml.add_bos_token'));
  const addEos = asBool(get(meta, 'tokenizer.ggml.add_eos_token')) ?? false;
  const template = get(meta, 'tokenizer.chat_template');

  const vocab = new Map<string, number>();
  tokens.forEach((t, i) => vocab.set(t, i));

  // Control and unknown tokens are special (llama.cpp matches both in text; HF marks <unk> special);
  // user-defined ones are plain added tokens. transformers' GGUF loader adds control tokens only.
  const added: AddedToken[] = [];
  tokens.forEach((t, i) => {
    const ty = types[i];
    const special = ty === TYPE_CONTROL || (ty === TYPE_UNKNOWN && compat !== 'transformers');
    if (special || ty === TYPE_USER_DEFINED)
      added.push({
        id: i,
        content: t,
        special,
        lstrip: false,
        rstrip: false,
        singleWord: false,
        normalized: false,
      });
  });

  let model: BpeModel;
  let normalizer: Json = null;
  let preTokenizer: Json = null;
  let decoder: Json;
  let addBos: boolean;
  if (kind === 'llama') {
    const scores = asNumbers(get(meta, 'tokenizer.ggml.scores'), 'tokenizer.ggml.scores');
    if (scores.length !== tokens.length)
      throw new Error('lorakit: GGUF metadata tokenizer.ggml.scores must have one score per token.');
    const prefix = addSpacePrefix ?? true;
    model = new BpeModel({
      vocab,
      scores,
      unkToken: unk !== null ? tokens[unk] : null,
      fuseUnk: true,
      byteFallback: true,
      ignoreMerges: false,
      continuingSubwordPrefix: null,
      endOfWordSuffix: null,
      file: SRC.file,
    });
    normalizer = {
      type: 'Sequence',
      normalizers: [
        ...(prefix ? [{ type: 'Prepend', prepend: '▁' }] : []),
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      ],
    };
    decoder = sentencepieceDecoder(prefix);
    addBos = addBosKey ?? true;
  } else {
    const merges: [string, string][] = asStrings(
      get(meta, 'tokenizer.ggml.merges'),
      'tokenizer.ggml.merges',
    ).map((m) => {
      const i = m.indexOf(' ', 1);
      if (i < 0) throw new Error(`lorakit: GGUF merge ${JSON.stringify(m)} is not "a b".`);
      return [m.slice(0, i), m.slice(i + 1)];
    });
    if (compat === 'transformers') {
      const arch = get(meta, 'general.architecture');
      if (arch !== 'llama' && arch !== 'deci' && arch !== 'decilm')
        throw new Error(
          `lorakit: compat 'transformers' reproduces transformers' GGUF tokenizer for llama-architecture files only, not '${String(arch)}'.`,
        );
      model = new BpeModel({
        vocab,
        merges,
        unkToken: unk !== null ? tokens[unk] : null,
        fuseUnk: true,
        byteFallback: true,
        ignoreMerges: false,
        continuingSubwordPrefix: null,
        endOfWordSuffix: null,
        file: SRC.file,
      });
      preTokenizer = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true };
      decoder = {
        type: 'Sequence',
        decoders: [
          { type: 'ByteFallback' },
          { type: 'Fuse' },
          { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
          ...((addSpacePrefix ?? true) ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
        ],
      };
      addBos = addBosKey ?? true;
    } else {
      const preValue = get(meta, 'tokenizer.ggml.pre');
      const pre = typeof preValue === 'string' && preValue !== '' ? preValue : 'default';
      const spec = preSpec(pre);
      if (spec === null)
        throw new Error(
          `lorakit: unsupported tokenizer component GGUF pre-tokenizer '${pre}' in GGUF metadata`,
        );
      model = new BpeModel({
        vocab,
        merges,
        unkToken: null,
        fuseUnk: false,
        byteFallback: false,
        ignoreMerges: spec.ignoreMerges ?? false,
        continuingSubwordPrefix: null,
        endOfWordSuffix: null,
        file: SRC.file,
      });
      preTokenizer = splitPreTokenizer(spec.regexes);
      decoder = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
      addBos = addBosKey ?? spec.addBos ?? false;
    }
  }

  const eosIds = [eos, eot, eom].filter((x, i, a): x is number => x !== null && a.indexOf(x) === i);
  return {
    model,
    added,
    normalizer: buildNormalizer(normalizer, SRC),
    preTokenizer: buildPreTokenizer(preTokenizer, SRC),
    postProcessor: buildPostProcessor(templateWith(bos, eos, addBos, addEos), SRC),
    decoder: buildDecoder(decoder, SRC),
    bosId: bos,
    eosIds,
    padId: pad,
    unkId: unk,
    chatTemplate: typeof template === 'string' ? template : null,
    addBosToken: addBos,
    addEosToken: addEos,
    keepsBytes: normalizerKeepsBytes(normalizer) && preTokenizerKeepsBytes(preTokenizer),
  };
}

/**
 * tokenizer.json's decoder for a sentencepiece (llama) vocabulary: '▁' to spaces, byte tokens to
 * bytes, and the prefix space the encoder added stripped again.
 */
export function sentencepieceDecoder(prefix: boolean): Json {
  return {
    type: 'Sequence',
    decoders: [
      { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
      { type: 'ByteFallback' },
      { type: 'Fuse' },
      ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
    ],
  };
}
