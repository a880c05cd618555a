// GGUF metadata entries as a file holds them: a key, a value type and a value. The writer
// (export/gguf-writer.ts) encodes them; the tokenizer's GGUF metadata (tokenizer/gguf-meta.ts) makes them.

/** GGUF metadata value types (gguf.GGUFValueType). */
export const GGUF_TYPE = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

export type ScalarKind = Exclude<keyof typeof GGUF_TYPE, 'array'>;

/** One metadata entry: a typed scalar, or an array of one scalar type. */
export type GGUFKV =
  | { key: string; type: 'string'; value: string }
  | { key: string; type: 'bool'; value: boolean }
  | { key: string; type: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64'; value: number }
  | { key: string; type: 'u64' | 'i64'; value: number | bigint }
  | { key: string; type: 'array'; elem: 'string'; value: readonly string[] }
  | { key: string; type: 'array'; elem: 'bool'; value: readonly boolean[] }
  | { key: string; type: 'array'; elem: Exclude<ScalarKind, 'string' | 'bool'>; value: ArrayLike<number> };
