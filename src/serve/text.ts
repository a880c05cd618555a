// The text of a reply as its tokens arrive: what can be streamed now, and where a stop string ends it.
import type { Tokenizer } from '../tokenizer/tokenizer.js';

/**
 * Decodes generated ids to text (special tokens skipped, as generate() does) and cuts it at the first
 * stop string, OpenAI's way: the stop string may end inside a token, and is left out. Text is only
 * released for streaming once it can no longer turn out to be the start of a stop string or an
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

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly stop: readonly string[] = [],
  ) {
    this.longestStop = Math.max(0, ...stop.map((s) => s.length));
  }

  /** Adds one generated id; returns true when a stop string has now appeared (text is cut there). */
  push(id: number): boolean {
    this.ids.push(id);
    const full = this.tokenizer.decode(this.ids, { skipSpecialTokens: true });
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
