// The output head and the loss in one op: Σ NLL of h Wᵀ over rows with a target, computed in chunks
// of rows so [N, V] logits never exist at once (V is 32K-150K for real models), and only for rows that
// have a target (completion-only training skips most rows). Forward also computes dh (the head's input
// gradient for a unit loss gradient), since it has each chunk's softmax at hand; backward scales it.
import { kernel } from '../backend/kernels.js';
import { needsRecord, noGrad, record } from '../autograd/tape.js';
import { shapeString, Tensor, tidy } from '../tensor/tensor.js';
import { checkTargets, IGNORE_INDEX } from './cross-entropy.js';
import { gemmInto } from './matmul.js';
import { scale, sum } from './elementwise.js';
import { emptyF32, emptyLike, expectDType, expectFloat } from './util.js';

const CHUNK_ROWS = 256;

declare module '../backend/kernels.js' {
  interface KernelTable {
    /**
     * Device backends fuse the head and the loss (CUDA: vocabulary chunks through cuBLASLt, logits
     * never whole). rowLoss [N] f32 (0 for ignored rows) <- h [N, D], w [V, D], targets [N]; with
     * dhUnit [N, D] f32 (training), also the head's input gradient for a unit loss gradient,
     * softmax(h wᵀ)·w − w[target] (0 on ignored rows).
     */
    linearCrossEntropyForward(
      rowLoss: Tensor,
      dhUnit: Tensor | null,
      h: Tensor,
      w: Tensor,
      targets: Tensor,
    ): void;
    /** out = scalar · x, x f32, scalar a one-element f32 tensor read on the device (no host wait). */
    scaleByScalar(out: Tensor, x: Tensor, scalar: Tensor): void;
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

// The device path: one fused kernel over all N rows (ignored rows cost a GEMM row but no host gather);
// when recording it also computes dh for a unit loss gradient, so backward only scales it by the loss
// gradient, read on the device. Host targets are copied over here; callers in a training step pass
// them already on the device (train/loss.ts), so this copy does not make the host wait mid-forward.
function fusedOnDevice(h: Tensor, w: Tensor, given: Tensor): Tensor {
  const N = h.shape[0];
  const targets = given.device === h.device ? given : given.toDevice(h.device);
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
  if (targets !== given) targets.dispose();
  return out;
}
