// CUDA causal attention (native/cuda/attention.cu): flash-style tiles on tensor cores for bf16 with D
// 64 or 128, CUDA cores otherwise.
import { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import { attentionSizes } from '../sizes.js';
import type { CudaAddon } from './addon.js';
import { ptr } from './device.js';
import { floatType } from './util.js';

export const attentionKernels = (cu: CudaAddon) =>
  ({
    attentionForward: (out, lse, q, k, v, segments, scale) => {
      const t = floatType('attention', { out, q, k, v });
      const [o, l, qp, kp, vp] = [out, lse, q, k, v].map(ptr);
      cu.attentionForward(o, l, qp, kp, vp, t, ptr(segments), ...attentionSizes(q, k), scale);
    },
    attentionBackward: (dq, dk, dv, dout, q, k, v, segments, out, lse, scale) => {
      const t = floatType('attention backward', { dq, dk, dv, dout, q, k, v, out });
      const sizes = attentionSizes(q, k);
      const ws = Tensor.empty([Math.max(1, cu.attentionBackwardWorkspace(...sizes))], 'u8', 'cuda');
      const [dqp, dkp, dvp, doutp, outp, qp, kp, vp] = [dq, dk, dv, dout, out, q, k, v].map(ptr);
      const [lp, sp, wp] = [lse, segments, ws].map(ptr);
      cu.attentionBackward(dqp, dkp, dvp, doutp, outp, qp, kp, vp, t, lp, sp, ...sizes, scale, wp);
      ws.dispose();
    },
  }) satisfies Kernels;
