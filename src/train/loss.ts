import { checkTargets, crossEntropy } from '../ops/cross-entropy.js';
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
  // On a GPU the targets are checked here and copied before the forward is queued: the copy waits for
  // the stream, and at this point the stream is (nearly) idle. The copy is freed by the caller's scope.
  let onDevice = targets;
  if (model.device !== 'cpu' && targets.device === 'cpu') {
    checkTargets('lossSum', targets, model.config.vocabSize);
    onDevice = targets.toDevice(model.device);
  }
  const hidden = model.hidden(batch, opts);
  const [B, T, D] = hidden.shape;
  if (!headAdapted && !model.lmHead.bias)
    return linearCrossEntropy(hidden.reshape([B * T, D]), model.lmHead.weight, onDevice);
  const logits = model.lmHead.forward(hidden, { adapter, training: false, seed: 0, ...opts.ctx });
  return crossEntropy(logits.reshape([B * T, model.config.vocabSize]), onDevice);
}
