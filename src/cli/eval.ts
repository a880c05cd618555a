import { loadData } from '../train/data.js';
import { evaluate } from '../train/evaluate.js';
import { parseFlags, UsageError, type Specs } from './args.js';
import { columnsFromFlags, DATA_FLAGS } from './data-flags.js';
import { MODEL_FLAGS, openModelOptionalTokenizer } from './run.js';

export const SYNOPSIS = '--model M [--adapter DIR] --data FILE [--json]';
export const HELP = 'mean next-token loss of a data file';

export const FLAGS = {
  ...MODEL_FLAGS,
  data: { type: 'string', help: 'evaluation data (JSONL, JSON, CSV, TSV or Parquet)' },
  ...DATA_FLAGS,
  json: { type: 'bool', help: 'print one JSON object' },
  'batch-size': { type: 'int', help: 'rows per batch (8); does not change the result', min: 1 },
  'max-seq-len': { type: 'int', help: 'longest row in tokens (1024)', min: 2 },
  'completion-only': { type: 'bool', help: 'loss only on completions / assistant turns' },
} as const satisfies Specs;

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, FLAGS, 'eval');
  if (!f.data) throw new UsageError('lorakit eval: --data is required.');
  const columns = columnsFromFlags(f, 'eval');
  const { model, tokenizer } = await openModelOptionalTokenizer('eval', f);
  try {
    const maxSeqLen = f['max-seq-len'] ?? 1024;
    const data = await loadData(f.data, tokenizer, {
      completionOnly: f['completion-only'] === true,
      maxSeqLen,
      columns,
      vocabSize: model.config.vocabSize,
    });
    if (data.truncated > 0)
      process.stderr.write(
        `lorakit: warning: ${data.truncated} rows of ${f.data} were longer than --max-seq-len ${maxSeqLen} and were cut.\n`,
      );
    const r = await evaluate(model, data.examples, f['batch-size'] ?? 8);
    if (f.json)
      process.stdout.write(
        `${JSON.stringify({ loss: r.loss, perplexity: r.perplexity, tokens: r.tokens })}\n`,
      );
    else
      process.stdout.write(
        `loss ${r.loss.toFixed(6)}  perplexity ${r.perplexity.toFixed(4)}  tokens ${r.tokens}\n`,
      );
    return 0;
  } finally {
    model.dispose();
  }
}
