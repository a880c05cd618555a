// CUDA cross-entropy over given logits and the fused output head + loss (native/cuda/cross_entropy.cu,
// cross_entropy_backward.cu): the head's logits only ever exist a chunk of vocabulary columns at a time.
import { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import { CUDA_DTYPE, type CudaAddon } from './addon.js';
import { dt, ptr } from './device.js';
import { expect, floatType, NULL, onDevice, withTemps } from './util.js';

/**
 * Vocabulary columns per chunk of the fused head + loss: about 8 M logits at a time (32 MiB f32 plus a
 * bf16 copy), a power of two between 1024 and 16384, so the workspace stays small at any row count
 * and each chunk is still a large GEMM.
 */
function lceChunk(N: number, V: number): number {
  let chunk = 16384;
  while (chunk > 1024 && N * chunk > 1 << 23) chunk /= 2;
  return Math.min(chunk, V);
}

export const crossEntropyKernels = (cu: CudaAddon) =>
  ({
    crossEntropyForward: (loss, lse, rowLoss, logits, targets) => {
      const [N, V] = logits.shape;
      const rows = rowLoss ?? Tensor.empty([N], 'f32', 'cuda');
      cu.crossEntropyForward(ptr(rows), ptr(lse), ptr(logits), dt(logits), ptr(targets), N, V);
      cu.sumRows(ptr(loss), CUDA_DTYPE.f32, ptr(rows), CUDA_DTYPE.f32, 1, N);
      if (!rowLoss) rows.dispose();
    },
    crossEntropyBackward: (dlogits, logits, targets, lse, gradLoss) => {
      const [N, V] = logits.shape;
      const g = onDevice(gradLoss);
      withTemps([g], () =>
        cu.crossEntropyBackward(
          ptr(dlogits),
          ptr(logits),
          dt(logits),
          ptr(targets),
          ptr(lse),
          ptr(g.t),
          N,
          V,
        ),
      );
    },
    linearCrossEntropyForward: (rowLoss, dhUnit, h, w, targets) => {
      const [N, D] = h.shape;
      const V = w.shape[0];
      const t = floatType('linearCrossEntropy', { h, w });
      if (dhUnit) expect(dhUnit, 'f32', 'linearCrossEntropy', 'dhUnit');
      const chunk = lceChunk(N, V);
      const ws = Tensor.empty([cu.linearCrossEntropyWorkspace(N, chunk)], 'u8', 'cuda');
      if (dhUnit)
        cu.linearCrossEntropyForwardGrad(
          ptr(rowLoss),
          NULL,
          ptr(dhUnit),
          ptr(h),
          ptr(w),
          t,
          ptr(targets),
          N,
          D,
          V,
          chunk,
          ptr(ws),
        );
      else
        cu.linearCrossEntropyForward(
          ptr(rowLoss),
          NULL,
          ptr(h),
          ptr(w),
          t,
          ptr(targets),
          N,
          D,
          V,
          chunk,
          ptr(ws),
        );
      ws.dispose();
    },
    // The scalar (e.g. a loss gradient) is read by the kernel on the device: no host sync.
    scaleByScalar: (out, x, scalar) => {
      expect(x, 'f32', 'scaleByScalar', 'x');
      expect(scalar, 'f32', 'scaleByScalar', 'scalar');
      const s = onDevice(scalar);
      withTemps([s], () =>
        cu.scaleByScalar(ptr(out), floatType('scaleByScalar', { out }), ptr(x), ptr(s.t), x.size),
      );
    },
  }) satisfies Kernels;
