// Decoders of the HF tokenizers pipeline: each maps the token strings to new strings (decode_chain);
// the results are concatenated at the end.
import { pushTokenBytes } from './byte-level.js';
import {
  arr,
  bool,
  componentType,
  type Json,
  num,
  objects,
  pattern,
  type Source,
  str,
  unsupported,
} from './json.js';
import { makeReplacer } from './normalizers.js';

export type Decoder = (tokens: string[]) => string[];

/** UTF-8 with U+FFFD for ill-formed parts (as Rust's from_utf8_lossy), keeping a leading BOM. */
const lossy = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function firstChar(s: string): string {
  return String.fromCodePoint(s.codePointAt(0)!);
}

export function buildDecoder(json: Json | undefined, src: Source): Decoder | null {
  if (json === undefined || json === null) return null;
  if (typeof json !== 'object' || Array.isArray(json)) throw unsupported(JSON.stringify(json), src);
  const type = componentType(json, src);
  switch (type) {
    case 'Sequence': {
      const parts = objects(arr(json, 'decoders', src), 'Sequence.decoders', src)
        .map((d) => buildDecoder(d, src))
        .filter((d): d is Decoder => d !== null);
      return (tokens) => {
        for (const d of parts) tokens = d(tokens);
        return tokens;
      };
    }
    case 'ByteLevel':
      return (tokens) => {
        const bytes: number[] = [];
        for (const t of tokens) pushTokenBytes(t, bytes);
        return [lossy.decode(new Uint8Array(bytes))];
      };
    case 'ByteFallback':
      return (tokens) => {
        const out: string[] = [];
        let pending: number[] = [];
        const flush = (): void => {
          if (pending.length === 0) return;
          try {
            out.push(strict.decode(new Uint8Array(pending)));
          } catch {
            for (let i = 0; i < pending.length; i++) out.push('\ufffd');
          }
          pending = [];
        };
        for (const t of tokens) {
          // tokens.len() == 6 counts bytes; "<0xNN>" is ASCII, so UTF-16 length agrees when it matches.
          const m =
            t.length === 6 && t.startsWith('<0x') && t.endsWith('>')
              ? /^<0x([0-9A-Fa-f]{2})>$/.exec(t)
              : null;
          if (m) pending.push(parseInt(m[1], 16));
          else {
            flush();
            out.push(t);
          }
        }
        flush();
        return out;
      };
    case 'Fuse':
      return (tokens) => [tokens.join('')];
    case 'Replace': {
      const replace = makeReplacer(pattern(json, src), str(json, 'content', src), src);
      return (tokens) => tokens.map(replace);
    }
    case 'Strip': {
      const content = firstChar(str(json, 'content', src));
      const start = num(json, 'start', src, 0);
      const stop = num(json, 'stop', src, 0);
      return (tokens) =>
        tokens.map((t) => {
          const chars = [...t];
          let a = 0;
          for (let i = 0; i < Math.min(start, chars.length); i++) {
            if (chars[i] === content) a = i + 1;
            else break;
          }
          let b = chars.length;
          for (let i = 0; i < stop; i++) {
            const idx = chars.length - i - 1;
            if (idx < 0) break;
            if (chars[idx] === content) b = idx;
            else break;
          }
          return a < b ? chars.slice(a, b).join('') : '';
        });
    }
    case 'Metaspace': {
      const replacement = firstChar(str(json, 'replacement', src, '▁'));
      let scheme: string;
      if (typeof json.prepend_scheme === 'string') scheme = json.prepend_scheme;
      else scheme = bool(json, 'add_prefix_space', true) ? 'always' : 'never';
      return (tokens) =>
        tokens.map((t, i) => {
          let s = '';
          for (const ch of t) {
            if (ch === replacement) {
              if (!(i === 0 && scheme !== 'never')) s += ' ';
            } else s += ch;
          }
          return s;
        });
    }
    default:
      throw unsupported(type, src);
  }
}
