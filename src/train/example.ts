// One training example as batching takes it: token ids and their labels. Apart from data.ts, which
// reads data files (Node), so that batching works in a browser too.

/** The label of a token no loss is taken on (as PyTorch's ignore_index). */
export const IGNORE = -100;

export interface Example {
  ids: number[];
  /** Same length as ids; IGNORE where the token is not a target. */
  labels: number[];
}
