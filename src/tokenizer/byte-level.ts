// GPT-2's byte ↔ printable-character map used by ByteLevel pre-tokenizers and decoders.

/** BYTE_CHAR[b] = the character that stands for byte b. */
export const BYTE_CHAR: string[] = (() => {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const out = new Array<string>(256);
  for (let i = 0; i < 256; i++) out[bs[i]] = String.fromCharCode(cs[i]);
  return out;
})();

/** CHAR_BYTE.get(code unit) = the byte it stands for. */
export const CHAR_BYTE: Map<number, number> = new Map(BYTE_CHAR.map((c, b) => [c.charCodeAt(0), b]));

/** UTF-8 bytes of `s`, each replaced by its ByteLevel character (lone surrogates become U+FFFD). */
export function bytesToUnicodeString(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    let cp = s.charCodeAt(i);
    if (cp < 0x80) {
      out += BYTE_CHAR[cp];
      continue;
    }
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < s.length) {
      const lo = s.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      } else cp = 0xfffd;
    } else if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
    if (cp < 0x800) {
      out += BYTE_CHAR[0xc0 | (cp >> 6)] + BYTE_CHAR[0x80 | (cp & 63)];
    } else if (cp < 0x10000) {
      out += BYTE_CHAR[0xe0 | (cp >> 12)] + BYTE_CHAR[0x80 | ((cp >> 6) & 63)] + BYTE_CHAR[0x80 | (cp & 63)];
    } else {
      out +=
        BYTE_CHAR[0xf0 | (cp >> 18)] +
        BYTE_CHAR[0x80 | ((cp >> 12) & 63)] +
        BYTE_CHAR[0x80 | ((cp >> 6) & 63)] +
        BYTE_CHAR[0x80 | (cp & 63)];
    }
  }
  return out;
}

const encoder = new TextEncoder();

/** Appends the bytes a token stands for: its ByteLevel bytes, or its own UTF-8 if any char is not a byte char. */
export function pushTokenBytes(token: string, out: number[]): void {
  const start = out.length;
  for (let i = 0; i < token.length; i++) {
    const b = CHAR_BYTE.get(token.charCodeAt(i));
    if (b === undefined) {
      out.length = start;
      for (const x of encoder.encode(token)) out.push(x);
      return;
    }
    out.push(b);
  }
}
