// The tokenizer: HF tokenizers' pipeline (added tokens → normalizer → pre-tokenizer → BPE model →
// post-processor; decoder for the way back), loaded from tokenizer.json (+ tokenizer_config.json,
// generation_config.json) or from GGUF metadata. Pure TypeScript, ids identical to `tokenizers`.
import { AddedVocabulary, type AddedToken } from './added-tokens.js';
import { BpeModel } from './bpe.js';
import { renderChat, type ChatMessage, type RenderChatOptions } from './chat-template.js';
import { buildDecoder, type Decoder } from './decoders.js';
import { readTokenizerFolder, type TokenizerFolder } from './folder.js';
import {
  bool,
  isObject,
  type Json,
  type JsonObject,
  malformed,
  objects,
  parseJSONText,
  type Source,
  unsupported,
} from './json.js';
import { buildNormalizer, normalizerKeepsBytes, type Normalizer } from './normalizers.js';
import { buildPostProcessor, type PostProcessor } from './post-processors.js';
import {
  buildPreTokenizer,
  preTokenizerKeepsBytes,
  type Piece,
  type PreTokenizer,
} from './pre-tokenizers.js';
import { tokenizerFromGGUF, type FromGGUFOptions, type GGUFValue } from './from-gguf.js';

export interface EncodeOptions {
  /** Add what the post-processor adds (BOS etc.), as tokenizers' add_special_tokens. Default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out special added tokens. Default false. */
  skipSpecialTokens?: boolean;
}

/** The fields of tokenizer_config.json (and generation_config.json) that matter here. */
export interface TokenizerConfig {
  chat_template?: string | { name: string; template: string }[] | null;
  bos_token?: string | { content: string } | null;
  eos_token?: string | { content: string } | null;
  pad_token?: string | { content: string } | null;
  unk_token?: string | { content: string } | null;
  add_bos_token?: boolean;
  add_eos_token?: boolean;
  /** From generation_config.json: one id or several (any of them ends generation). */
  eos_token_id?: number | number[] | null;
  bos_token_id?: number | null;
  pad_token_id?: number | null;
}

/**
 * The texts of a tokenizer's files, by file name, as a model folder holds them: what a browser has
 * (a File's or a fetch's text) where Node reads the folder.
 */
export interface TokenizerFiles {
  'tokenizer.json': string;
  'tokenizer_config.json'?: string;
  'generation_config.json'?: string;
  'chat_template.jinja'?: string;
}

/** The assembled pipeline; fromJSON and fromGGUF both build one. */
export interface TokenizerParts {
  model: BpeModel;
  added: AddedToken[];
  normalizer: Normalizer | null;
  preTokenizer: PreTokenizer | null;
  postProcessor: PostProcessor | null;
  decoder: Decoder | null;
  bosId: number | null;
  eosIds: number[];
  padId: number | null;
  unkId: number | null;
  chatTemplate: string | null;
  addBosToken: boolean;
  addEosToken: boolean;
  /** The normalizer and pre-tokenizer never drop or shorten text (what maxTokenBytes relies on). */
  keepsBytes?: boolean;
}

function tokenContent(v: TokenizerConfig['bos_token']): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof v.content === 'string') return v.content;
  return null;
}

function toConfig(json: Json): TokenizerConfig {
  return isObject(json) ? (json as TokenizerConfig) : {};
}

function buildModel(json: Json | undefined, src: Source): BpeModel {
  if (!isObject(json)) throw malformed('it has no "model"', src);
  const type = json.type ?? (json.merges !== undefined ? 'BPE' : undefined);
  if (type !== 'BPE') throw unsupported(typeof type === 'string' ? type : 'model without a type', src);
  if (typeof json.dropout === 'number' && json.dropout > 0) throw unsupported('BPE dropout', src);
  const vocabJson = json.vocab;
  if (!isObject(vocabJson)) throw malformed('model.vocab must be an object', src);
  const vocab = new Map<string, number>();
  for (const [tok, id] of Object.entries(vocabJson)) {
    if (typeof id !== 'number') throw malformed(`vocab id of ${JSON.stringify(tok)} is not a number`, src);
    vocab.set(tok, id);
  }
  const mergesJson = json.merges ?? [];
  if (!Array.isArray(mergesJson)) throw malformed('model.merges must be a list', src);
  const merges: [string, string][] = mergesJson.map((m) => {
    if (typeof m === 'string') {
      const parts = m.split(' ');
      if (parts.length !== 2) throw malformed(`merge ${JSON.stringify(m)} is not "a b"`, src);
      return [parts[0], parts[1]];
    }
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string')
      return [m[0], m[1]];
    throw malformed(`merge ${JSON.stringify(m)} is not "a b" or ["a", "b"]`, src);
  });
  const optStr = (k: string): string | null => (typeof json[k] === 'string' ? (json[k] as string) : null);
  return new BpeModel({
    vocab,
    merges,
    unkToken: optStr('unk_token'),
    fuseUnk: bool(json, 'fuse_unk', false),
    byteFallback: bool(json, 'byte_fallback', false),
    ignoreMerges: bool(json, 'ignore_merges', false),
    continuingSubwordPrefix: optStr('continuing_subword_prefix') || null,
    endOfWordSuffix: optStr('end_of_word_suffix') || null,
    file: src.file,
  });
}

function parseAddedTokens(json: Json | undefined, src: Source): AddedToken[] {
  if (json === undefined || json === null) return [];
  if (!Array.isArray(json)) throw malformed('"added_tokens" must be a list', src);
  return objects(json, 'added_tokens', src).map((t: JsonObject) => {
    if (typeof t.id !== 'number' || typeof t.content !== 'string')
      throw malformed('an added token lacks id or content', src);
    return {
      id: t.id,
      content: t.content,
      special: bool(t, 'special', false),
      lstrip: bool(t, 'lstrip', false),
      rstrip: bool(t, 'rstrip', false),
      singleWord: bool(t, 'single_word', false),
      normalized: bool(t, 'normalized', !bool(t, 'special', false)),
    };
  });
}

/**
 * A tokenizer from a folder's files: tokenizer_config.json's settings, generation_config.json's
 * stop, start and padding ids, and chat_template.jinja where the config has no template.
 */
function fromFolder(f: TokenizerFolder): Tokenizer {
  const config: TokenizerConfig = f.config !== undefined ? toConfig(f.config) : {};
  if (f.generation !== undefined) {
    const gen = toConfig(f.generation);
    if (gen.eos_token_id !== undefined) config.eos_token_id = gen.eos_token_id;
    if (gen.bos_token_id !== undefined && config.bos_token_id === undefined)
      config.bos_token_id = gen.bos_token_id;
    if (gen.pad_token_id !== undefined && config.pad_token_id === undefined)
      config.pad_token_id = gen.pad_token_id;
  }
  if (config.chat_template == null && f.chatTemplate !== undefined) config.chat_template = f.chatTemplate;
  return Tokenizer.fromJSON(f.tokenizer, config, f.path);
}

export class Tokenizer {
  private readonly model: BpeModel;
  private readonly added: AddedVocabulary;
  private readonly normalizer: Normalizer | null;
  private readonly preTokenizer: PreTokenizer | null;
  private readonly postProcessor: PostProcessor | null;
  private readonly decoder: Decoder | null;
  private readonly specialContents: Set<string>;
  /** Number of ids: one past the largest id of the model vocabulary and the added tokens. */
  readonly vocabSize: number;
  readonly bosId: number | null;
  /** The first end-of-sequence id (eosIds[0]), or null. */
  readonly eosId: number | null;
  /** Every id that ends generation (generation_config may list several). */
  readonly eosIds: number[];
  readonly padId: number | null;
  readonly unkId: number | null;
  readonly chatTemplate: string | null;
  /** tokenizer_config's add_bos_token / GGUF add_bos_token (what the post-processor does). */
  readonly addBosToken: boolean;
  readonly addEosToken: boolean;
  private readonly addedTokens: readonly AddedToken[];
  private readonly keepsBytes: boolean;
  private tokenBytes: number | null | undefined;

  constructor(parts: TokenizerParts) {
    this.addedTokens = parts.added;
    this.keepsBytes = parts.keepsBytes ?? false;
    this.model = parts.model;
    this.added = new AddedVocabulary(parts.added, parts.normalizer);
    this.normalizer = parts.normalizer;
    this.preTokenizer = parts.preTokenizer;
    this.postProcessor = parts.postProcessor;
    this.decoder = parts.decoder;
    this.specialContents = new Set(parts.added.filter((t) => t.special).map((t) => t.content));
    let size = 0;
    for (let i = this.model.vocabR.length - 1; i >= 0; i--)
      if (this.model.vocabR[i] !== undefined) {
        size = i + 1;
        break;
      }
    for (const t of parts.added) size = Math.max(size, t.id + 1);
    this.vocabSize = size;
    this.bosId = parts.bosId;
    this.eosIds = parts.eosIds;
    this.eosId = parts.eosIds.length > 0 ? parts.eosIds[0] : null;
    this.padId = parts.padId;
    this.unkId = parts.unkId;
    this.chatTemplate = parts.chatTemplate;
    this.addBosToken = parts.addBosToken;
    this.addEosToken = parts.addEosToken;
  }

  /**
   * Loads tokenizer.json, plus tokenizer_config.json, generation_config.json and chat_template.jinja
   * from the same folder when present (Node: it reads files by path).
   */
  static fromFile(path: string): Tokenizer {
    return fromFolder(readTokenizerFolder(path));
  }

  /**
   * fromFile for files already in memory (a browser): their texts by file name; `dir` names the
   * folder in messages.
   */
  static fromFiles(files: TokenizerFiles, dir?: string): Tokenizer {
    const where = (name: string): string => (dir ? `${dir}/${name}` : name);
    const json = (name: keyof TokenizerFiles): Json | undefined => {
      const text = files[name];
      return text === undefined ? undefined : parseJSONText(text, where(name));
    };
    const tokenizer = json('tokenizer.json');
    if (tokenizer === undefined) throw new Error(`lorakit: ${where('tokenizer.json')} is missing.`);
    return fromFolder({
      path: where('tokenizer.json'),
      tokenizer,
      config: json('tokenizer_config.json'),
      generation: json('generation_config.json'),
      chatTemplate: files['chat_template.jinja'],
    });
  }

  /** Builds a tokenizer from parsed (or text) tokenizer.json and an optional tokenizer_config. */
  static fromJSON(json: Json | string, config: TokenizerConfig = {}, file = 'tokenizer.json'): Tokenizer {
    const src: Source = { file };
    let root: Json;
    try {
      root = typeof json === 'string' ? (JSON.parse(json) as Json) : json;
    } catch (e) {
      throw new Error(`lorakit: ${file} is not valid JSON (${e instanceof Error ? e.message : String(e)}).`);
    }
    if (!isObject(root)) throw malformed('the top level must be an object', src);
    const model = buildModel(root.model, src);
    const added = parseAddedTokens(root.added_tokens, src);
    const normalizer = buildNormalizer(root.normalizer, src);
    const preTokenizer = buildPreTokenizer(root.pre_tokenizer, src);
    const keepsBytes = normalizerKeepsBytes(root.normalizer) && preTokenizerKeepsBytes(root.pre_tokenizer);
    const postProcessor = buildPostProcessor(root.post_processor, src);
    const decoder = buildDecoder(root.decoder, src);

    const idOf = (content: string | null): number | null => {
      if (content === null) return null;
      const a = added.find((t) => t.content === content);
      if (a) return a.id;
      return model.vocab.get(content) ?? null;
    };
    const bosId = idOf(tokenContent(config.bos_token)) ?? config.bos_token_id ?? null;
    const eosFromTok = idOf(tokenContent(config.eos_token));
    const eosIds: number[] = [];
    const cfgEos = config.eos_token_id;
    if (Array.isArray(cfgEos)) eosIds.push(...cfgEos);
    else if (typeof cfgEos === 'number') eosIds.push(cfgEos);
    if (eosFromTok !== null && !eosIds.includes(eosFromTok)) {
      // tokenizer_config's eos comes first; generation_config may add more stop ids.
      eosIds.unshift(eosFromTok);
    }
    let chatTemplate: string | null = null;
    if (typeof config.chat_template === 'string') chatTemplate = config.chat_template;
    else if (Array.isArray(config.chat_template)) {
      const def = config.chat_template.find((t) => t.name === 'default') ?? config.chat_template[0];
      chatTemplate = def ? def.template : null;
    }
    return new Tokenizer({
      model,
      added,
      normalizer,
      preTokenizer,
      postProcessor,
      decoder,
      bosId,
      eosIds,
      padId: idOf(tokenContent(config.pad_token)) ?? config.pad_token_id ?? null,
      unkId:
        idOf(tokenContent(config.unk_token)) ??
        idOf(isObject(root.model) && typeof root.model.unk_token === 'string' ? root.model.unk_token : null),
      chatTemplate,
      addBosToken: config.add_bos_token ?? false,
      addEosToken: config.add_eos_token ?? false,
      keepsBytes,
    });
  }

  /** Builds a tokenizer from GGUF metadata (tokenizer.ggml.* keys). */
  static fromGGUF(metadata: Readonly<Record<string, GGUFValue>>, opts: FromGGUFOptions = {}): Tokenizer {
    return new Tokenizer(tokenizerFromGGUF(metadata, opts));
  }

  /** Token ids of `text`, as tokenizers' Tokenizer.encode(text, add_special_tokens).ids. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    for (const w of this.words(text)) {
      if (typeof w === 'number') ids.push(w);
      else this.model.tokenize(w, ids);
    }
    return this.postProcess(ids, opts);
  }

  /**
   * encode() in steps, for a caller that must not hold the thread long (a server): yields the number
   * of ids so far after each `stepChars` characters or so of model work, cutting long words where no
   * merge crosses (BpeModel.splitWord); returns encode()'s ids.
   */
  *encodeSteps(text: string, opts: EncodeOptions = {}, stepChars = 4096): Generator<number, number[], void> {
    const ids: number[] = [];
    let work = 0;
    for (const w of this.words(text)) {
      if (typeof w === 'number') {
        ids.push(w);
        continue;
      }
      for (const part of this.model.splitWord(w, stepChars)) {
        this.model.tokenize(part, ids);
        work += part.length;
        if (work >= stepChars) {
          work = 0;
          yield ids.length;
        }
      }
    }
    return this.postProcess(ids, opts);
  }

  /**
   * The most UTF-8 bytes of input one token of encode() stands for, so a text of B bytes has at least
   * ceil(B / maxTokenBytes) tokens; null when nothing bounds it (a normalizer or pre-tokenizer that
   * drops or shortens text, added tokens that swallow whitespace, runs of unknown characters fused).
   */
  get maxTokenBytes(): number | null {
    if (this.tokenBytes === undefined) {
      const model = this.model.maxTokenBytes();
      const strips = this.addedTokens.some((t) => t.lstrip || t.rstrip);
      this.tokenBytes =
        !this.keepsBytes || strips || model === null
          ? null
          : Math.max(model, ...this.addedTokens.map((t) => new TextEncoder().encode(t.content).length));
    }
    return this.tokenBytes;
  }

  /** What the model tokenizes, in order: ids of added tokens, and the other text's pre-tokenized words. */
  private words(text: string): (number | string)[] {
    const out: (number | string)[] = [];
    const split = (piece: Piece): void => {
      if (this.preTokenizer === null) out.push(piece.text);
      else for (const w of this.preTokenizer([piece])) out.push(w.text);
    };
    for (const seg of this.added.splitRaw(text, true)) {
      if (seg.id >= 0) {
        out.push(seg.id);
        continue;
      }
      const norm = this.normalizer ? this.normalizer(seg.text) : seg.text;
      if (this.added.hasNormalized) {
        for (const p of this.added.splitNormalized(norm, seg.atStart)) {
          if (p.id >= 0) out.push(p.id);
          else split({ text: p.text, atStart: p.atStart });
        }
      } else if (norm.length > 0) split({ text: norm, atStart: seg.atStart });
    }
    return out;
  }

  private postProcess(ids: number[], opts: EncodeOptions): number[] {
    if ((opts.addSpecialTokens ?? true) && this.postProcessor) return this.postProcessor(ids);
    return ids;
  }

  /** The BOS token string, or null. */
  get bosToken(): string | null {
    return this.bosId !== null ? this.idToToken(this.bosId) : null;
  }

  /** The (first) EOS token string, or null. */
  get eosToken(): string | null {
    return this.eosId !== null ? this.idToToken(this.eosId) : null;
  }

  /** Text of `ids`, as tokenizers' Tokenizer.decode(ids, skip_special_tokens). Unknown ids are skipped. */
  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const skip = opts.skipSpecialTokens ?? false;
    const tokens: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const tok = this.idToToken(ids[i]);
      if (tok === null) continue;
      if (skip && this.specialContents.has(tok)) continue;
      tokens.push(tok);
    }
    if (this.decoder === null) return tokens.join(' ');
    return this.decoder(tokens).join('');
  }

  /** The token string of an id (added tokens first, as tokenizers), or null. */
  idToToken(id: number): string | null {
    const a = this.added.idToContent.get(id);
    if (a !== undefined) return a;
    return this.model.vocabR[id] ?? null;
  }

  /** The id of a token string (added tokens first), or null. */
  tokenToId(token: string): number | null {
    const a = this.added.byContent.get(token);
    if (a) return a.id;
    return this.model.vocab.get(token) ?? null;
  }

  /** True for the ids of special added tokens (what decode's skipSpecialTokens leaves out). */
  isSpecialId(id: number): boolean {
    const a = this.added.byId.get(id);
    return a !== undefined && a.special;
  }

  /** Renders `messages` with this tokenizer's chat template (or `template`), as transformers does. */
  applyChatTemplate(
    messages: readonly ChatMessage[],
    opts: Partial<RenderChatOptions> & { template?: string } = {},
  ): string {
    const template = opts.template ?? this.chatTemplate;
    if (template === null) throw new Error('lorakit: this tokenizer has no chat template.');
    return renderChat(template, messages, {
      addGenerationPrompt: opts.addGenerationPrompt ?? false,
      bosToken: opts.bosToken ?? this.bosToken ?? undefined,
      eosToken: opts.eosToken ?? this.eosToken ?? undefined,
      tools: opts.tools,
      extra: opts.extra,
    });
  }
}
