// Chat templates: the model's Jinja `chat_template`, rendered the way transformers'
// apply_chat_template(tokenize=False) renders it (trim_blocks + lstrip_blocks, which
// @huggingface/jinja always applies; globals raise_exception and strftime_now; tools and documents
// are None unless given).
import { Environment, Interpreter, Template } from '@huggingface/jinja';

/** One turn. Extra fields on the object (tool_calls, name, ...) reach the template too. */
export interface ChatMessage {
  role: string;
  content: string;
}

export interface RenderChatOptions {
  addGenerationPrompt: boolean;
  bosToken?: string;
  eosToken?: string;
  /** Tool schemas (JSON), passed to the template as `tools`. */
  tools?: unknown;
  /** Further template variables (transformers' **kwargs, e.g. pad_token, enable_thinking, documents). */
  extra?: Record<string, unknown>;
}

/** Raised for template errors, including the template's own raise_exception. */
export class ChatTemplateError extends Error {}

const compiled = new Map<string, Template>();

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];

/** Python's datetime.strftime in the C locale, for the directives templates use. */
export function strftime(date: Date, format: string): string {
  const p2 = (n: number): string => String(n).padStart(2, '0');
  return format.replace(/%([a-zA-Z%])/g, (m, d: string) => {
    switch (d) {
      case 'Y':
        return String(date.getFullYear());
      case 'y':
        return p2(date.getFullYear() % 100);
      case 'm':
        return p2(date.getMonth() + 1);
      case 'd':
        return p2(date.getDate());
      case 'e':
        return String(date.getDate()).padStart(2, ' ');
      case 'H':
        return p2(date.getHours());
      case 'I':
        return p2(date.getHours() % 12 === 0 ? 12 : date.getHours() % 12);
      case 'M':
        return p2(date.getMinutes());
      case 'S':
        return p2(date.getSeconds());
      case 'p':
        return date.getHours() < 12 ? 'AM' : 'PM';
      case 'b':
      case 'h':
        return MONTHS[date.getMonth()].slice(0, 3);
      case 'B':
        return MONTHS[date.getMonth()];
      case 'a':
        return DAYS[date.getDay()].slice(0, 3);
      case 'A':
        return DAYS[date.getDay()];
      case 'j': {
        const start = new Date(date.getFullYear(), 0, 1);
        const day = Math.floor((date.getTime() - start.getTime()) / 86_400_000) + 1;
        return String(day).padStart(3, '0');
      }
      case 'w':
        return String(date.getDay());
      case '%':
        return '%';
      default:
        return m;
    }
  });
}

/** Python's range(stop) / range(start, stop[, step]). */
function pyRange(a: unknown, b?: unknown, c?: unknown): number[] {
  const [start, stop] = b === undefined || b === null ? [0, Number(a)] : [Number(a), Number(b)];
  const step = c === undefined || c === null ? 1 : Number(c);
  if (step === 0) throw new ChatTemplateError('lorakit: chat template error: range() step must not be zero.');
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

function oneSentence(msg: string): string {
  return msg.replace(/\s+/g, ' ').trim().replace(/\.$/, '');
}

/** Renders a conversation with a Jinja chat template, as transformers' apply_chat_template(tokenize=False). */
export function renderChat(
  template: string,
  messages: readonly ChatMessage[],
  opts: RenderChatOptions,
): string {
  let t = compiled.get(template);
  if (t === undefined) {
    try {
      t = new Template(template);
    } catch (e) {
      throw new ChatTemplateError(
        `lorakit: chat template error: cannot parse the template (${oneSentence(e instanceof Error ? e.message : String(e))}).`,
      );
    }
    compiled.set(template, t);
  }
  // Template.render declares its own raise_exception/strftime_now and refuses redeclaration, so the
  // environment is built here with the same globals (plus ours) and the interpreter run directly.
  const vars: Record<string, unknown> = {
    false: false,
    true: true,
    none: null,
    False: false,
    True: true,
    None: null,
    range: pyRange,
    raise_exception: (message: unknown): never => {
      throw new ChatTemplateError(`lorakit: chat template error: ${oneSentence(String(message))}.`);
    },
    strftime_now: (format: unknown): string => strftime(new Date(), String(format)),
    tools: opts.tools ?? null,
    documents: null,
    ...opts.extra,
    messages,
    add_generation_prompt: opts.addGenerationPrompt,
  };
  if (opts.bosToken !== undefined) vars.bos_token = opts.bosToken;
  if (opts.eosToken !== undefined) vars.eos_token = opts.eosToken;
  try {
    const env = new Environment();
    for (const [k, v] of Object.entries(vars)) env.set(k, v);
    const out = new Interpreter(env).run(t.parsed).value;
    return typeof out === 'string' ? out : String(out);
  } catch (e) {
    if (e instanceof ChatTemplateError) throw e;
    throw new ChatTemplateError(
      `lorakit: chat template error: ${oneSentence(e instanceof Error ? e.message : String(e))}.`,
    );
  }
}
