// Translation of the Oniguruma (Ruby syntax) patterns found in tokenizer.json files into JS RegExp
// source for the `u` flag. Oniguruma's shorthand classes are Unicode-aware where JS's are ASCII-only
// (\w, \d, \b) or use another whitespace set (\s), so those are rewritten explicitly; inline
// case-insensitive groups, possessive quantifiers and atomic groups, which Node 20 lacks, are
// emulated; `^`/`$` are line anchors in Ruby syntax.

/** Unicode White_Space, as Oniguruma's \s and Rust's char::is_whitespace (JS \s adds U+FEFF, lacks U+0085). */
export const WS_CLASS_BODY =
  '\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
/**
 * Oniguruma's Unicode \w, measured against it over U+0001..U+2FFFF: Alphabetic, marks, decimal digits,
 * connector punctuation, and the Latin-1 ² ³ ¹ ¼ ½ ¾ (newer Unicode versions in Node add a few
 * hundred recently assigned characters Oniguruma's tables lack).
 */
const WORD_CLASS_BODY = '\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\u00b2\\u00b3\\u00b9\\u00bc-\\u00be';
const HEX_CLASS_BODY = '0-9a-fA-F';

const SYNTAX_CHARS = new Set('^$\\.*+?()[]{}|/');

export class RegexTranslationError extends Error {}

interface ClassPart {
  /** Source that can sit inside a JS `[...]` class. */
  inner: string;
  /** A negated shorthand (\S, \W, \H) that JS cannot express inside a class without changing meaning. */
  negated?: string;
}

function propertyEscape(name: string, negate: boolean): string {
  let n = name;
  let neg = negate;
  if (n.startsWith('^')) {
    n = n.slice(1);
    neg = !neg;
  }
  const p = neg ? 'P' : 'p';
  for (const candidate of [n, `Script=${n}`, `General_Category=${n}`]) {
    try {
      new RegExp(`\\${p}{${candidate}}`, 'u');
      return `\\${p}{${candidate}}`;
    } catch {
      // try the next spelling
    }
  }
  throw new RegexTranslationError(`unknown Unicode property \\p{${name}}`);
}

/** Case variants of one code point, as a class body (only letters with a simple case pair). */
function caseVariants(ch: string): string {
  const lo = ch.toLowerCase();
  const up = ch.toUpperCase();
  const set = new Set([ch]);
  if ([...lo].length === 1) set.add(lo);
  if ([...up].length === 1) set.add(up);
  return [...set].map(escapeClassChar).join('');
}

function escapeClassChar(ch: string): string {
  return '\\^-[]/'.includes(ch) || ch === '\\' ? `\\${ch}` : ch;
}

function escapeLiteral(ch: string): string {
  return SYNTAX_CHARS.has(ch) ? `\\${ch}` : ch;
}

class Translator {
  private i = 0;
  private atomicCount = 0;
  /** Open groups around the current position. */
  private depth = 0;
  private readonly cps: string[];

  constructor(src: string) {
    this.cps = [...src];
  }

  translate(): string {
    const out = this.sequence(false, false);
    if (this.i < this.cps.length) throw new RegexTranslationError(`unbalanced ')' at ${this.i}`);
    return out;
  }

  private peek(k = 0): string | undefined {
    return this.cps[this.i + k];
  }

  /** A sequence of alternatives up to ')' or the end. */
  private sequence(inGroup: boolean, ci: boolean): string {
    let out = '';
    while (this.i < this.cps.length) {
      const c = this.peek()!;
      if (c === ')') {
        if (!inGroup) throw new RegexTranslationError(`unbalanced ')' at ${this.i}`);
        return out;
      }
      if (c === '|') {
        this.i++;
        out += '|';
        continue;
      }
      const atom = this.atom(ci);
      out += this.quantified(atom);
    }
    if (inGroup) throw new RegexTranslationError('missing )');
    return out;
  }

  /** Applies a following quantifier; possessive ones (*+ ++ ?+) become atomic groups. */
  private quantified(atom: string): string {
    const c = this.peek();
    let q = '';
    if (c === '*' || c === '+' || c === '?') {
      q = c;
      this.i++;
    } else if (c === '{') {
      const rest = this.cps.slice(this.i).join('');
      const m = /^\{(\d*)(,(\d*))?\}/.exec(rest);
      if (!m || (m[1] === '' && m[3] === undefined)) return atom; // a literal '{' in Ruby syntax
      q = m[0].startsWith('{,') ? `{0${m[0].slice(1)}` : m[0];
      this.i += [...m[0]].length;
    } else {
      return atom;
    }
    const next = this.peek();
    if (next === '?') {
      this.i++;
      return `${atom}${q}?`;
    }
    // In Ruby syntax x{n,m}+ is (x{n,m})+, not possessive; *+ ++ ?+ are possessive.
    if (next === '+' && q.startsWith('{')) return this.quantified(`(?:${atom}${q})`);
    if (next === '+') {
      this.i++;
      return this.atomic(`${atom}${q}`);
    }
    return `${atom}${q}`;
  }

  /** (?>x): a lookahead captures what x matches, and a backreference consumes exactly that. */
  private atomic(body: string): string {
    const name = `lkAtomic${this.atomicCount++}`;
    return `(?=(?<${name}>${body}))\\k<${name}>`;
  }

  private atom(ci: boolean): string {
    const c = this.cps[this.i++];
    switch (c) {
      case '(':
        this.depth++;
        try {
          return this.group(ci);
        } finally {
          this.depth--;
        }
      case '[':
        return this.charClass(ci);
      case '.':
        return '[^\\n]';
      case '^':
        return '(?<![^\\n])';
      case '$':
        return '(?![^\\n])';
      case '\\':
        return this.escapeOutside(ci);
      default:
        if (ci && /\p{L}/u.test(c)) {
          const v = caseVariants(c);
          return [...v].length > 1 ? `[${v}]` : v;
        }
        return escapeLiteral(c);
    }
  }

  private group(ci: boolean): string {
    if (this.peek() !== '?') {
      const body = this.sequence(true, ci);
      this.i++;
      return `(${body})`;
    }
    this.i++;
    const k = this.peek();
    if (k === ':' || k === '=' || k === '!') {
      this.i++;
      const body = this.sequence(true, ci);
      this.i++;
      return `(?${k}${body})`;
    }
    if (k === '<' && (this.peek(1) === '=' || this.peek(1) === '!')) {
      const kind = this.peek(1);
      this.i += 2;
      const body = this.sequence(true, ci);
      this.i++;
      return `(?<${kind}${body})`;
    }
    if (k === '>') {
      this.i++;
      const body = this.sequence(true, ci);
      this.i++;
      return this.atomic(body);
    }
    if (k === '<' || k === "'") {
      const close = k === '<' ? '>' : "'";
      this.i++;
      let name = '';
      while (this.i < this.cps.length && this.peek() !== close) name += this.cps[this.i++];
      this.i++;
      const body = this.sequence(true, ci);
      this.i++;
      return `(?<${name}>${body})`;
    }
    if (k === '#') {
      while (this.i < this.cps.length && this.peek() !== ')') this.i++;
      this.i++;
      return '';
    }
    // Inline options: (?i:...), (?i), (?-i:...); only i is meaningful for these patterns.
    let flags = '';
    while (this.i < this.cps.length && /[imx-]/.test(this.peek()!)) flags += this.cps[this.i++];
    const on = flags.split('-')[0];
    const off = flags.split('-')[1] ?? '';
    if (on.includes('x') || on.includes('m'))
      throw new RegexTranslationError(`unsupported inline option (?${flags})`);
    const nextCi = on.includes('i') ? true : off.includes('i') ? false : ci;
    if (this.peek() === ':') {
      this.i++;
      const body = this.sequence(true, nextCi);
      this.i++;
      return `(?:${body})`;
    }
    if (this.peek() === ')' && flags !== '') {
      // Isolated option: applies to the rest of the enclosing group, all its alternatives included
      // (Oniguruma: /ab(?i)c|def/ == /ab(?i:c|def)/).
      this.i++;
      return `(?:${this.sequence(this.depth > 1, nextCi)})`;
    }
    throw new RegexTranslationError(`unsupported group syntax (?${flags}${this.peek() ?? ''}`);
  }

  private escapeOutside(ci: boolean): string {
    const part = this.escape(true);
    if (typeof part === 'string') return part;
    if (part.negated !== undefined) return `[^${part.negated}]`;
    if ([...part.inner].length === 1) {
      if (ci && /\p{L}/u.test(part.inner)) return `[${caseVariants(part.inner)}]`;
      return escapeLiteral(part.inner);
    }
    if (/^\\[pP]\{[^}]*\}$/.test(part.inner)) return part.inner;
    return `[${part.inner}]`;
  }

  /**
   * Reads an escape after '\'. Returns a string for anchors/backrefs (outside classes only), or a
   * class part: `inner` usable inside [...], `negated` for \S \W \H.
   */
  private escape(outside: boolean): string | ClassPart {
    const c = this.cps[this.i++];
    if (c === undefined) throw new RegexTranslationError('trailing backslash');
    switch (c) {
      case 's':
        return { inner: WS_CLASS_BODY };
      case 'S':
        return { inner: '', negated: WS_CLASS_BODY };
      case 'w':
        return { inner: WORD_CLASS_BODY };
      case 'W':
        return { inner: '', negated: WORD_CLASS_BODY };
      case 'd':
        return { inner: '\\p{Nd}' };
      case 'D':
        return { inner: '\\P{Nd}' };
      case 'h':
        return { inner: HEX_CLASS_BODY };
      case 'H':
        return { inner: '', negated: HEX_CLASS_BODY };
      case 'p':
      case 'P': {
        if (this.peek() !== '{') throw new RegexTranslationError('expected { after \\p');
        this.i++;
        let name = '';
        while (this.i < this.cps.length && this.peek() !== '}') name += this.cps[this.i++];
        this.i++;
        return { inner: propertyEscape(name, c === 'P') };
      }
      case 'x': {
        if (this.peek() === '{') {
          this.i++;
          let hex = '';
          while (this.i < this.cps.length && this.peek() !== '}') hex += this.cps[this.i++];
          this.i++;
          return { inner: String.fromCodePoint(parseInt(hex, 16)) };
        }
        const hex = this.cps.slice(this.i, this.i + 2).join('');
        this.i += 2;
        return { inner: String.fromCodePoint(parseInt(hex, 16)) };
      }
      case 'u': {
        const hex = this.cps.slice(this.i, this.i + 4).join('');
        this.i += 4;
        return { inner: String.fromCodePoint(parseInt(hex, 16)) };
      }
      case 't':
        return { inner: '\t' };
      case 'n':
        return { inner: '\n' };
      case 'r':
        return { inner: '\r' };
      case 'f':
        return { inner: '\f' };
      case 'v':
        return { inner: '\v' };
      case 'a':
        return { inner: '\x07' };
      case 'e':
        return { inner: '\x1b' };
      case '0':
        return { inner: '\0' };
      case 'A':
        if (outside) return '(?<![\\s\\S])';
        break;
      case 'z':
        if (outside) return '(?![\\s\\S])';
        break;
      case 'Z':
        if (outside) return '(?=\\n?(?![\\s\\S]))';
        break;
      case 'b':
        if (outside)
          return `(?:(?<=[${WORD_CLASS_BODY}])(?![${WORD_CLASS_BODY}])|(?<![${WORD_CLASS_BODY}])(?=[${WORD_CLASS_BODY}]))`;
        return { inner: '\b' };
      case 'B':
        if (outside)
          return `(?:(?<=[${WORD_CLASS_BODY}])(?=[${WORD_CLASS_BODY}])|(?<![${WORD_CLASS_BODY}])(?![${WORD_CLASS_BODY}]))`;
        break;
      case 'k':
        if (outside && this.peek() === '<') {
          let name = '';
          this.i++;
          while (this.i < this.cps.length && this.peek() !== '>') name += this.cps[this.i++];
          this.i++;
          return `\\k<${name}>`;
        }
        break;
      default:
        if (/[1-9]/.test(c) && outside) return `\\${c}`;
        if (!/[A-Za-z0-9]/.test(c)) return { inner: c };
    }
    throw new RegexTranslationError(`unsupported escape \\${c}`);
  }

  private charClass(ci: boolean): string {
    let negate = false;
    if (this.peek() === '^') {
      negate = true;
      this.i++;
    }
    let inner = '';
    const negatedParts: string[] = [];
    let first = true;
    while (this.i < this.cps.length) {
      const c = this.cps[this.i];
      if (c === ']' && !first) break;
      first = false;
      if (c === '[') {
        if (this.peek(1) === ':') {
          const rest = this.cps.slice(this.i).join('');
          const m = /^\[:(\^?)([a-z]+):\]/.exec(rest);
          if (!m) throw new RegexTranslationError('bad POSIX bracket');
          this.i += m[0].length;
          const body = posixClass(m[2]);
          if (m[1]) negatedParts.push(body);
          else inner += body;
          continue;
        }
        throw new RegexTranslationError('nested character classes are not supported');
      }
      if (c === '&' && this.peek(1) === '&')
        throw new RegexTranslationError('class intersection (&&) is not supported');
      this.i++;
      let piece: string;
      if (c === '\\') {
        const part = this.escape(false);
        if (typeof part === 'string') throw new RegexTranslationError('anchor inside a class');
        if (part.negated !== undefined) {
          negatedParts.push(part.negated);
          continue;
        }
        piece = [...part.inner].length === 1 ? escapeClassChar(part.inner) : part.inner;
      } else {
        piece = escapeClassChar(c);
      }
      // A range a-b: keep the '-' only between two single characters.
      if (this.peek() === '-' && this.peek(1) !== ']' && this.peek(1) !== undefined) {
        this.i++;
        let hi = this.cps[this.i++];
        if (hi === '\\') {
          const part = this.escape(false);
          if (typeof part === 'string' || part.negated !== undefined || [...part.inner].length !== 1)
            throw new RegexTranslationError('bad class range');
          hi = part.inner;
        }
        inner += `${piece}-${escapeClassChar(hi)}`;
        if (ci) inner += caseRange(piece.replace(/^\\/, ''), hi);
        continue;
      }
      inner += piece;
      if (ci && [...piece].length === 1 && /\p{L}/u.test(piece)) inner += caseVariants(piece);
    }
    if (this.cps[this.i] !== ']') throw new RegexTranslationError('missing ]');
    this.i++;
    if (negatedParts.length === 0) return negate ? `[^${inner}]` : `[${inner}]`;
    // [x\S] = x or not-whitespace; [^x\S] = whitespace and not x.
    const alts = negatedParts.map((n) => `[^${n}]`);
    if (!negate) return `(?:${[inner ? `[${inner}]` : '', ...alts].filter(Boolean).join('|')})`;
    const look = inner ? `(?![${inner}])` : '';
    return `(?:${look}${negatedParts.map((n) => `(?=[${n}])`).join('')}[\\s\\S])`;
  }
}

function caseRange(lo: string, hi: string): string {
  if (/^[a-z]$/.test(lo) && /^[a-z]$/.test(hi)) return `${lo.toUpperCase()}-${hi.toUpperCase()}`;
  if (/^[A-Z]$/.test(lo) && /^[A-Z]$/.test(hi)) return `${lo.toLowerCase()}-${hi.toLowerCase()}`;
  return '';
}

/** POSIX brackets with Oniguruma's Unicode meanings (measured against it, as WORD_CLASS_BODY). */
function posixClass(name: string): string {
  switch (name) {
    case 'alpha':
      return '\\p{Alphabetic}';
    case 'digit':
      return '\\p{Nd}';
    case 'alnum':
      return '\\p{Alphabetic}\\p{Nd}';
    case 'space':
      return WS_CLASS_BODY;
    case 'upper':
      return '\\p{Uppercase}';
    case 'lower':
      return '\\p{Lowercase}';
    case 'punct':
      return '\\p{P}\\p{S}';
    case 'xdigit':
      return HEX_CLASS_BODY;
    case 'word':
      return '\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}';
    default:
      throw new RegexTranslationError(`unsupported POSIX class [:${name}:]`);
  }
}

/** Oniguruma pattern → JS RegExp source (for the `u` flag). Throws RegexTranslationError. */
export function translateOnigurumaPattern(pattern: string): string {
  return new Translator(pattern).translate();
}

/** Compiles an Oniguruma pattern from a tokenizer file as a global, Unicode JS RegExp. */
export function compileOniguruma(pattern: string, where: string): RegExp {
  let src: string;
  try {
    src = translateOnigurumaPattern(pattern);
    return new RegExp(src, 'gu');
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(`lorakit: cannot use the regex ${JSON.stringify(pattern)} in ${where} (${why}).`);
  }
}

/** Escapes a literal string for use in a JS RegExp. */
export function escapeRegExp(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
}

/** One match span of a pattern inside a string: [start, end) in UTF-16 units. */
export type Span = [number, number];

/**
 * All matches of `re` (global) in `s`, like Rust's find_iter: an empty match right where the previous
 * match ended is skipped, and the search moves one code point past any empty match.
 */
export function findAll(re: RegExp, s: string): Span[] {
  const spans: Span[] = [];
  re.lastIndex = 0;
  let lastEnd = -1;
  while (re.lastIndex <= s.length) {
    const m = re.exec(s);
    if (m === null) break;
    const start = m.index;
    const end = start + m[0].length;
    if (start === end) {
      const cp = s.codePointAt(start);
      re.lastIndex = start + (cp !== undefined && cp > 0xffff ? 2 : 1);
      if (start === lastEnd) continue;
    }
    spans.push([start, end]);
    lastEnd = end;
  }
  return spans;
}
