import { crossEntropy } from '../ops/cross-entropy.js';
import type { Batch, CausalLM, ForwardOptions } from '../models/llama.js';
import type { Tensor } from '../tensor/tensor.js';

/**
 * Sum of next-token NLL over the batch's targets (IGNORE excluded), a scalar tensor. Callers divide by
 * the token count of the whole optimizer step, so the loss is a token-weighted mean however rows are
 * batched, padded or accumulated.
 */
export function lossSum(model: CausalLM, batch: Batch, targets: Tensor, opts: ForwardOptions = {}): Tensor {
  const logits = model.logits(batch, opts);
  const [B, T, V] = logits.shape;
  return crossEntropy(logits.reshape([B * T, V]), targets);
}
