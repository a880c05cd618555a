// Training data: read JSONL / JSON arrays, detect the row format once per file, and turn rows into
// token ids with labels (−100 where no loss is taken).
import { readFileSync } from 'node:fs';
import { renderChat } from '../tokenizer/chat-template.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';

export const IGNORE = -100;

export interface Example {
  ids: number[];
  /** Same length as ids; IGNORE where the token is not a target. */
  labels: number[];
}

export type RowFormat = 'text' | 'prompt-completion' | 'alpaca' | 'messages' | 'sharegpt' | 'tokens';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface DataOptions {
  /** Loss only on completions / assistant turns. */
  completionOnly: boolean;
  maxSeqLen: number;
}

export interface LoadedData {
  examples: Example[];
  format: RowFormat;
  /** Rows cut to maxSeqLen. */
  truncated: number;
}

/** Parses a .jsonl (one object per line) or .json (an array) file; errors name the file and line. */
export function readRows(path: string): Record<string, unknown>[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new Error(`lorakit: cannot read data file ${path}.`);
  }
  const trimmed = text.trimStart();
  if (trimmed.length === 0) throw new Error(`lorakit: ${path} is empty.`);
  let rows: unknown[];
  if (trimmed.startsWith('[')) {
    try {
      rows = JSON.parse(text) as unknown[];
    } catch (e) {
      throw new Error(`lorakit: ${path}: invalid JSON (${e instanceof Error ? e.message : String(e)}).`);
    }
  } else {
    rows = [];
    const lines = text.split('\n');
    lines.forEach((line, i) => {
      if (line.trim() === '') return;
      try {
        rows.push(JSON.parse(line));
      } catch {
        throw new Error(`lorakit: ${path}: line ${i + 1} is not valid JSON.`);
      }
    });
  }
  if (rows.length === 0) throw new Error(`lorakit: ${path} has no rows.`);
  rows.forEach((r, i) => {
    if (r === null || typeof r !== 'object' || Array.isArray(r))
      throw new Error(`lorakit: ${path}: row ${i + 1} is not a JSON object.`);
  });
  return rows as Record<string, unknown>[];
}

export function detectFormat(row: Record<string, unknown>, path: string): RowFormat {
  if ('input_ids' in row) return 'tokens';
  if ('messages' in row) return 'messages';
  if ('conversations' in row) return 'sharegpt';
  if ('instruction' in row && 'output' in row) return 'alpaca';
  if ('prompt' in row && 'completion' in row) return 'prompt-completion';
  if ('text' in row) return 'text';
  throw new Error(
    `lorakit: ${path}: row 1 has keys {${Object.keys(row).join(', ')}}; expected one of text, prompt+completion, instruction+output, messages, conversations, input_ids.`,
  );
}

const SHAREGPT_ROLES: Record<string, string> = {
  human: 'user',
  user: 'user',
  gpt: 'assistant',
  assistant: 'assistant',
  system: 'system',
  model: 'assistant',
};

export class RowError extends Error {}

/** Loads and tokenizes a data file. */
export function loadData(path: string, tokenizer: Tokenizer, opts: DataOptions): LoadedData {
  const rows = readRows(path);
  const format = detectFormat(rows[0], path);
  let truncated = 0;
  const examples = rows.map((row, i) => {
    const where = `${path}: row ${i + 1}`;
    let ex: Example;
    try {
      ex = toExample(row, format, tokenizer, opts);
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
    return ex;
  });
  return { examples, format, truncated };
}

function str(row: Record<string, unknown>, key: string, optional = false): string {
  const v = row[key];
  if (v === undefined || v === null) {
    if (optional) return '';
    throw new RowError(`missing field '${key}'.`);
  }
  if (typeof v !== 'string') throw new RowError(`field '${key}' must be a string.`);
  return v;
}

function messagesOf(row: Record<string, unknown>, format: 'messages' | 'sharegpt'): ChatMessage[] {
  const key = format === 'messages' ? 'messages' : 'conversations';
  const list = row[key];
  if (!Array.isArray(list) || list.length === 0) throw new RowError(`'${key}' must be a non-empty array.`);
  return list.map((m, j) => {
    if (m === null || typeof m !== 'object') throw new RowError(`${key}[${j}] must be an object.`);
    const o = m as Record<string, unknown>;
    if (format === 'messages') {
      if (typeof o.role !== 'string' || typeof o.content !== 'string')
        throw new RowError(`${key}[${j}] needs string 'role' and 'content'.`);
      return { role: o.role, content: o.content };
    }
    const role = SHAREGPT_ROLES[String(o.from)];
    if (!role) throw new RowError(`${key}[${j}] has unknown 'from' value '${String(o.from)}'.`);
    if (typeof o.value !== 'string') throw new RowError(`${key}[${j}] needs a string 'value'.`);
    return { role, content: o.value };
  });
}

const ALPACA_PROMPT = (instruction: string, input: string): string =>
  input
    ? `Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n${instruction}\n\n### Input:\n${input}\n\n### Response:\n`
    : `Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n${instruction}\n\n### Response:\n`;

function toExample(
  row: Record<string, unknown>,
  format: RowFormat,
  tok: Tokenizer,
  opts: DataOptions,
): Example {
  switch (format) {
    case 'tokens': {
      const ids = row.input_ids;
      if (
        !Array.isArray(ids) ||
        ids.length === 0 ||
        !ids.every((x) => Number.isInteger(x) && x >= 0 && x < tok.vocabSize)
      )
        throw new RowError(`'input_ids' must be a non-empty array of token ids below ${tok.vocabSize}.`);
      const labels = row.labels;
      if (labels === undefined) return { ids: ids as number[], labels: [...(ids as number[])] };
      if (!Array.isArray(labels) || labels.length !== ids.length || !labels.every((x) => Number.isInteger(x)))
        throw new RowError(`'labels' must be an array of integers as long as 'input_ids'.`);
      return { ids: ids as number[], labels: labels as number[] };
    }
    case 'text': {
      const ids = [...tok.encode(str(row, 'text')), ...eos(tok)];
      return { ids, labels: [...ids] };
    }
    case 'prompt-completion':
    case 'alpaca': {
      const prompt = format === 'alpaca' ? str(row, 'instruction') : str(row, 'prompt');
      const input = format === 'alpaca' ? str(row, 'input', true) : '';
      const completion = format === 'alpaca' ? str(row, 'output') : str(row, 'completion');
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
      return chatExample(tok, messagesOf(row, format), opts);
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
