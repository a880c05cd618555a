// CPU kernels of causal attention (native/cpu/attention.cc), f32.
import type { Kernels } from '../kernels.js';
import { attentionSizes } from '../sizes.js';
import { cpu } from './addon.js';
import { f32 } from './arrays.js';

export const attentionKernels = {
  attentionForward: (out, lse, q, k, v, segments, scale) =>
    cpu.attentionForwardF32(
      f32(out),
      f32(lse),
      f32(q),
      f32(k),
      f32(v),
      segments.as('i32'),
      ...attentionSizes(q, k),
      scale,
    ),
  attentionBackward: (dq, dk, dv, dout, q, k, v, segments, out, lse, scale) => {
    const [dqs, dks, dvs, douts, qs, ks, vs] = [dq, dk, dv, dout, q, k, v].map(f32);
    const ids = segments.as('i32');
    cpu.attentionBackwardF32(
      dqs,
      dks,
      dvs,
      douts,
      qs,
      ks,
      vs,
      ids,
      f32(out),
      f32(lse),
      ...attentionSizes(q, k),
      scale,
    );
  },
} satisfies Kernels;
