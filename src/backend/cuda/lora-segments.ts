// The LoRA term of many adapters over one batch (native/cuda/lora_segments.cu): one shrink and one
// expand launch for all segments, each adapter's factors read by device pointer from a table the addon
// copies to the device once per call. The kernels take factors in the activations' dtype: a factor in
// the other one is read through its compute copy (Tensor.computeCopy), made once and kept until the
// factor changes, as lora-linear.ts does for training.
import { keep, numel, Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import type { CudaAddon } from './addon.js';
import { dt, ptr } from './device.js';
import { floatType } from './util.js';

/** t itself in `dtype`, or its compute copy in it (made now when missing); owned by t. */
function inDType(cu: CudaAddon, t: Tensor, dtype: Tensor['dtype']): Tensor {
  if (t.dtype === dtype) return t;
  if (t.computeCopy?.dtype !== dtype) {
    t.dropComputeCopy();
    const c = keep(Tensor.empty(t.shape, dtype, 'cuda'));
    cu.cast(ptr(c), dt(c), ptr(t), dt(t), t.size);
    t.computeCopy = c;
  }
  return t.computeCopy;
}

export const loraSegmentsKernels = (cu: CudaAddon) =>
  ({
    loraSegments: (y, x, As, Bs, { starts, ends, scales }) => {
      const t = floatType('loraSegments', { y, x });
      const inF = x.shape.at(-1)!;
      const out = y.shape.at(-1)!;
      const rows = numel(x.shape.slice(0, -1));
      // Per segment: [A, B, rank, scale, start, end].
      const table = new Float64Array(As.length * 6);
      As.forEach((A, g) => {
        const a = inDType(cu, A, x.dtype); // [r, in]
        const b = inDType(cu, Bs[g], x.dtype); // [out, r]
        table.set([ptr(a), ptr(b), A.shape[0], scales[g], starts[g], ends[g]], g * 6);
      });
      cu.loraSegments(ptr(y), ptr(x), t, table, rows, inF, out);
    },
  }) satisfies Kernels;
