// Quoting text that came out of a file (a GGUF key, a tensor name, a JSON value) inside an error
// message: a corrupt file can hold megabytes of binary where a name belongs, and an error must stay
// one short, readable line whatever the file holds.

/** Controls, format characters (bidi overrides), separators, surrogates, private use, unassigned. */
const UNPRINTABLE = /[\p{C}\p{Z}]/u;

const SHORT: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };

/**
 * `s` escaped as in a string literal (plus every non-printable character), cut where the escaped text
 * would pass `max` characters: a name of binary bytes escapes to six characters each.
 */
function escape(s: string, max: number, quotes: boolean): { text: string; cut: boolean } {
  let text = '';
  // Code points, so a cut never splits a surrogate pair; the loop stops at the cut, however long s is.
  for (const c of s) {
    let e: string;
    if (quotes && (c === "'" || c === '\\')) e = `\\${c}`;
    else if (SHORT[c]) e = SHORT[c];
    else if (c !== ' ' && UNPRINTABLE.test(c)) {
      e = '';
      for (let i = 0; i < c.length; i++) e += `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`;
    } else e = c;
    if (text.length + e.length > max) return { text, cut: true };
    text += e;
  }
  return { text, cut: false };
}

/**
 * `s` as a single-quoted string literal (the style of lorakit's messages), with JavaScript's escapes
 * and every non-printable character escaped, of at most `max` characters between the quotes; a longer
 * one is cut and marked with its length.
 */
export function quote(s: string, max = 80): string {
  const e = escape(s, max, true);
  return e.cut ? `'${e.text}…' (${s.length} characters)` : `'${e.text}'`;
}

/** A value from a parsed file (a JSON field) for a message: strings quoted, others as short JSON. */
export function quoteValue(v: unknown, max = 80): string {
  if (typeof v === 'string') return quote(v, max);
  if (typeof v === 'bigint') return v.toString();
  let json: string | undefined;
  try {
    json = JSON.stringify(v);
  } catch {
    json = undefined;
  }
  if (json === undefined) return typeof v;
  const e = escape(json, max, false);
  return e.cut ? `${e.text}…` : e.text;
}

/** A library's error message (JSON.parse's, the system's) as one short line with nothing unprintable. */
export function oneLine(message: string, max = 160): string {
  const e = escape(message.replace(/\s+/g, ' ').trim(), max, false);
  return e.cut ? `${e.text}…` : e.text;
}
