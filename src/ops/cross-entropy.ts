// Fused cross-entropy over the vocabulary with ignore index −100. The log-softmax [N, V] is never
// built: forward keeps one logsumexp per row, backward recomputes softmax from the logits and it.
import { kernel } from '../backend/kernels.js';
import { needsRecord, record } from '../autograd/tape.js';
import { keep, shapeString, Tensor } from '../tensor/tensor.js';
import { IGNORE_INDEX } from './spec/cross-entropy.js';
import { emptyF32, emptyLike, expectDType, expectFloat, sameDevice } from './util.js';

export { IGNORE_INDEX };

function check(op: string, logits: Tensor, targets: Tensor): void {
  sameDevice(op, logits, targets);
  expectFloat(op, 'logits', logits);
  expectDType(op, 'targets', targets, 'i32');
  if (logits.shape.length !== 2)
    throw new Error(`lorakit: ${op}: logits must be [rows, vocab], got ${shapeString(logits.shape)}.`);
  const [N, V] = logits.shape;
  if (targets.shape.length !== 1 || targets.shape[0] !== N)
    throw new Error(`lorakit: ${op}: targets has shape ${shapeString(targets.shape)}, expected [${N}].`);
  if (V < 1) throw new Error(`lorakit: ${op}: the vocabulary is empty.`);
  checkTargets(op, targets, V);
}

/**
 * Throws unless every target is −100 or in [0, V). Targets on a device were checked on the host
 * before they were copied there (train/loss.ts), so only host targets are read here.
 */
export function checkTargets(op: string, targets: Tensor, V: number): void {
  if (!targets.onHost) return;
  const t = targets.as('i32');
  for (let i = 0; i < t.length; i++)
    if (t[i] !== IGNORE_INDEX && (t[i] < 0 || t[i] >= V))
      throw new Error(
        `lorakit: ${op}: target ${t[i]} at row ${i} is out of range for a vocabulary of ${V} (use -100 to ignore a row).`,
      );
}

/**
 * Σ over rows whose target is not −100 of −log softmax(logits)[target], as a scalar (a sum, not a
 * mean: the caller divides by its token count). logits [N, V] f32, targets [N] i32.
 */
export function crossEntropy(logits: Tensor, targets: Tensor): Tensor {
  check('crossEntropy', logits, targets);
  const loss = emptyF32(logits, []);
  const lse = emptyF32(logits, [logits.shape[0]]);
  kernel(logits.device, 'crossEntropyForward')(loss, lse, null, logits, targets);
  if (needsRecord([logits])) {
    record([logits], [loss], [logits, targets, lse], ([g]) => {
      const dlogits = emptyLike(logits);
      kernel(g.device, 'crossEntropyBackward')(dlogits, logits, targets, lse, g);
      return [dlogits];
    });
    keep(lse); // the tape now holds the only reference
  }
  lse.dispose();
  return loss;
}

/** Per-row −log softmax(logits)[target] (0 for ignored rows), for evaluation; not differentiable. */
export function crossEntropyRows(logits: Tensor, targets: Tensor): Float64Array {
  check('crossEntropyRows', logits, targets);
  const N = logits.shape[0];
  const loss = emptyF32(logits, []);
  const lse = emptyF32(logits, [N]);
  const rows = emptyF32(logits, [N]);
  try {
    kernel(logits.device, 'crossEntropyForward')(loss, lse, rows, logits, targets);
    return Float64Array.from(rows.toFloat32());
  } finally {
    loss.dispose();
    lse.dispose();
    rows.dispose();
  }
}
