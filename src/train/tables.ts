// Data files by path as rows of named columns, each row with where it sits in its file so errors can
// name it: JSONL (line N) and JSON arrays (row N) through text-rows.ts, CSV/TSV (line N, the record's
// first line; via csv-parse) and Parquet (row N; via hyparquet, one row group at a time).
import { readFileSync } from 'node:fs';
import { CsvError, parse } from 'csv-parse/sync';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import type { AsyncBuffer, FileMetaData } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import {
  nonEmptyText,
  readJSONRows,
  rowsFromList,
  tableKind,
  type RowSource,
  type SourceRow,
} from './text-rows.js';

/** Opens a data file of any supported kind. Errors name the file (and the line or row). */
export async function openRows(path: string): Promise<RowSource> {
  const kind = tableKind(path);
  if (kind === 'parquet') return openParquet(path);
  const text = nonEmptyText(readText(path), path);
  return rowsFromList(kind === 'json' ? readJSONRows(path, text) : readDelimited(path, text, kind), path);
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    throw new Error(`lorakit: cannot read data file ${path}.`);
  }
}

/**
 * A CSV or TSV file with a header line. Quoting is RFC 4180's (as pandas and Python's csv write it),
 * with stray quotes inside unquoted fields kept as text. Every value is a string.
 */
export function readDelimited(path: string, text: string, kind: 'csv' | 'tsv'): SourceRow[] {
  let records: { record: string[]; raw: string; info: { lines: number } }[];
  try {
    records = parse(text, {
      delimiter: kind === 'tsv' ? '\t' : ',',
      bom: true,
      skip_empty_lines: true,
      relax_quotes: true,
      relax_column_count: true,
      info: true,
      raw: true,
    }) as unknown as typeof records;
  } catch (e) {
    if (e instanceof CsvError) {
      const line = typeof e.lines === 'number' ? `line ${e.lines}: ` : '';
      throw new Error(
        `lorakit: ${path}: ${line}invalid ${kind.toUpperCase()} (${e.message.replace(/\.$/, '')}).`,
      );
    }
    throw e;
  }
  // info.lines is the line a record ends on; a quoted field may span lines, so the record's first
  // line is that less the line breaks inside it (raw also carries the blank lines skipped before it).
  const firstLine = (r: (typeof records)[number]): number =>
    r.info.lines -
    (r.raw
      .replace(/^(\r?\n)+/, '')
      .replace(/\r?\n$/, '')
      .match(/\n/g)?.length ?? 0);
  if (records.length === 0) throw new Error(`lorakit: ${path} has no rows.`);
  const header = records[0].record;
  const seen = new Set<string>();
  for (const name of header) {
    if (name !== '' && seen.has(name))
      throw new Error(`lorakit: ${path}: the header names column '${name}' twice.`);
    seen.add(name);
  }
  return records.slice(1).map((r) => {
    const at = `line ${firstLine(r)}`;
    if (r.record.length !== header.length)
      throw new Error(
        `lorakit: ${path}: ${at} has ${r.record.length} fields; the header has ${header.length}.`,
      );
    return { values: Object.fromEntries(header.map((name, i) => [name, r.record[i]])), at };
  });
}

/**
 * A Parquet file, read one row group at a time (only the columns asked for), so the decoded rows
 * of one group are held at once rather than the whole file's. Nulls are absent values; int64 values
 * come as bigints.
 */
async function openParquet(path: string): Promise<RowSource> {
  let file: AsyncBuffer;
  let metadata: FileMetaData;
  try {
    file = await asyncBufferFromFile(path);
  } catch {
    throw new Error(`lorakit: cannot read data file ${path}.`);
  }
  try {
    metadata = await parquetMetadataAsync(file);
  } catch (e) {
    throw new Error(`lorakit: ${path} is not a readable Parquet file: ${message(e)}.`);
  }
  if (metadata.num_rows === 0n) throw new Error(`lorakit: ${path} has no rows.`);
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  return {
    columns,
    async *rows(wanted: string[]) {
      let start = 0;
      for (const group of metadata.row_groups) {
        const end = start + Number(group.num_rows);
        let rows: Record<string, unknown>[];
        try {
          rows = await parquetReadObjects({
            file,
            metadata,
            columns: wanted,
            rowStart: start,
            rowEnd: end,
            compressors,
          });
        } catch (e) {
          throw new Error(`lorakit: ${path}: cannot read rows ${start + 1} to ${end} (${message(e)}).`);
        }
        for (let i = 0; i < rows.length; i++) yield { values: rows[i], at: `row ${start + i + 1}` };
        start = end;
      }
    },
  };
}

function message(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ').replace(/\.$/, '');
}
