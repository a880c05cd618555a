// CUDA causal attention (native/cuda/attention.cu): flash-style tiles on tensor cores for bf16 with D
// 64 or 128, CUDA cores otherwise.
import { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import type { CudaAddon } from './addon.js';
import { ptr } from './device.js';
import { floatType } from './util.js';

export const attentionKernels = (cu: CudaAddon) =>
  ({
    attentionForward: (out, lse, q, k, v, segments, scale) => {
      const [B, Tq, Hq, D] = q.shape;
      const [, Tk, Hkv] = k.shape;
      const t = floatType('attention', { out, q, k, v });
      cu.attentionForward(
        ptr(out),
        ptr(lse),
        ptr(q),
        ptr(k),
        ptr(v),
        t,
        ptr(segments),
        B,
        Tq,
        Tk,
        Hq,
        Hkv,
        D,
        scale,
      );
    },
    attentionBackward: (dq, dk, dv, dout, q, k, v, segments, out, lse, scale) => {
      const [B, Tq, Hq, D] = q.shape;
      const [, Tk, Hkv] = k.shape;
      const t = floatType('attention backward', { dq, dk, dv, dout, q, k, v, out });
      const ws = Tensor.empty(
        [Math.max(1, cu.attentionBackwardWorkspace(B, Tq, Tk, Hq, Hkv, D))],
        'u8',
        'cuda',
      );
      cu.attentionBackward(
        ptr(dq),
        ptr(dk),
        ptr(dv),
        ptr(dout),
        ptr(out),
        ptr(q),
        ptr(k),
        ptr(v),
        t,
        ptr(lse),
        ptr(segments),
        B,
        Tq,
        Tk,
        Hq,
        Hkv,
        D,
        scale,
        ptr(ws),
      );
      ws.dispose();
    },
  }) satisfies Kernels;
