// CPU kernels of causal attention (native/cpu/attention.cc), f32.
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';

export const attentionKernels = {
  attentionForward: (out, lse, q, k, v, segments, scale) => {
    const [B, Tq, Hq, D] = q.shape;
    const [, Tk, Hkv] = k.shape;
    cpu.attentionForwardF32(
      out.as('f32'),
      lse.as('f32'),
      q.as('f32'),
      k.as('f32'),
      v.as('f32'),
      segments.as('i32'),
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
    cpu.attentionBackwardF32(
      dq.as('f32'),
      dk.as('f32'),
      dv.as('f32'),
      dout.as('f32'),
      q.as('f32'),
      k.as('f32'),
      v.as('f32'),
      segments.as('i32'),
      out.as('f32'),
      lse.as('f32'),
      B,
      Tq,
      Tk,
      Hq,
      Hkv,
      D,
      scale,
    );
  },
} satisfies Kernels;
