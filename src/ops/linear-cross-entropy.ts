// The output head and the loss in one op: Σ NLL of h Wᵀ over rows with a target, computed in chunks
// of rows so [N, V] logits never exist at once (V is 32K-150K for real models), and only for rows that
// have a target (completion-only training skips most rows). Forward also computes dh (the head's input
// gradient for a unit loss gradient), since it has each chunk's softmax at hand; backward scales it.
import { kernel } from '../backend/kernels.js';
import { needsRecord, noGrad, record } from '../autograd/tape.js';
import { keep, shapeString, Tensor, tidy } from '../tensor/tensor.js';
import { checkTargets, IGNORE_INDEX } from './cross-entropy.js';
import { gemmInto } from './matmul.js';
import { scale, sum } from './elementwise.js';
import { emptyF32, emptyLike, expectDType, expectFloat } from './util.js';

const CHUNK_ROWS = 256;

declare module '../backend/kernels.js' {
  interface KernelTable {
    /**
     * Device backends fuse the head and the loss (CUDA: vocabulary chunks through cuBLASLt, logits
     * never whole). rowLoss, lse [N] f32 (0 for ignored rows) <- h [N, D], w [V, D], targets [N].
     */
    linearCrossEntropyForward(rowLoss: Tensor, lse: Tensor, h: Tensor, w: Tensor, targets: Tensor): void;
    /**
     * dh [N, D] = gradScale · (softmax(h wᵀ) − onehot) · w, 0 on ignored rows; gradScale is the loss
     * gradient, a one-element f32 tensor read on the device (the host never waits for it).
     */
    linearCrossEntropyBackward(
      dh: Tensor,
      h: Tensor,
      w: Tensor,
      targets: Tensor,
      lse: Tensor,
      gradScale: Tensor,
    ): void;
  }
}

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
  if (h.device !== 'cpu') return fusedOnDevice(h, w, targets);
  const tgt = targets.as('i32'); // the CPU path gathers the rows that have a target
  const rows: number[] = [];
  for (let i = 0; i < N; i++) if (tgt[i] !== IGNORE_INDEX) rows.push(i);
  const grad = needsRecord([h]);
  const dh = grad ? Tensor.zeros([N, D]) : null;
  let total = 0;
  const hd = h.as('f32');
  for (let c0 = 0; c0 < rows.length; c0 += CHUNK_ROWS) {
    const chunk = rows.slice(c0, c0 + CHUNK_ROWS);
    const n = chunk.length;
    total += tidy(() => {
      const hc = Tensor.empty([n, D]);
      const hcd = hc.as('f32');
      chunk.forEach((r, j) => hcd.set(hd.subarray(r * D, (r + 1) * D), j * D));
      const tc = Tensor.from(
        chunk.map((r) => tgt[r]),
        [n],
        'i32',
      );
      const logits = Tensor.empty([n, V]);
      gemmInto(logits, hc, w, { transB: true });
      const loss = Tensor.empty([]);
      const lse = Tensor.empty([n]);
      kernel(h.device, 'crossEntropyForward')(loss, lse, null, logits, tc);
      if (dh) {
        // dlogits = softmax − onehot (unit loss gradient), written over the logits; dh rows = dlogits · w.
        kernel(h.device, 'crossEntropyBackward')(logits, logits, tc, lse, Tensor.scalar(1));
        const dhc = Tensor.empty([n, D]);
        gemmInto(dhc, logits, w);
        const src = dhc.as('f32');
        const dst = dh.as('f32');
        chunk.forEach((r, j) => dst.set(src.subarray(j * D, (j + 1) * D), r * D));
      }
      return loss.item();
    });
  }
  const out = Tensor.scalar(total);
  if (dh) {
    record([h], [out], [dh], ([g]) => [scale(dh, g.item())]);
    dh.dispose();
  }
  return out;
}

// The device path: one fused kernel per direction over all N rows (ignored rows cost a GEMM row but
// no host gather). Host targets are copied over here; callers in a training step pass them already on
// the device (train/loss.ts), so this copy does not make the host wait in the middle of a forward.
function fusedOnDevice(h: Tensor, w: Tensor, given: Tensor): Tensor {
  const N = h.shape[0];
  const targets = given.device === h.device ? given : given.toDevice(h.device);
  const rowLoss = emptyF32(h, [N]);
  const lse = emptyF32(h, [N]);
  kernel(h.device, 'linearCrossEntropyForward')(rowLoss, lse, h, w, targets);
  const out = noGrad(() => sum(rowLoss));
  rowLoss.dispose();
  if (needsRecord([h])) {
    record([h], [out], [h, targets, lse], ([g]) => {
      const dh = emptyLike(h);
      kernel(h.device, 'linearCrossEntropyBackward')(dh, h, w, targets, lse, g);
      return [dh];
    });
    keep(lse); // the tape now holds the only references
    if (targets !== given) keep(targets);
  }
  lse.dispose();
  if (targets !== given) targets.dispose();
  return out;
}
