// Added tokens (special or not) are cut out of the input before anything else, as tokenizers'
// AddedVocabulary: leftmost-longest matching; tokens with normalized=false match the raw text, those
// with normalized=true match each normalized piece; lstrip/rstrip swallow neighbouring whitespace and
// single_word refuses matches inside a word.
import type { Normalizer } from './normalizers.js';
import { WS_CLASS_BODY } from './regex.js';

export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
  normalized: boolean;
}

/** A piece of input: either plain text (id = -1) or one added token. */
export interface Segment {
  text: string;
  id: number;
  /** Starts at offset 0 of the piece it was cut from. */
  atStart: boolean;
}

const WORD_CHAR = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;
const TRAILING_WS = new RegExp(`[${WS_CLASS_BODY}]*$`, 'u');
const LEADING_WS = new RegExp(`^[${WS_CLASS_BODY}]*`, 'u');

function lastChar(s: string): string {
  const cp = s.codePointAt(s.length - 1);
  if (cp !== undefined && cp >= 0xdc00 && cp <= 0xdfff && s.length >= 2) return s.slice(-2);
  return s.slice(-1);
}

/** Leftmost-longest matcher over a fixed set of strings, bucketed by first UTF-16 unit. */
class Matcher {
  private readonly buckets = new Map<number, { content: string; token: AddedToken }[]>();

  constructor(entries: { content: string; token: AddedToken }[]) {
    for (const e of entries) {
      if (e.content.length === 0) continue;
      const k = e.content.charCodeAt(0);
      let b = this.buckets.get(k);
      if (!b) this.buckets.set(k, (b = []));
      b.push(e);
    }
    for (const b of this.buckets.values()) b.sort((x, y) => y.content.length - x.content.length);
  }

  get empty(): boolean {
    return this.buckets.size === 0;
  }

  /** The next match at or after `from`: [start, end, token], or null. */
  find(s: string, from: number): [number, number, AddedToken] | null {
    for (let i = from; i < s.length; i++) {
      const b = this.buckets.get(s.charCodeAt(i));
      if (b === undefined) continue;
      for (const e of b) if (s.startsWith(e.content, i)) return [i, i + e.content.length, e.token];
    }
    return null;
  }
}

export class AddedVocabulary {
  readonly tokens: AddedToken[];
  readonly byContent = new Map<string, AddedToken>();
  readonly byId = new Map<number, AddedToken>();
  /** id → token string, as tokenizers reports it: normalized tokens appear in normalized form. */
  readonly idToContent = new Map<number, string>();
  private readonly raw: Matcher;
  private readonly norm: Matcher;

  constructor(tokens: AddedToken[], normalizer: Normalizer | null) {
    this.tokens = tokens;
    for (const t of tokens) {
      this.byContent.set(t.content, t);
      this.byId.set(t.id, t);
      this.idToContent.set(t.id, t.normalized && normalizer ? normalizer(t.content) : t.content);
    }
    this.raw = new Matcher(
      tokens.filter((t) => !t.normalized).map((t) => ({ content: t.content, token: t })),
    );
    this.norm = new Matcher(
      tokens
        .filter((t) => t.normalized)
        .map((t) => ({ content: normalizer ? normalizer(t.content) : t.content, token: t })),
    );
  }

  /** Cuts the raw input on tokens with normalized=false. */
  splitRaw(text: string, atStart: boolean): Segment[] {
    return this.split(text, atStart, this.raw);
  }

  /** Cuts a normalized piece on tokens with normalized=true. */
  splitNormalized(text: string, atStart: boolean): Segment[] {
    return this.split(text, atStart, this.norm);
  }

  get hasNormalized(): boolean {
    return !this.norm.empty;
  }

  private split(s: string, atStart: boolean, m: Matcher): Segment[] {
    if (m.empty) return s.length > 0 ? [{ text: s, id: -1, atStart }] : [];
    const out: Segment[] = [];
    let offset = 0; // end of the previous accepted split
    let scan = 0; // where the matcher resumes
    for (;;) {
      const hit = m.find(s, scan);
      if (hit === null) break;
      let [start, stop] = hit;
      const tok = hit[2];
      scan = stop;
      if (tok.singleWord) {
        const startOk = start === 0 || !WORD_CHAR.test(lastChar(s.slice(0, start)));
        const stopOk = stop === s.length || !WORD_CHAR.test(String.fromCodePoint(s.codePointAt(stop)!));
        if (!startOk || !stopOk) continue;
      }
      if (tok.lstrip) {
        const before = s.slice(0, start);
        const ws = TRAILING_WS.exec(before);
        start = Math.max(ws ? ws.index : start, offset);
      }
      if (tok.rstrip) {
        const ws = LEADING_WS.exec(s.slice(stop));
        stop += ws ? ws[0].length : 0;
      }
      if (offset < start)
        out.push({ text: s.slice(offset, start), id: -1, atStart: atStart && offset === 0 });
      out.push({ text: s.slice(start, stop), id: tok.id, atStart: false });
      offset = stop;
    }
    if (offset < s.length) out.push({ text: s.slice(offset), id: -1, atStart: atStart && offset === 0 });
    return out;
  }
}
