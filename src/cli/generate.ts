import { generate } from '../infer/generate.js';
import type { ChatMessage } from '../train/data.js';
import { parseFlags, UsageError, type Specs } from './args.js';
import { MODEL_FLAGS, openModel } from './run.js';

export const SYNOPSIS =
  '--model M [--adapter DIR] (--prompt TEXT | --messages JSON | --input-ids 1,2,3) [flags]';
export const HELP = 'generate text';

export const FLAGS = {
  ...MODEL_FLAGS,
  prompt: { type: 'string', help: 'raw text prompt (BOS added, no chat template)' },
  messages: { type: 'string', help: 'JSON array of {role, content}, rendered with the chat template' },
  'input-ids': { type: 'list', help: 'prompt token ids, comma-separated' },
  'max-new-tokens': { type: 'int', help: 'tokens to generate at most (128)', min: 1 },
  temperature: { type: 'number', help: 'sampling temperature, 0 = greedy (0)', min: 0 },
  'top-k': { type: 'int', help: 'sample from the k most likely tokens (0 = all)', min: 0 },
  'top-p': { type: 'number', help: 'nucleus sampling mass (1)', min: 0, exclusiveMin: true, max: 1 },
  seed: { type: 'int', help: 'sampling seed (0)', min: 0 },
  stop: { type: 'string', help: 'stop string (repeatable)', repeat: true },
  json: { type: 'bool', help: 'print {"text", "token_ids"}' },
} as const satisfies Specs;

function parseMessages(raw: string): ChatMessage[] {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new UsageError('lorakit generate: --messages is not valid JSON.');
  }
  if (
    !Array.isArray(v) ||
    v.length === 0 ||
    !v.every((m) => m && typeof m.role === 'string' && typeof m.content === 'string')
  )
    throw new UsageError('lorakit generate: --messages must be a JSON array of {"role", "content"} strings.');
  return v as ChatMessage[];
}

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, FLAGS, 'generate');
  const given = [f.prompt !== undefined, f.messages !== undefined, f['input-ids'] !== undefined].filter(
    Boolean,
  ).length;
  if (given !== 1)
    throw new UsageError('lorakit generate: give exactly one of --prompt, --messages, --input-ids.');
  const inputIds = f['input-ids']?.map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0)
      throw new UsageError(`lorakit generate: --input-ids has a bad id '${s}'.`);
    return n;
  });
  const messages = f.messages !== undefined ? parseMessages(f.messages) : undefined;
  const { model, tokenizer } = await openModel('generate', f);
  try {
    if (inputIds) {
      const bad = inputIds.find((id) => id >= tokenizer.vocabSize);
      if (bad !== undefined)
        throw new UsageError(
          `lorakit generate: --input-ids: id ${bad} is outside the vocabulary (${tokenizer.vocabSize}).`,
        );
    }
    const stream = !f.json && process.stdout.isTTY;
    const r = generate(model, tokenizer, {
      prompt: f.prompt,
      messages,
      inputIds,
      maxNewTokens: f['max-new-tokens'],
      temperature: f.temperature,
      topK: f['top-k'],
      topP: f['top-p'],
      seed: f.seed,
      stop: f.stop,
      onToken: stream ? (t) => process.stdout.write(t) : undefined,
    });
    if (f.json) process.stdout.write(`${JSON.stringify({ text: r.text, token_ids: r.tokenIds })}\n`);
    else if (stream) process.stdout.write('\n');
    else process.stdout.write(`${r.text}\n`);
    return 0;
  } finally {
    model.dispose();
  }
}
