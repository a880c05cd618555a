// SwiGLU gating of the Llama MLP: silu(gate) · up.
import { cpuCall, cu, cudaCall, host, input, op, optOut, out, type OpGroup } from './dsl.js';

export const swiglu = {
  ops: {
    /** out = silu(gate) · up, all the same shape */
    swigluForward: op(out('out', 'float'), input('gate', 'float'), input('up', 'float')),
    /** dgate and/or dup (null when not wanted) <- dy, gate, up */
    swigluBackward: op(
      optOut('dgate', 'float'),
      optOut('dup', 'float'),
      input('dy', 'float'),
      input('gate', 'float'),
      input('up', 'float'),
    ),
  },
  cpu: {
    swigluForwardF32: cpuCall(host.f32('out'), host.f32('gate'), host.f32('up'), host.num('n')),
    swigluBackwardF32: cpuCall(
      host.optF32('dgate'),
      host.optF32('dup'),
      host.f32('dy'),
      host.f32('gate'),
      host.f32('up'),
      host.num('n'),
    ),
  },
  cuda: {
    /** h = silu(g) · u over [n], all of dtype t (f32 or bf16). */
    swigluForward: cudaCall('lkc::swiglu_forward', [
      cu.ptr('h'),
      cu.ptr('g'),
      cu.ptr('u'),
      cu.floatType('t'),
      cu.count('n'),
    ]),
    /** dg, du (either may be 0), dh, g, u [n] of dtype t: the kernel writes both, so one left out goes to a scratch. */
    swigluBackward: cudaCall('glue::swiglu_backward', [
      cu.optPtr('dg'),
      cu.optPtr('du'),
      cu.ptr('dh'),
      cu.ptr('g'),
      cu.ptr('u'),
      cu.floatType('t'),
      cu.count('n'),
    ]),
  },
} as const satisfies OpGroup;
