// Rows of a JSON or JSONL data file from its text, each with where it sits in the file so errors can
// name it (line N of JSONL, row N of a JSON array). Nothing here reads a file, so a browser uses it on
// a File's text; tables.ts reads files by path and adds CSV, TSV and Parquet.

export interface SourceRow {
  values: Record<string, unknown>;
  /** Where the row is, for errors: "line 7" (JSONL, CSV, TSV) or "row 3" (JSON array, Parquet; from 1). */
  at: string;
}

export interface RowSource {
  /** The column names: a CSV/TSV header, a Parquet schema's top-level fields, a JSON file's first row's keys. */
  columns: string[];
  /** The rows, decoding only `columns` where the format allows it (Parquet). */
  rows(columns: string[]): AsyncIterable<SourceRow>;
}

export type TableKind = 'json' | 'csv' | 'tsv' | 'parquet';

/** The kind of a data file, from its extension; anything not CSV, TSV or Parquet is read as JSON/JSONL. */
export function tableKind(path: string): TableKind {
  const ext = /\.[^./\\]*$/.exec(path)?.[0].toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.tsv') return 'tsv';
  if (ext === '.parquet') return 'parquet';
  return 'json';
}

/** A file's text, refused in one sentence when it holds nothing. */
export function nonEmptyText(text: string, path: string): string {
  if (text.trim().length === 0) throw new Error(`lorakit: ${path} is empty.`);
  return text;
}

/** Rows already parsed, as a RowSource (the columns are the first row's keys). */
export function rowsFromList(rows: SourceRow[], path: string): RowSource {
  if (rows.length === 0) throw new Error(`lorakit: ${path} has no rows.`);
  return {
    columns: Object.keys(rows[0].values),
    async *rows() {
      yield* rows;
    },
  };
}

/** Parses a .jsonl (one object per line) or .json (an array) file. */
export function readJSONRows(path: string, text: string): SourceRow[] {
  const rows: SourceRow[] = [];
  const add = (value: unknown, at: string): void => {
    if (value === null || typeof value !== 'object' || Array.isArray(value))
      throw new Error(`lorakit: ${path}: ${at} is not a JSON object.`);
    rows.push({ values: value as Record<string, unknown>, at });
  };
  if (text.trimStart().startsWith('[')) {
    let list: unknown;
    try {
      list = JSON.parse(text);
    } catch (e) {
      throw new Error(`lorakit: ${path}: invalid JSON (${e instanceof Error ? e.message : String(e)}).`);
    }
    if (!Array.isArray(list)) throw new Error(`lorakit: ${path}: expected a JSON array of rows.`);
    list.forEach((v, i) => add(v, `row ${i + 1}`));
    return rows;
  }
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new Error(`lorakit: ${path}: line ${i + 1} is not valid JSON.`);
    }
    add(value, `line ${i + 1}`);
  });
  return rows;
}

/**
 * The rows of a JSON or JSONL file's text (or its UTF-8 bytes, decoded as Node's readFileSync does:
 * a byte-order mark is kept). `path` names the file in messages; a CSV, TSV or Parquet name is
 * refused, since those are read by path (tables.ts).
 */
export function jsonRowSource(text: string | Uint8Array, path: string): RowSource {
  const kind = tableKind(path);
  if (kind !== 'json')
    throw new Error(
      `lorakit: ${path}: ${kind.toUpperCase()} data is read from a file by path, which needs Node; give JSONL or JSON text instead.`,
    );
  const s = typeof text === 'string' ? text : new TextDecoder('utf-8', { ignoreBOM: true }).decode(text);
  return rowsFromList(readJSONRows(path, nonEmptyText(s, path)), path);
}
