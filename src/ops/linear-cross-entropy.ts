// The output head and the loss in one op: Σ NLL of h Wᵀ over rows with a target, computed in chunks
// of rows so [N, V] logits never exist at once (V is 32K-150K for real models), and only for rows that
// have a target (completion-only training skips most rows). Forward also computes dh (the head's input
// gradient for a unit loss gradient), since it has each chunk's softmax at hand; backward scales it.
import { kernel } from '../backend/kernels.js';
import { needsRecord, noGrad, record } from '../autograd/tape.js';
import { shapeString, Tensor } from '../tensor/tensor.js';
import { checkTargets } from './cross-entropy.js';
import { sum } from './elementwise.js';
import { emptyF32, emptyLike, expectDType, expectFloat } from './util.js';

/**
 * h [N, D] f32, w [V, D] f32 or bf16 (frozen), targets [N] i32 (−100 ignored) -> scalar Σ NLL.
 * Differentiable with respect to h.
 */
export function linearCrossEntropy(h: Tensor, w: Tensor, targets: Tensor): Tensor {
  expectFloat('linearCrossEntropy', 'h', h);
  expectDType('linearCrossEntropy', 'targets', targets, 'i32');
  const [N, D] = h.shape;
  const V = w.shape[0];
  if (h.shape.length !== 2 || w.shape.length !== 2 || w.shape[1] !== D || targets.size !== N)
    throw new Error(
      `lorakit: linearCrossEntropy: shapes h ${shapeString(h.shape)}, w ${shapeString(w.shape)}, targets ${shapeString(targets.shape)} do not fit.`,
    );
  if (w.requiresGrad)
    throw new Error('lorakit: linearCrossEntropy: a trainable output head is not supported here.');
  checkTargets('linearCrossEntropy', targets, V);
  // Host targets are copied to the device here; callers in a training step pass them already there
  // (train/loss.ts), so this copy does not make the host wait mid-forward.
  const onDevice = targets.device === h.device ? targets : targets.toDevice(h.device);
  try {
    return fused(h, w, onDevice);
  } finally {
    if (onDevice !== targets) onDevice.dispose();
  }
}

// One fused kernel over all N rows; when recording it also computes dh for a unit loss gradient, so
// backward only scales it by the loss gradient, read where it lives (no host wait on a GPU).
function fused(h: Tensor, w: Tensor, targets: Tensor): Tensor {
  const N = h.shape[0];
  const rowLoss = emptyF32(h, [N]);
  const dhUnit = needsRecord([h]) ? emptyF32(h, h.shape) : null;
  kernel(h.device, 'linearCrossEntropyForward')(rowLoss, dhUnit, h, w, targets);
  const out = noGrad(() => sum(rowLoss));
  if (dhUnit) {
    record([h], [out], [dhUnit], ([g]) => {
      const dh = emptyLike(h);
      kernel(h.device, 'scaleByScalar')(dh, dhUnit, g);
      return [dh];
    });
    dhUnit.dispose(); // the tape holds the only reference now
  }
  rowLoss.dispose();
  return out;
}
