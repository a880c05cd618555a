// Typed access to the loosely-typed JSON of tokenizer.json, with errors that name the file.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** JSON.parse with the error naming the file. */
export function parseJSONText(text: string, path: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch (e) {
    throw new Error(`lorakit: ${path} is not valid JSON (${e instanceof Error ? e.message : String(e)}).`);
  }
}

/** Where a component comes from (a file path or "GGUF metadata"), carried into every error. */
export interface Source {
  file: string;
}

export function unsupported(type: string, src: Source): Error {
  return new Error(`lorakit: unsupported tokenizer component ${type} in ${src.file}`);
}

export function malformed(what: string, src: Source): Error {
  return new Error(`lorakit: malformed tokenizer file ${src.file}: ${what}.`);
}

export function componentType(obj: JsonObject, src: Source): string {
  const t = obj.type;
  if (typeof t !== 'string') throw malformed('a component has no "type"', src);
  return t;
}

export function str(obj: JsonObject, key: string, src: Source, fallback?: string): string {
  const v = obj[key];
  if (typeof v === 'string') return v;
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
  }
  throw malformed(`"${key}" of ${String(obj.type ?? 'a component')} must be a string`, src);
}

export function bool(obj: JsonObject, key: string, fallback: boolean): boolean {
  const v = obj[key];
  return typeof v === 'boolean' ? v : fallback;
}

export function num(obj: JsonObject, key: string, src: Source, fallback?: number): number {
  const v = obj[key];
  if (typeof v === 'number') return v;
  if ((v === undefined || v === null) && fallback !== undefined) return fallback;
  throw malformed(`"${key}" of ${String(obj.type ?? 'a component')} must be a number`, src);
}

export function arr(obj: JsonObject, key: string, src: Source): Json[] {
  const v = obj[key];
  if (Array.isArray(v)) return v;
  throw malformed(`"${key}" of ${String(obj.type ?? 'a component')} must be a list`, src);
}

export function objects(list: Json[], what: string, src: Source): JsonObject[] {
  return list.map((v) => {
    if (!isObject(v)) throw malformed(`${what} must hold objects`, src);
    return v;
  });
}

/** A `pattern` field: {"String": s} or {"Regex": r}. */
export type PatternSpec = { kind: 'string'; value: string } | { kind: 'regex'; value: string };

export function pattern(obj: JsonObject, src: Source): PatternSpec {
  const p = obj.pattern;
  if (isObject(p)) {
    if (typeof p.String === 'string') return { kind: 'string', value: p.String };
    if (typeof p.Regex === 'string') return { kind: 'regex', value: p.Regex };
  }
  if (typeof p === 'string') return { kind: 'string', value: p };
  throw malformed(`"pattern" of ${String(obj.type)} must be {"String": ...} or {"Regex": ...}`, src);
}
