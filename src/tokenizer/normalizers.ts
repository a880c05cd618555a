// Normalizers of the HF tokenizers pipeline. Only the ids matter here, so each one is a plain string
// function (no alignment tracking). Each runs on one piece of input between added tokens.
import { bytesToUnicodeString } from './byte-level.js';
import {
  arr,
  bool,
  componentType,
  isObject,
  type Json,
  objects,
  pattern,
  type Source,
  str,
  unsupported,
} from './json.js';
import { compileOniguruma, WS_CLASS_BODY } from './regex.js';

export type Normalizer = (s: string) => string;

const LEADING_WS = new RegExp(`^[${WS_CLASS_BODY}]+`, 'u');
const TRAILING_WS = new RegExp(`[${WS_CLASS_BODY}]+$`, 'u');

/** Replaces every non-overlapping match of a literal or regex with `content` (no `$` expansion). */
export function makeReplacer(
  spec: ReturnType<typeof pattern>,
  content: string,
  src: Source,
): (s: string) => string {
  if (spec.kind === 'string') {
    const needle = spec.value;
    if (needle === '') return (s) => s;
    return (s) => (s.includes(needle) ? s.split(needle).join(content) : s);
  }
  const re = compileOniguruma(spec.value, src.file);
  return (s) => s.replace(re, () => content);
}

/**
 * Whether the normalizer `json` describes never shortens text in UTF-8 bytes (prepending, replacing
 * with something as long or longer, byte-level mapping); Unicode normalization, case mapping and
 * stripping may.
 */
export function normalizerKeepsBytes(json: Json | undefined): boolean {
  if (json === undefined || json === null) return true;
  if (!isObject(json)) return false;
  switch (json.type) {
    case 'Sequence':
      return Array.isArray(json.normalizers) && json.normalizers.every(normalizerKeepsBytes);
    case 'Prepend':
    case 'ByteLevel':
      return true;
    case 'Replace': {
      const p = isObject(json.pattern) ? json.pattern.String : json.pattern;
      return (
        typeof p === 'string' && typeof json.content === 'string' && utf8Length(json.content) >= utf8Length(p)
      );
    }
    default:
      return false;
  }
}

function utf8Length(s: string): number {
  return new TextEncoder().encode(s).length;
}

export function buildNormalizer(json: Json | undefined, src: Source): Normalizer | null {
  if (json === undefined || json === null) return null;
  if (typeof json !== 'object' || Array.isArray(json)) throw unsupported(JSON.stringify(json), src);
  const type = componentType(json, src);
  switch (type) {
    case 'Sequence': {
      const parts = objects(arr(json, 'normalizers', src), 'Sequence.normalizers', src)
        .map((n) => buildNormalizer(n, src))
        .filter((n): n is Normalizer => n !== null);
      if (parts.length === 0) return null;
      if (parts.length === 1) return parts[0];
      return (s) => {
        for (const n of parts) s = n(s);
        return s;
      };
    }
    case 'Prepend': {
      const p = str(json, 'prepend', src);
      return (s) => (s.length > 0 ? p + s : s);
    }
    case 'Replace':
      return makeReplacer(pattern(json, src), str(json, 'content', src), src);
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD':
      return (s) => s.normalize(type);
    case 'Lowercase':
      return (s) => s.toLowerCase();
    case 'Strip': {
      const left = bool(json, 'strip_left', true);
      const right = bool(json, 'strip_right', true);
      return (s) => {
        if (left) s = s.replace(LEADING_WS, '');
        if (right) s = s.replace(TRAILING_WS, '');
        return s;
      };
    }
    case 'StripAccents':
      return (s) => s.replace(/\p{M}/gu, '');
    case 'ByteLevel':
      return bytesToUnicodeString;
    default:
      throw unsupported(type, src);
  }
}
