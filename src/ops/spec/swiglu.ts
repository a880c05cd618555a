// SwiGLU gating of the Llama MLP: silu(gate) · up.
import { cuda, host, op, type OpGroup } from './dsl.js';

export const swiglu = {
  ops: {
    /** out = silu(gate) · up, all the same shape */
    swigluForward: op('out:float = gate:float up:float'),
    /** dgate and/or dup (null when not wanted) <- dy, gate, up */
    swigluBackward: op('dgate?:float dup?:float = dy:float gate:float up:float'),
  },
  cpu: {
    swigluForwardF32: host('out:f32 gate:f32 up:f32 n'),
    swigluBackwardF32: host('dgate?:f32 dup?:f32 dy:f32 gate:f32 up:f32 n'),
  },
  cuda: {
    /** h = silu(g) · u over [n], all of dtype t (f32 or bf16). */
    swigluForward: cuda('lkc::swiglu_forward', 'h:ptr g:ptr u:ptr t:floatType n:count'),
    /** dg, du (either may be 0), dh, g, u [n] of dtype t: the kernel writes both, so one left out goes to a scratch. */
    swigluBackward: cuda('glue::swiglu_backward', 'dg?:ptr du?:ptr dh:ptr g:ptr u:ptr t:floatType n:count'),
  },
} as const satisfies OpGroup;
