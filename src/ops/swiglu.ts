// SwiGLU gating of the Llama MLP: silu(gate) · up.
import { kernel } from '../backend/kernels.js';
import { needsRecord, record } from '../autograd/tape.js';
import { shapeString, Tensor } from '../tensor/tensor.js';
import { emptyLike, expectDType, expectFloat, sameDevice } from './util.js';

/** silu(gate) · up, elementwise; gate and up f32 of the same shape. */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  sameDevice('swiglu', gate, up);
  expectFloat('swiglu', 'gate', gate);
  expectDType('swiglu', 'up', up, gate.dtype);
  if (gate.shape.length !== up.shape.length || gate.shape.some((d, i) => d !== up.shape[i]))
    throw new Error(
      `lorakit: swiglu: gate ${shapeString(gate.shape)} and up ${shapeString(up.shape)} must have the same shape.`,
    );
  const out = emptyLike(gate);
  kernel(gate.device, 'swigluForward')(out, gate, up);
  if (needsRecord([gate, up]))
    record([gate, up], [out], [gate, up], ([g], [gg, gu]) => {
      const dgate = gg ? emptyLike(gate) : null;
      const dup = gu ? emptyLike(up) : null;
      kernel(g.device, 'swigluBackward')(dgate, dup, g, gate, up);
      return [dgate, dup];
    });
  return out;
}
