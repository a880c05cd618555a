// Pre-tokenizers of the HF tokenizers pipeline: they cut a normalized piece into words, each of which
// the model tokenizes on its own. Splitting follows tokenizers' NormalizedString::split exactly
// (match/non-match spans, then the delimiter behavior; empty pieces are dropped).
import { bytesToUnicodeString } from './byte-level.js';
import {
  arr,
  bool,
  componentType,
  isObject,
  type Json,
  type JsonObject,
  objects,
  pattern,
  type Source,
  str,
  unsupported,
} from './json.js';
import { compileOniguruma, escapeRegExp, findAll, WS_CLASS_BODY } from './regex.js';

/** A piece of text; `atStart` is true when it begins at offset 0 of the original input. */
export interface Piece {
  text: string;
  atStart: boolean;
}

export type PreTokenizer = (pieces: Piece[]) => Piece[];

export type SplitBehavior = 'Removed' | 'Isolated' | 'MergedWithPrevious' | 'MergedWithNext' | 'Contiguous';

/** [start, end, isMatch] spans covering a string. */
type Cover = [number, number, boolean][];

/** The GPT-2 regex that ByteLevel applies when use_regex is true. */
export const GPT2_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

function coverFromSpans(text: string, spans: [number, number][]): Cover {
  if (text.length === 0) return [[0, 0, false]];
  const out: Cover = [];
  let prev = 0;
  for (const [s, e] of spans) {
    if (prev !== s) out.push([prev, s, false]);
    out.push([s, e, true]);
    prev = e;
  }
  if (prev !== text.length) out.push([prev, text.length, false]);
  return out;
}

/** Each code point satisfying `pred` is its own match (tokenizers' Pattern for Fn(char) -> bool). */
function coverFromChars(text: string, pred: (cp: number) => boolean): Cover {
  if (text.length === 0) return [[0, 0, false]];
  const out: Cover = [];
  let last = 0;
  for (let i = 0; i < text.length;) {
    const cp = text.codePointAt(i)!;
    const w = cp > 0xffff ? 2 : 1;
    if (pred(cp)) {
      if (last < i) out.push([last, i, false]);
      out.push([i, i + w, true]);
      last = i + w;
    }
    i += w;
  }
  if (text.length > last) out.push([last, text.length, false]);
  return out;
}

/** Applies a delimiter behavior to a cover and returns the kept, non-empty sub-pieces. */
export function splitCover(p: Piece, cover: Cover, behavior: SplitBehavior, invert = false): Piece[] {
  if (invert) for (const c of cover) c[2] = !c[2];
  let spans: [number, number, boolean][]; // [start, end, remove]
  switch (behavior) {
    case 'Isolated':
      spans = cover.map(([s, e]) => [s, e, false]);
      break;
    case 'Removed':
      spans = cover;
      break;
    case 'Contiguous': {
      spans = [];
      let prevMatch = false;
      for (const [s, e, m] of cover) {
        if (m === prevMatch && spans.length > 0) spans[spans.length - 1][1] = e;
        else spans.push([s, e, false]);
        prevMatch = m;
      }
      break;
    }
    case 'MergedWithPrevious': {
      spans = [];
      let prevMatch = false;
      for (const [s, e, m] of cover) {
        if (m && !prevMatch && spans.length > 0) spans[spans.length - 1][1] = e;
        else spans.push([s, e, false]);
        prevMatch = m;
      }
      break;
    }
    case 'MergedWithNext': {
      spans = [];
      let prevMatch = false;
      for (let i = cover.length - 1; i >= 0; i--) {
        const [s, e, m] = cover[i];
        if (m && !prevMatch && spans.length > 0) spans[spans.length - 1][0] = s;
        else spans.push([s, e, false]);
        prevMatch = m;
      }
      spans.reverse();
      break;
    }
  }
  const out: Piece[] = [];
  for (const [s, e, remove] of spans) {
    if (remove || e <= s) continue;
    out.push({ text: p.text.slice(s, e), atStart: p.atStart && s === 0 });
  }
  return out;
}

function behaviorOf(json: JsonObject, src: Source, fallback: SplitBehavior): SplitBehavior {
  const b = json.behavior;
  if (b === undefined || b === null) return fallback;
  if (
    b === 'Removed' ||
    b === 'Isolated' ||
    b === 'MergedWithPrevious' ||
    b === 'MergedWithNext' ||
    b === 'Contiguous'
  )
    return b;
  throw unsupported(`split behavior ${String(b)}`, src);
}

function regexSplitter(re: RegExp, behavior: SplitBehavior, invert: boolean): PreTokenizer {
  return (pieces) =>
    pieces.flatMap((p) => splitCover(p, coverFromSpans(p.text, findAll(re, p.text)), behavior, invert));
}

function charSplitter(pred: (cp: number) => boolean, behavior: SplitBehavior): PreTokenizer {
  return (pieces) => pieces.flatMap((p) => splitCover(p, coverFromChars(p.text, pred), behavior));
}

const NUMERIC = /\p{N}/u;
const WHITESPACE = new RegExp(`[${WS_CLASS_BODY}]`, 'u');
const PUNCT = /\p{P}/u;
const isNumeric = (cp: number): boolean => NUMERIC.test(String.fromCodePoint(cp));
const isWhitespace = (cp: number): boolean => WHITESPACE.test(String.fromCodePoint(cp));
const isPunct = (cp: number): boolean =>
  (cp < 0x80 && /[!-/:-@[-`{-~]/.test(String.fromCharCode(cp))) || PUNCT.test(String.fromCodePoint(cp));

let gpt2Regex: RegExp | null = null;
function gpt2(): RegExp {
  gpt2Regex ??= compileOniguruma(GPT2_PATTERN, 'the ByteLevel pre-tokenizer');
  return gpt2Regex;
}

/**
 * Whether the pre-tokenizer `json` describes keeps every byte of the text (splits that keep their
 * delimiters, byte-level and metaspace mapping); splitters that drop whitespace or delimiters do not.
 */
export function preTokenizerKeepsBytes(json: Json | undefined): boolean {
  if (json === undefined || json === null) return true;
  if (!isObject(json)) return false;
  switch (json.type) {
    case 'Sequence':
      return Array.isArray(json.pretokenizers) && json.pretokenizers.every(preTokenizerKeepsBytes);
    case 'ByteLevel':
    case 'Metaspace':
    case 'Digits':
      return true;
    case 'Split':
    case 'Punctuation':
      return json.behavior !== 'Removed';
    default:
      return false;
  }
}

export function buildPreTokenizer(json: Json | undefined, src: Source): PreTokenizer | null {
  if (json === undefined || json === null) return null;
  if (typeof json !== 'object' || Array.isArray(json)) throw unsupported(JSON.stringify(json), src);
  const type = componentType(json, src);
  switch (type) {
    case 'Sequence': {
      const parts = objects(arr(json, 'pretokenizers', src), 'Sequence.pretokenizers', src)
        .map((p) => buildPreTokenizer(p, src))
        .filter((p): p is PreTokenizer => p !== null);
      return (pieces) => {
        for (const p of parts) pieces = p(pieces);
        return pieces;
      };
    }
    case 'ByteLevel': {
      const addPrefixSpace = bool(json, 'add_prefix_space', true);
      const useRegex = bool(json, 'use_regex', true);
      const re = useRegex ? gpt2() : null;
      return (pieces) => {
        const out: Piece[] = [];
        for (const p0 of pieces) {
          const p =
            addPrefixSpace && !p0.text.startsWith(' ') ? { text: ' ' + p0.text, atStart: p0.atStart } : p0;
          const parts = re ? splitCover(p, coverFromSpans(p.text, findAll(re, p.text)), 'Isolated') : [p];
          for (const q of parts) out.push({ text: bytesToUnicodeString(q.text), atStart: q.atStart });
        }
        return out;
      };
    }
    case 'Split': {
      const spec = pattern(json, src);
      const re =
        spec.kind === 'regex'
          ? compileOniguruma(spec.value, src.file)
          : new RegExp(escapeRegExp(spec.value), 'gu');
      if (spec.kind === 'string' && spec.value === '') return (pieces) => pieces;
      return regexSplitter(re, behaviorOf(json, src, 'Isolated'), bool(json, 'invert', false));
    }
    case 'Digits':
      return charSplitter(isNumeric, bool(json, 'individual_digits', false) ? 'Isolated' : 'Contiguous');
    case 'Metaspace': {
      const replacement = str(json, 'replacement', src, '▁');
      if ([...replacement].length !== 1) throw unsupported(`Metaspace replacement ${replacement}`, src);
      let scheme: string;
      if (typeof json.prepend_scheme === 'string') scheme = json.prepend_scheme;
      else scheme = bool(json, 'add_prefix_space', true) ? 'always' : 'never';
      if (scheme !== 'always' && scheme !== 'first' && scheme !== 'never')
        throw unsupported(`Metaspace prepend_scheme ${scheme}`, src);
      const split = bool(json, 'split', true);
      const rcp = replacement.codePointAt(0)!;
      return (pieces) => {
        const out: Piece[] = [];
        for (const p0 of pieces) {
          let text = p0.text.split(' ').join(replacement);
          if (scheme === 'always' || (scheme === 'first' && p0.atStart))
            if (!text.startsWith(replacement)) text = replacement + text;
          const p = { text, atStart: p0.atStart };
          if (split)
            out.push(
              ...splitCover(
                p,
                coverFromChars(text, (cp) => cp === rcp),
                'MergedWithNext',
              ),
            );
          else out.push(p);
        }
        return out;
      };
    }
    case 'Whitespace': {
      const re = compileOniguruma('\\w+|[^\\w\\s]+', 'the Whitespace pre-tokenizer');
      return regexSplitter(re, 'Removed', true);
    }
    case 'WhitespaceSplit':
      return charSplitter(isWhitespace, 'Removed');
    case 'Punctuation':
      return charSplitter(isPunct, behaviorOf(json, src, 'Isolated'));
    case 'BertPreTokenizer': {
      const ws = charSplitter(isWhitespace, 'Removed');
      const punct = charSplitter(isPunct, 'Isolated');
      return (pieces) => punct(ws(pieces));
    }
    case 'CharDelimiterSplit': {
      const d = str(json, 'delimiter', src);
      const dcp = d.codePointAt(0)!;
      return charSplitter((cp) => cp === dcp, 'Removed');
    }
    default:
      throw unsupported(type, src);
  }
}
