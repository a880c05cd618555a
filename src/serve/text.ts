// Text in and out of a served model: prompts encoded without holding up other requests, and the text
// of a reply as its tokens arrive (what can be streamed now, and where a stop string ends it).
import type { EncodeOptions, Tokenizer } from '../tokenizer/tokenizer.js';

/** How long tokenizing may hold the event loop before other requests get a turn, in ms. */
const SLICE_MS = 10;

/**
 * tokenizer.encode(text) in slices of about SLICE_MS with the event loop let run between them, so that
 * a long prompt does not stall other requests' streams; null as soon as there are more than
 * `maxTokens` ids (the rest is not tokenized).
 */
export async function encodeInSlices(
  tokenizer: Tokenizer,
  text: string,
  opts: EncodeOptions,
  maxTokens: number,
): Promise<number[] | null> {
  const steps = tokenizer.encodeSteps(text, opts);
  let t0 = performance.now();
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value.length > maxTokens ? null : r.value;
    if (r.value > maxTokens) return null;
    if (performance.now() - t0 > SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      t0 = performance.now();
    }
  }
}

/** Non-special prompt tokens decoded before the reply: enough to hold a character's bytes split off. */
const CONTEXT_TOKENS = 5;

/** The shortest tail of `prompt` holding CONTEXT_TOKENS tokens that decoding keeps (or all of it). */
function contextTail(tokenizer: Tokenizer, prompt: readonly number[]): number[] {
  let start = prompt.length;
  for (let kept = 0; start > 0 && kept < CONTEXT_TOKENS;) if (!tokenizer.isSpecialId(prompt[--start])) kept++;
  return prompt.slice(start);
}

function commonPrefix(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

/**
 * Decodes generated ids to text (special tokens skipped) as transformers does, and cuts it at the
 * first stop string, OpenAI's way: the stop string may end inside a token, and is left out. The reply
 * is what decoding it after the prompt's last tokens adds to decoding those alone (transformers'
 * `decode(prompt + reply)[len(decode(prompt)):]`), so a first token's leading space is kept (decoders
 * strip it at the start of a text only) and a character split across tokens comes out whole. Text is
 * only released for streaming once it can no longer turn out to be the start of a stop string or an
 * incomplete UTF-8 character.
 */
export class TextStream {
  readonly ids: number[] = [];
  /** The reply's text so far (cut at a stop string once one is found). */
  text = '';
  /** Characters of `text` already handed out by take(). */
  private released = 0;
  stopped = false;
  private readonly longestStop: number;
  private readonly context: number[];
  private readonly contextText: string;

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly stop: readonly string[] = [],
    /** The prompt's ids (only its last few tokens are used). */
    prompt: readonly number[] = [],
  ) {
    this.longestStop = Math.max(0, ...stop.map((s) => s.length));
    this.context = contextTail(tokenizer, prompt);
    this.contextText = tokenizer.decode(this.context, { skipSpecialTokens: true });
  }

  /** Adds one generated id; returns true when a stop string has now appeared (text is cut there). */
  push(id: number): boolean {
    this.ids.push(id);
    const all = this.tokenizer.decode([...this.context, ...this.ids], { skipSpecialTokens: true });
    // Where the prompt ends inside a character, the two decodings part before its end: the reply
    // starts there, with the whole character.
    const full = all.slice(commonPrefix(this.contextText, all));
    this.text = full;
    if (this.stop.length === 0) return false;
    // A stop string can only start after the text already released (which held none).
    const from = Math.max(0, this.released - this.longestStop + 1);
    let cut = -1;
    for (const s of this.stop) {
      const i = full.indexOf(s, from);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut < 0) return false;
    this.text = full.slice(0, Math.max(cut, this.released));
    this.stopped = true;
    return true;
  }

  /** Text that is safe to stream now (all of what is left when `final`). */
  take(final = false): string {
    let end = this.text.length;
    if (!final && !this.stopped) {
      // Hold back an incomplete UTF-8 sequence (decoded as U+FFFD) and any tail that starts a stop string.
      while (end > this.released && this.text.charCodeAt(end - 1) === 0xfffd) end--;
      let hold = 0;
      for (const s of this.stop)
        for (let k = Math.min(s.length - 1, end - this.released); k > hold; k--)
          if (this.text.endsWith(s.slice(0, k), end)) {
            hold = k;
            break;
          }
      end -= hold;
    }
    if (end <= this.released) return '';
    const piece = this.text.slice(this.released, end);
    this.released = end;
    return piece;
  }
}
