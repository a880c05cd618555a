// Flags that say which columns of a data file to read, shared by train (and its YAML config) and eval.
import { columnMapConflict, type ColumnMap } from '../train/data.js';
import { UsageError, type Specs } from './args.js';

export const DATA_FLAGS = {
  'text-column': { type: 'string', help: 'column with the text to learn (default: text)' },
  'prompt-column': { type: 'string', help: 'column with the prompt (default: prompt)' },
  'completion-column': { type: 'string', help: 'column with the completion (default: completion)' },
  'messages-column': {
    type: 'string',
    help: 'column with a conversation, a list of {role, content} (default: messages)',
  },
} as const satisfies Specs;

/** The column mapping the flags give, checked before any model is loaded. */
export function columnsFromFlags(
  f: {
    'text-column'?: string;
    'prompt-column'?: string;
    'completion-column'?: string;
    'messages-column'?: string;
  },
  command: string,
): ColumnMap {
  const map: ColumnMap = {
    text: f['text-column'],
    prompt: f['prompt-column'],
    completion: f['completion-column'],
    messages: f['messages-column'],
  };
  const conflict = columnMapConflict(map);
  if (conflict) throw new UsageError(`lorakit ${command}: ${conflict}`);
  return map;
}
