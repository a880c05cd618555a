// Training data from a file's rows: decide once per file which columns make the examples (the format:
// from the column names, or from --text-column and the like), and turn rows into token ids with labels
// (−100 where no loss is taken). Nothing here reads a file: data.ts opens files by path (Node), and
// loadDataFromText takes a JSON or JSONL file's text (a browser's File).
import { renderChat } from '../tokenizer/chat-template.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { IGNORE, type Example } from './example.js';
import { jsonRowSource, type RowSource } from './text-rows.js';

export { IGNORE, type Example } from './example.js';

export type RowFormat = 'text' | 'prompt-completion' | 'alpaca' | 'messages' | 'sharegpt' | 'tokens';

export interface ChatMessage {
  role: string;
  content: string;
}

/** Columns named by the user (--text-column, ...); a format's columns not named keep their usual names. */
export interface ColumnMap {
  text?: string;
  prompt?: string;
  completion?: string;
  /** A column holding a conversation: a list of {role, content} (or ShareGPT {from, value}). */
  messages?: string;
}

export interface DataOptions {
  /** Loss only on completions / assistant turns. */
  completionOnly: boolean;
  maxSeqLen: number;
  columns?: ColumnMap;
  /** The model's vocabulary size: pre-tokenized ids must be below it (default: the tokenizer's). */
  vocabSize?: number;
}

export interface LoadedData {
  examples: Example[];
  format: RowFormat;
  /** Rows cut to maxSeqLen. */
  truncated: number;
}

/** The columns a file's format reads: each part of an example and the column it comes from. */
interface Layout {
  format: RowFormat;
  text?: string;
  prompt?: string;
  /** Alpaca's optional input. */
  input?: string;
  completion?: string;
  messages?: string;
  ids?: string;
  /** Optional labels of pre-tokenized rows. */
  labels?: string;
}

const FLAGS: Record<keyof ColumnMap, string> = {
  text: '--text-column',
  prompt: '--prompt-column',
  completion: '--completion-column',
  messages: '--messages-column',
};

/** Why a column mapping contradicts itself (as one sentence without the leading 'lorakit'), or null. */
export function columnMapConflict(map: ColumnMap): string | null {
  const formats = [
    map.text !== undefined,
    map.prompt !== undefined || map.completion !== undefined,
    map.messages !== undefined,
  ].filter(Boolean).length;
  if (formats > 1)
    return 'give only one of --text-column, --prompt-column/--completion-column and --messages-column.';
  if (map.prompt !== undefined && map.prompt === map.completion)
    return `--prompt-column and --completion-column both name '${map.prompt}'.`;
  return null;
}

const list = (names: string[]): string => names.map((n) => `'${n}'`).join(', ');

/** The layout of a file with these columns: the mapped format, or the one its column names make. */
function layoutOf(columns: string[], map: ColumnMap, path: string): Layout {
  const has = (c: string): boolean => columns.includes(c);
  const conflict = columnMapConflict(map);
  if (conflict) throw new Error(`lorakit: ${conflict}`);
  if (Object.values(map).some((v) => v !== undefined)) {
    const pick = (part: keyof ColumnMap): string => {
      const name = map[part] ?? part;
      if (has(name)) return name;
      throw new Error(
        map[part] !== undefined
          ? `lorakit: ${path} has no column '${name}' (${FLAGS[part]}); its columns are ${list(columns)}.`
          : `lorakit: ${path} has no column '${name}'; name its ${part} column with ${FLAGS[part]} (its columns are ${list(columns)}).`,
      );
    };
    if (map.text !== undefined) return { format: 'text', text: pick('text') };
    if (map.messages !== undefined) return { format: 'messages', messages: pick('messages') };
    return { format: 'prompt-completion', prompt: pick('prompt'), completion: pick('completion') };
  }
  if (has('input_ids')) return { format: 'tokens', ids: 'input_ids', labels: 'labels' };
  if (has('messages')) return { format: 'messages', messages: 'messages' };
  if (has('conversations')) return { format: 'sharegpt', messages: 'conversations' };
  if (has('instruction') && has('output'))
    return { format: 'alpaca', prompt: 'instruction', input: 'input', completion: 'output' };
  if (has('prompt') && has('completion'))
    return { format: 'prompt-completion', prompt: 'prompt', completion: 'completion' };
  if (has('text')) return { format: 'text', text: 'text' };
  throw new Error(
    `lorakit: ${path} has columns ${list(columns)}; expected text, prompt+completion, instruction+output, messages, conversations or input_ids, or name yours with --text-column, --prompt-column and --completion-column, or --messages-column.`,
  );
}

const ROLES = ['system', 'user', 'assistant', 'tool'];

const SHAREGPT_ROLES = new Map([
  ['human', 'user'],
  ['user', 'user'],
  ['gpt', 'assistant'],
  ['assistant', 'assistant'],
  ['model', 'assistant'],
  ['system', 'system'],
]);

export class RowError extends Error {}

/**
 * Tokenizes the rows of a data file (`path` names it in messages), one row at a time. A tokenizer is
 * needed for every format but pre-tokenized {"input_ids"} rows.
 */
export async function examplesFromRows(
  source: RowSource,
  path: string,
  tokenizer: Tokenizer | null,
  opts: DataOptions,
): Promise<LoadedData> {
  const layout = layoutOf(source.columns, opts.columns ?? {}, path);
  const format = layout.format;
  let make: (values: Record<string, unknown>) => Example;
  if (format === 'tokens') {
    const vocab = opts.vocabSize ?? tokenizer?.vocabSize;
    if (vocab === undefined)
      throw new Error(
        `lorakit: ${path}: pre-tokenized rows need DataOptions.vocabSize to check their token ids when there is no tokenizer.`,
      );
    make = (values) => tokensExample(values, layout, vocab);
  } else {
    if (!tokenizer)
      throw new Error(
        `lorakit: ${path}: ${format} rows need a tokenizer, and the model folder has no tokenizer.json; pre-tokenized {"input_ids"} rows work without one.`,
      );
    const tok = tokenizer;
    make = (values) => textExample(values, format, layout, tok, opts);
  }
  const wanted = Object.entries(layout)
    .filter(([k, v]) => k !== 'format' && source.columns.includes(v))
    .map(([, v]) => v as string);
  let truncated = 0;
  const examples: Example[] = [];
  for await (const { values, at } of source.rows(wanted)) {
    const where = `${path}: ${at}`;
    let ex: Example;
    try {
      ex = make(values);
    } catch (e) {
      if (e instanceof RowError) throw new Error(`lorakit: ${where}: ${e.message}`);
      throw e;
    }
    if (ex.ids.length > opts.maxSeqLen) {
      truncated++;
      ex = { ids: ex.ids.slice(0, opts.maxSeqLen), labels: ex.labels.slice(0, opts.maxSeqLen) };
    }
    if (!ex.labels.slice(1).some((l) => l !== IGNORE))
      throw new Error(
        `lorakit: ${where}: no target tokens remain${ex.ids.length >= opts.maxSeqLen ? ` within --max-seq-len ${opts.maxSeqLen}` : ''}.`,
      );
    examples.push(ex);
  }
  return { examples, format, truncated };
}

/**
 * loadData for a JSON or JSONL file already in memory (a browser's File: its text, or its bytes as
 * UTF-8): the same examples, and the same errors naming `name` and the line.
 */
export async function loadDataFromText(
  text: string | Uint8Array,
  name: string,
  tokenizer: Tokenizer | null,
  opts: DataOptions,
): Promise<LoadedData> {
  return examplesFromRows(jsonRowSource(text, name), name, tokenizer, opts);
}

/** A text field: strings as they are; numbers and booleans (a 0/1 label) as their text. */
function text(values: Record<string, unknown>, column: string, optional = false): string {
  const v = values[column];
  if (v === undefined || v === null) {
    if (optional) return '';
    throw new RowError(`missing field '${column}'.`);
  }
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  throw new RowError(`field '${column}' must be text, not ${Array.isArray(v) ? 'a list' : typeof v}.`);
}

/** A text field that must say something: an empty or all-whitespace one would teach nothing (or EOS alone). */
function nonEmpty(values: Record<string, unknown>, column: string): string {
  const s = text(values, column);
  if (s.trim() === '') throw new RowError(`field '${column}' is empty.`);
  return s;
}

/** A list of integers (JSON numbers, or Parquet int32/int64 lists), or null. */
function intList(v: unknown): number[] | null {
  const items: unknown[] | null = Array.isArray(v)
    ? v
    : ArrayBuffer.isView(v) && !(v instanceof DataView)
      ? Array.from(v as unknown as ArrayLike<unknown>)
      : null;
  if (!items) return null;
  const out = items.map((x) => (typeof x === 'bigint' ? Number(x) : x));
  return out.every((x): x is number => Number.isInteger(x)) ? out : null;
}

function tokensExample(values: Record<string, unknown>, layout: Layout, vocabSize: number): Example {
  const ids = intList(values[layout.ids!]);
  if (!ids || ids.length === 0 || !ids.every((x) => x >= 0 && x < vocabSize))
    throw new RowError(`'input_ids' must be a non-empty array of token ids below ${vocabSize}.`);
  const raw = values[layout.labels!];
  if (raw === undefined || raw === null) return { ids, labels: [...ids] };
  const labels = intList(raw);
  if (!labels || labels.length !== ids.length)
    throw new RowError(`'labels' must be an array of integers as long as 'input_ids'.`);
  return { ids, labels };
}

function messagesOf(values: Record<string, unknown>, column: string): ChatMessage[] {
  const items = values[column];
  if (!Array.isArray(items) || items.length === 0)
    throw new RowError(`'${column}' must be a non-empty array of messages.`);
  return items.map((m: unknown, j) => {
    const n = j + 1;
    if (m === null || typeof m !== 'object' || Array.isArray(m))
      throw new RowError(`message ${n} of '${column}' must be an object.`);
    const o = m as Record<string, unknown>;
    let msg: ChatMessage;
    if (!('role' in o) && 'from' in o) {
      const role = SHAREGPT_ROLES.get(String(o.from));
      if (!role)
        throw new RowError(
          `message ${n} has 'from' value '${String(o.from)}'; accepted values are human, gpt and system (or user, assistant and model).`,
        );
      if (typeof o.value !== 'string') throw new RowError(`message ${n} needs a string 'value'.`);
      msg = { role, content: o.value };
    } else {
      if (typeof o.role !== 'string' || typeof o.content !== 'string')
        throw new RowError(`message ${n} needs string 'role' and 'content'.`);
      if (!ROLES.includes(o.role))
        throw new RowError(
          `message ${n} has role '${o.role}'; accepted roles are system, user, assistant and tool.`,
        );
      msg = { role: o.role, content: o.content };
    }
    if (msg.role === 'assistant' && msg.content.trim() === '')
      throw new RowError(`message ${n} (assistant) is empty.`);
    return msg;
  });
}

const ALPACA_PROMPT = (instruction: string, input: string): string =>
  input
    ? `Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n${instruction}\n\n### Input:\n${input}\n\n### Response:\n`
    : `Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n${instruction}\n\n### Response:\n`;

function textExample(
  values: Record<string, unknown>,
  format: Exclude<RowFormat, 'tokens'>,
  layout: Layout,
  tok: Tokenizer,
  opts: DataOptions,
): Example {
  switch (format) {
    case 'text': {
      const ids = [...tok.encode(nonEmpty(values, layout.text!)), ...eos(tok)];
      return { ids, labels: [...ids] };
    }
    case 'prompt-completion':
    case 'alpaca': {
      // An empty prompt is allowed: the completion is still learned, from BOS (or an empty user turn),
      // which is how unconditional text such as stories is written in prompt/completion form.
      const prompt = text(values, layout.prompt!);
      const input = layout.input ? text(values, layout.input, true) : '';
      const completion = nonEmpty(values, layout.completion!);
      if (tok.chatTemplate) {
        const user = input ? `${prompt}\n\n${input}` : prompt;
        return chatExample(
          tok,
          [
            { role: 'user', content: user },
            { role: 'assistant', content: completion },
          ],
          opts,
        );
      }
      const p = tok.encode(format === 'alpaca' ? ALPACA_PROMPT(prompt, input) : prompt);
      const c = [...tok.encode(completion, { addSpecialTokens: false }), ...eos(tok)];
      return { ids: [...p, ...c], labels: [...(opts.completionOnly ? p.map(() => IGNORE) : p), ...c] };
    }
    case 'messages':
    case 'sharegpt':
      return chatExample(tok, messagesOf(values, layout.messages!), opts);
  }
}

function eos(tok: Tokenizer): number[] {
  return tok.eosId === null ? [] : [tok.eosId];
}

/**
 * Renders a conversation with the chat template and encodes it once, as inference will see it. The
 * assistant messages' character spans (found by rendering the conversation up to each one with and
 * without it) become token spans: a cut at character c falls after the tokens that encoding the text
 * before c alone shares with the full encoding. Labels cover the assistant turns and the template's
 * end-of-turn.
 */
function chatExample(tok: Tokenizer, messages: ChatMessage[], opts: DataOptions): Example {
  const template = tok.chatTemplate;
  if (!template) throw new RowError('chat rows need a model with a chat template; this tokenizer has none.');
  const render = (msgs: ChatMessage[], addGenerationPrompt: boolean): string => {
    try {
      return renderChat(template, msgs, {
        addGenerationPrompt,
        bosToken: tok.bosToken ?? undefined,
        eosToken: tok.eosToken ?? undefined,
      });
    } catch (e) {
      throw new RowError(e instanceof Error ? e.message.replace(/^lorakit: /, '') : String(e));
    }
  };
  const full = render(messages, false);
  // Templates written without tools drop tool messages silently; a row must not lose a turn unseen.
  messages.forEach((m, i) => {
    if (m.role === 'tool' && !full.includes(m.content.trim()))
      throw new RowError(
        `message ${i + 1} has role 'tool', which this model's chat template does not render.`,
      );
  });
  const ids = tok.encode(full, { addSpecialTokens: false });
  const tokenCut = (chars: number): number => {
    const prefix = tok.encode(full.slice(0, chars), { addSpecialTokens: false });
    let k = 0;
    while (k < prefix.length && prefix[k] === ids[k]) k++;
    return k;
  };
  const target = new Array<boolean>(ids.length).fill(!opts.completionOnly);
  let assistants = 0;
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    assistants++;
    const before = render(messages.slice(0, i), true);
    const upto = render(messages.slice(0, i + 1), false);
    if (!full.startsWith(before) || !full.startsWith(upto) || upto.length < before.length)
      throw new RowError(
        `the chat template does not render message ${i + 1} as a prefix of the conversation.`,
      );
    for (let k = tokenCut(before.length); k < tokenCut(upto.length); k++) target[k] = true;
  });
  if (assistants === 0) throw new RowError('the conversation has no assistant message to learn from.');
  return { ids, labels: ids.map((id, k) => (target[k] ? id : IGNORE)) };
}
