import { noGrad } from '../autograd/tape.js';
import type { CausalLM } from '../models/llama.js';
import { keep, tidy } from '../tensor/tensor.js';
import { padBatch, toDevice } from './batching.js';
import type { Example } from './data.js';
import { lossSum } from './loss.js';

export interface EvalResult {
  /** Token-weighted mean next-token NLL over all targets. */
  loss: number;
  perplexity: number;
  tokens: number;
}

/**
 * Mean NLL over every target token of the examples. Rows are batched by similar length to waste little
 * on padding; padding never counts, so the result does not depend on the batch size. Each batch's
 * loss is read back asynchronously (WebGPU reads cannot block).
 */
export async function evaluate(model: CausalLM, examples: Example[], batchSize = 8): Promise<EvalResult> {
  const order = examples.map((_, i) => i).sort((a, b) => examples[a].ids.length - examples[b].ids.length);
  let sum = 0;
  let tokens = 0;
  for (let i = 0; i < order.length; i += batchSize) {
    const hb = padBatch(order.slice(i, i + batchSize).map((k) => examples[k]));
    if (hb.targetCount === 0) continue;
    const total = noGrad(() =>
      tidy(() => {
        const { batch, targets } = toDevice(hb);
        return keep(lossSum(model, batch, targets));
      }),
    );
    try {
      sum += (await total.toFloat32Async())[0];
    } finally {
      total.dispose();
    }
    tokens += hb.targetCount;
  }
  const loss = tokens > 0 ? sum / tokens : NaN;
  return { loss, perplexity: Math.exp(loss), tokens };
}
