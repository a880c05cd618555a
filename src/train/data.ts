// Training data from a file by path (Node): tables.ts reads the file's rows, data-rows.ts makes the
// examples (and takes a JSON or JSONL file's text where there is no file system).
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { examplesFromRows, type DataOptions, type LoadedData } from './data-rows.js';
import { openRows } from './tables.js';

export * from './data-rows.js';

/**
 * Loads and tokenizes a data file: JSONL, JSON, CSV, TSV or Parquet (by extension). Rows are read
 * and tokenized one at a time (Parquet: one row group at a time). A tokenizer is needed for every
 * format but pre-tokenized {"input_ids"} rows.
 */
export async function loadData(
  path: string,
  tokenizer: Tokenizer | null,
  opts: DataOptions,
): Promise<LoadedData> {
  return examplesFromRows(await openRows(path), path, tokenizer, opts);
}
