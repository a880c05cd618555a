import { crossEntropy } from '../ops/cross-entropy.js';
import { linearCrossEntropy } from '../ops/linear-cross-entropy.js';
import type { Batch, CausalLM, ForwardOptions } from '../models/llama.js';
import type { Tensor } from '../tensor/tensor.js';

/**
 * Sum of next-token NLL over the batch's targets (IGNORE excluded), a scalar tensor. Callers divide by
 * the token count of the whole optimizer step, so the loss is a token-weighted mean however rows are
 * batched, padded or accumulated. A plain frozen head goes through the fused chunked head + loss, so
 * full-vocabulary logits are never materialized; a head with an adapter takes the general path.
 */
export function lossSum(model: CausalLM, batch: Batch, targets: Tensor, opts: ForwardOptions = {}): Tensor {
  const adapter = opts.ctx?.adapter === undefined ? model.activeAdapter : opts.ctx.adapter;
  const headAdapted = adapter !== null && model.lmHead.adapters.has(adapter);
  const hidden = model.hidden(batch, opts);
  const [B, T, D] = hidden.shape;
  // The fused op reads targets on the host (it checks and gathers them there).
  if (!headAdapted && !model.lmHead.bias)
    return linearCrossEntropy(hidden.reshape([B * T, D]), model.lmHead.weight, targets);
  const logits = model.lmHead.forward(hidden, { adapter, training: false, seed: 0, ...opts.ctx });
  const onDevice = targets.device === logits.device ? targets : targets.toDevice(logits.device); // freed by the caller's scope
  return crossEntropy(logits.reshape([B * T, model.config.vocabSize]), onDevice);
}
