// Rotary position embeddings (HF "rotate_half" layout).
import { cpuCall, cu, cudaCall, host, input, op, out, type OpGroup } from './dsl.js';

const cpuRope = (o: string, x: string) =>
  cpuCall(
    host.f32(o),
    host.f32(x),
    host.f32('cos'),
    host.f32('sin'),
    host.i32('positions'),
    host.num('rows'),
    host.num('heads'),
    host.num('headDim'),
    host.num('half'),
    host.num('maxPositions'),
  );

const cudaRope = (fn: string, o: string, x: string) =>
  cudaCall(
    fn,
    [
      cu.ptr(o),
      cu.ptr(x),
      cu.floatType('t'),
      cu.ptr('cos', 'float'),
      cu.ptr('sin', 'float'),
      cu.ptr('pos', 'int32_t'),
      cu.count('rows'),
      cu.dim('H'),
      cu.dim('D'),
      cu.dim('half'),
    ],
    { of: ['rows', 'H'], perBlock: 8, what: 'rope' },
  );

export const rope = {
  ops: {
    /** out [B, T, H, Dh] <- x [B, T, H, Dh], cos/sin [P, half], positions [B, T] i32: rotation by +θ. */
    ropeForward: op(
      out('out', 'float'),
      input('x', 'float'),
      input('cos', 'f32'),
      input('sin', 'f32'),
      input('positions', 'i32'),
    ),
    /** dx <- dy, rotation by −θ (the transpose of the forward rotation). */
    ropeBackward: op(
      out('dx', 'float'),
      input('dy', 'float'),
      input('cos', 'f32'),
      input('sin', 'f32'),
      input('positions', 'i32'),
    ),
  },
  cpu: {
    ropeForwardF32: cpuRope('out', 'x'),
    ropeBackwardF32: cpuRope('dx', 'dy'),
  },
  cuda: {
    /** out, x [rows, H, D] of dtype t (f32 or bf16; in place allowed); f32 cos, sin [P, half]; i32 pos [rows]. */
    ropeForward: cudaRope('lkc::rope_forward', 'out', 'x'),
    /** dx, dy [rows, H, D] of dtype t: the rotation by −θ. */
    ropeBackward: cudaRope('lkc::rope_backward', 'dx', 'dy'),
  },
} as const satisfies OpGroup;
