// The OpenAI API's request and response shapes for /v1/chat/completions, /v1/completions and
// /v1/models: request fields are checked one by one (a wrong one is a 400 naming it), and what this
// server cannot do (tools, logprobs, penalties, n > 1) is refused rather than silently ignored.
import { randomBytes } from 'node:crypto';
import type { ChatMessage } from '../tokenizer/chat-template.js';
import type { GenerationResult } from './engine.js';
import { ServeError } from './adapters.js';

export type JsonObject = Record<string, unknown>;

export function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(param: string, what: string): never {
  throw new ServeError(400, 'invalid_request', `lorakit: '${param}' ${what}`, param);
}

function num(body: JsonObject, key: string, min: number, max: number, integer = false): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v))
    invalid(key, `must be a number, got ${JSON.stringify(v)}.`);
  if (integer && !Number.isInteger(v)) invalid(key, `must be an integer, got ${v}.`);
  if (v < min || v > max) invalid(key, `must be between ${min} and ${max}, got ${v}.`);
  return v;
}

function bool(body: JsonObject, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') invalid(key, `must be true or false, got ${JSON.stringify(v)}.`);
  return v;
}

/** Fields a request may carry only with their neutral value. */
function refuse(body: JsonObject, key: string, ok: (v: unknown) => boolean, what: string): void {
  const v = body[key];
  if (v !== undefined && v !== null && !ok(v))
    throw new ServeError(
      400,
      'unsupported_parameter',
      `lorakit: '${key}' is not supported by this server (${what}).`,
      key,
    );
}

/** Sampling and length settings common to both completion endpoints. */
export interface SamplingRequest {
  model: string;
  maxTokens?: number;
  /** The field maxTokens came from, for messages: max_completion_tokens (OpenAI's newer name) or max_tokens. */
  maxTokensParam: 'max_tokens' | 'max_completion_tokens';
  temperature: number;
  topP: number;
  topK: number;
  seed: number;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  ignoreEos: boolean;
}

export function parseSampling(body: JsonObject): SamplingRequest {
  const model = body.model;
  if (typeof model !== 'string' || model === '')
    invalid('model', 'is required and must be a non-empty string.');
  const newer = num(body, 'max_completion_tokens', 1, Number.MAX_SAFE_INTEGER, true);
  const maxTokens = newer ?? num(body, 'max_tokens', 1, Number.MAX_SAFE_INTEGER, true);
  const temperature = num(body, 'temperature', 0, 2) ?? 1;
  const topP = num(body, 'top_p', 0, 1) ?? 1;
  if (topP === 0) invalid('top_p', 'must be greater than 0.');
  const topKRaw = num(body, 'top_k', -1, 1e9, true) ?? 0;
  const seedRaw = num(body, 'seed', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, true);
  // No seed: a fresh one per request, as OpenAI samples differently each time.
  const seed =
    seedRaw === undefined ? randomBytes(4).readUInt32LE(0) : Number(BigInt.asUintN(32, BigInt(seedRaw)));
  let stop: string[] = [];
  const s = body.stop;
  if (typeof s === 'string') stop = [s];
  else if (Array.isArray(s)) stop = s as string[];
  else if (s !== undefined && s !== null) invalid('stop', 'must be a string or an array of strings.');
  if (stop.length > 4) invalid('stop', `may hold at most 4 sequences, got ${stop.length}.`);
  if (stop.some((x) => typeof x !== 'string' || x === ''))
    invalid('stop', 'must hold only non-empty strings.');
  const stream = bool(body, 'stream') ?? false;
  const so = body.stream_options;
  if (so !== undefined && so !== null && !isObject(so)) invalid('stream_options', 'must be an object.');
  const includeUsage = isObject(so) && so.include_usage === true;
  refuse(body, 'n', (v) => v === 1, 'one choice per request');
  refuse(body, 'presence_penalty', (v) => v === 0, 'no penalties');
  refuse(body, 'frequency_penalty', (v) => v === 0, 'no penalties');
  refuse(body, 'logit_bias', (v) => isObject(v) && Object.keys(v).length === 0, 'no logit bias');
  refuse(body, 'logprobs', (v) => v === false, 'no log probabilities');
  refuse(body, 'top_logprobs', (v) => v === 0, 'no log probabilities');
  return {
    model,
    maxTokens,
    maxTokensParam: newer !== undefined ? 'max_completion_tokens' : 'max_tokens',
    temperature,
    topP,
    topK: Math.max(0, topKRaw),
    seed,
    stop,
    stream,
    includeUsage,
    ignoreEos: bool(body, 'ignore_eos') ?? false,
  };
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool']);

/** The messages of a chat request as the chat template takes them (text content only). */
export function parseMessages(body: JsonObject): ChatMessage[] {
  const list = body.messages;
  if (!Array.isArray(list) || list.length === 0) invalid('messages', 'must be a non-empty array.');
  refuse(body, 'tools', (v) => Array.isArray(v) && v.length === 0, 'no tool calling');
  refuse(body, 'functions', (v) => Array.isArray(v) && v.length === 0, 'no function calling');
  refuse(body, 'response_format', (v) => isObject(v) && v.type === 'text', 'plain text only');
  return list.map((m, i): ChatMessage => {
    const at = `messages[${i}]`;
    if (!isObject(m)) invalid(at, 'must be an object.');
    if (typeof m.role !== 'string' || !ROLES.has(m.role))
      invalid(`${at}.role`, `must be one of ${[...ROLES].join(', ')}, got ${JSON.stringify(m.role)}.`);
    const c = m.content;
    let content: string;
    if (typeof c === 'string') content = c;
    else if (c === null || c === undefined) content = '';
    else if (Array.isArray(c))
      content = c
        .map((part, j) => {
          if (!isObject(part) || part.type !== 'text' || typeof part.text !== 'string')
            invalid(
              `${at}.content[${j}]`,
              "must be a {type: 'text', text} part; this server reads text only.",
            );
          return part.text;
        })
        .join('');
    else invalid(`${at}.content`, 'must be a string or an array of text parts.');
    // Templates know system, user and assistant; OpenAI's newer 'developer' role is the system prompt.
    return { role: m.role === 'developer' ? 'system' : m.role, content };
  });
}

/** A completion request's prompts: text (encoded with the tokenizer's special tokens) or token ids. */
export type PromptInput = { text: string } | { ids: number[] };

export function parsePrompts(body: JsonObject, maxPrompts: number): PromptInput[] {
  refuse(body, 'echo', (v) => v === false, 'no echo');
  refuse(body, 'suffix', (v) => v === '', 'no suffix');
  refuse(body, 'best_of', (v) => v === 1, 'one candidate per prompt');
  const p = body.prompt;
  const isIds = (v: unknown): v is number[] =>
    Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number' && Number.isInteger(x));
  let prompts: PromptInput[];
  if (typeof p === 'string') prompts = [{ text: p }];
  else if (isIds(p)) prompts = [{ ids: p }];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'string'))
    prompts = (p as string[]).map((text) => ({ text }));
  else if (Array.isArray(p) && p.length > 0 && p.every(isIds))
    prompts = (p as number[][]).map((ids) => ({ ids }));
  else
    invalid(
      'prompt',
      'must be a string, an array of strings, an array of token ids, or an array of such arrays.',
    );
  if (prompts.length > maxPrompts)
    invalid('prompt', `may hold at most ${maxPrompts} prompts, got ${prompts.length}.`);
  return prompts;
}

export function newId(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString('hex')}`;
}

export function now(): number {
  return Math.floor(Date.now() / 1000);
}

export function finishReason(r: GenerationResult): 'stop' | 'length' {
  return r.finishReason === 'length' ? 'length' : 'stop';
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usage(results: readonly GenerationResult[]): Usage {
  const p = results.reduce((a, r) => a + r.promptTokens, 0);
  const c = results.reduce((a, r) => a + r.completionTokens, 0);
  return { prompt_tokens: p, completion_tokens: c, total_tokens: p + c };
}

/** OpenAI's error body. */
export function errorBody(
  message: string,
  type: string,
  code: string | null,
  param: string | null = null,
): JsonObject {
  return { error: { message, type, param, code } };
}
