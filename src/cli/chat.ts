// `lorakit chat`: a multi-turn conversation in the terminal. Replies stream as they are generated
// (through the serving engine, so the event loop stays free to notice Ctrl-C between tokens).
import { createInterface } from 'node:readline';
import { promptIds } from '../infer/generate.js';
import { loadAdapter } from '../peft/adapters.js';
import { BatchEngine } from '../serve/engine.js';
import type { ChatMessage } from '../tokenizer/chat-template.js';
import { parseFlags, UsageError, type Specs } from './args.js';
import { MODEL_FLAGS, openModel } from './run.js';
import { parseAdapterSpec } from './serve.js';

export const SYNOPSIS = '--model M [--adapter DIR ...] [--system TEXT] [flags]';
export const HELP = 'interactive chat with the model (and its adapters)';

export const FLAGS = {
  ...MODEL_FLAGS,
  adapter: {
    type: 'string',
    help: 'adapter to offer, DIR or NAME=DIR; repeatable (the first one starts active)',
    repeat: true,
  },
  system: { type: 'string', help: 'system prompt' },
  'max-new-tokens': { type: 'int', help: 'tokens per reply at most (512)', min: 1 },
  temperature: { type: 'number', help: 'sampling temperature, 0 = greedy (0)', min: 0 },
  'top-k': { type: 'int', help: 'sample from the k most likely tokens (0 = all)', min: 0 },
  'top-p': { type: 'number', help: 'nucleus sampling mass (1)', min: 0, exclusiveMin: true, max: 1 },
  seed: { type: 'int', help: 'sampling seed (0)', min: 0 },
} as const satisfies Specs;

const COMMANDS_HELP = `commands:
  /reset            start a new conversation
  /adapter          show the active adapter and the ones available
  /adapter NAME     answer with adapter NAME from now on
  /adapter off      answer with the base model
  /system TEXT      set the system prompt (and start a new conversation)
  /help             this list
  /quit             leave (as do Ctrl-D and Ctrl-C twice at the prompt)
Ctrl-C while a reply is being written stops that reply.
`;

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, FLAGS, 'chat');
  if (f._.length > 0) throw new UsageError(`lorakit chat: unexpected argument '${f._[0]}'.`);
  const specs = (f.adapter ?? []).map(parseAdapterSpec);
  const { model, tokenizer } = await openModel('chat', { ...f, adapter: undefined });
  const names: string[] = [];
  try {
    if (!tokenizer.chatTemplate)
      throw new Error('lorakit chat: this model has no chat template (try lorakit generate --prompt).');
    for (const a of specs) {
      if (names.includes(a.name))
        throw new UsageError(`lorakit chat: two adapters are named '${a.name}'; name them with NAME=DIR.`);
      loadAdapter(model, a.dir, a.name);
      names.push(a.name);
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
  model.activeAdapter = null;
  const engine = new BatchEngine(model, tokenizer, { maxBatch: 1 });
  const out = process.stdout;
  const say = (s: string) => out.write(s);
  let adapter: string | null = names[0] ?? null;
  let system = f.system ?? null;
  let history: ChatMessage[] = [];
  const maxNew = f['max-new-tokens'] ?? 512;

  const terminal = Boolean(process.stdin.isTTY && out.isTTY);
  const rl = createInterface({ input: process.stdin, output: out, terminal, prompt: '> ' });
  const lines: string[] = [];
  let reply: AbortController | null = null;
  let busy = false;
  let ended = false;
  let interrupts = 0;
  let finish: () => void = () => {};
  const finished = new Promise<void>((r) => (finish = r));
  const prompt = () => {
    if (terminal && !ended) rl.prompt();
  };

  // The conversation as prompt ids, dropping the oldest turns when it does not fit the context.
  const render = (): number[] | null => {
    for (;;) {
      const msgs = system !== null ? [{ role: 'system', content: system }, ...history] : history;
      const ids = promptIds(tokenizer, { messages: msgs });
      if (ids.length + Math.min(maxNew, 16) <= engine.contextLength) return ids;
      if (history.length <= 1) return null;
      history = history.slice(2);
      say('(older turns were dropped to fit the context)\n');
    }
  };

  const respond = async (text: string) => {
    history.push({ role: 'user', content: text });
    const ids = render();
    if (!ids) {
      history.pop();
      say(`lorakit: that message is too long for this model's context (${engine.contextLength} tokens).\n`);
      return;
    }
    reply = new AbortController();
    let r: Awaited<ReturnType<typeof engine.submit>>;
    try {
      r = await engine.submit({
        promptIds: ids,
        adapter,
        maxTokens: Math.min(maxNew, engine.contextLength - ids.length),
        temperature: f.temperature ?? 0,
        topK: f['top-k'],
        topP: f['top-p'],
        seed: f.seed,
        signal: reply.signal,
        onText: (piece) => say(piece),
      });
    } catch (e) {
      history.pop();
      throw e;
    } finally {
      reply = null;
    }
    if (r.finishReason === 'abort') say(' [stopped]');
    say('\n');
    // What was shown stays part of the conversation, even when stopped early.
    history.push({ role: 'assistant', content: r.text });
  };

  const command = (line: string): boolean => {
    const [cmd, ...rest] = line.trim().split(/\s+/);
    const arg = line.trim().slice(cmd.length).trim();
    switch (cmd) {
      case '/reset':
        history = [];
        say('(new conversation)\n');
        return true;
      case '/adapter':
        if (rest.length === 0)
          say(
            `active: ${adapter ?? 'base model'}; available: ${names.length ? names.join(', ') : 'none'} (and 'off')\n`,
          );
        else if (arg === 'off' || arg === 'base' || arg === 'none') {
          adapter = null;
          say('(base model)\n');
        } else if (names.includes(arg)) {
          adapter = arg;
          say(`(adapter ${arg})\n`);
        } else
          say(
            `lorakit: no adapter named '${arg}' (available: ${names.length ? names.join(', ') : 'none'}; /adapter off for the base model).\n`,
          );
        return true;
      case '/system':
        system = arg === '' ? null : arg;
        history = [];
        say(
          system === null
            ? '(no system prompt; new conversation)\n'
            : '(system prompt set; new conversation)\n',
        );
        return true;
      case '/help':
        say(COMMANDS_HELP);
        return true;
      case '/quit':
      case '/exit':
        end();
        return true;
      default:
        say(`lorakit: unknown command ${cmd} (try /help).\n`);
        return true;
    }
  };

  // Lines are handled one at a time, in order (piped input may arrive faster than replies).
  const pump = async () => {
    if (busy) return;
    busy = true;
    try {
      while (lines.length > 0 && !ended) {
        const line = lines.shift()!;
        if (line.trim() === '') {
          prompt();
          continue;
        }
        if (line.trimStart().startsWith('/')) command(line);
        else await respond(line);
        prompt();
      }
    } catch (e) {
      say(`${e instanceof Error ? e.message : String(e)}\n`);
      prompt();
    } finally {
      busy = false;
    }
    if (inputClosed && lines.length === 0) end();
  };

  let inputClosed = false;
  const end = () => {
    if (ended) return;
    ended = true;
    reply?.abort();
    rl.close();
    finish();
  };

  const interrupt = () => {
    if (reply) {
      reply.abort(); // the reply ends at the next token; the conversation goes on
      interrupts = 0;
      return;
    }
    interrupts++;
    if (interrupts >= 2) {
      say('\n');
      end();
      return;
    }
    if (terminal) rl.write(null, { ctrl: true, name: 'u' }); // clear what was typed
    say('\n(Ctrl-C again to quit)\n');
    prompt();
  };

  rl.on('line', (line) => {
    interrupts = 0;
    lines.push(line);
    void pump();
  });
  rl.on('close', () => {
    inputClosed = true;
    if (!busy && lines.length === 0) end();
  });
  // On a terminal readline turns Ctrl-C into 'SIGINT' on rl; piped input gets the real signal.
  rl.on('SIGINT', interrupt);
  process.on('SIGINT', interrupt);

  if (terminal)
    say(
      `lorakit chat — ${adapter ? `adapter ${adapter}` : 'base model'}. /help for commands, Ctrl-C twice to quit.\n`,
    );
  prompt();
  await finished;
  process.off('SIGINT', interrupt);
  engine.close();
  model.dispose();
  return 0;
}
