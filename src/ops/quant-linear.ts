// The quantized linear op: y = x · Wᵀ (+ b) with W stored quantized. The kernel dequantizes W a tile of
// rows at a time into a small fp32 buffer and multiplies it there, so no dense copy of W ever exists.
// Backward gives dx (and dbias); W is frozen and gets no gradient.
import { kernel } from '../backend/kernels.js';
import { isGraphOnly, needsRecord, record } from '../autograd/tape.js';
import { numel, shapeString, Tensor } from '../tensor/tensor.js';
import { expectFloat, sameDevice } from './util.js';
import type { QuantizedWeight } from '../quant/weight.js';

/**
 * y = x · Wᵀ (+ bias): x [..., in] f32, W quantized [out, in] (frozen), bias [out] f32 or null.
 * Result [..., out] f32. Differentiable in x and bias. Inside checkpointOutput's recompute the product
 * is recorded for backward but not computed (see add).
 */
export function quantizedLinear(x: Tensor, w: QuantizedWeight, bias: Tensor | null = null): Tensor {
  sameDevice('quantizedLinear', x, w.data, bias);
  expectFloat('quantizedLinear', 'x', x);
  if (bias) expectFloat('quantizedLinear', 'bias', bias);
  if (w.disposed) throw new Error('lorakit: quantizedLinear: the quantized weight was disposed.');
  const [out, inF] = w.shape;
  if (x.shape.length < 1 || x.shape.at(-1) !== inF)
    throw new Error(
      `lorakit: quantizedLinear: x ${shapeString(x.shape)} does not match the weight [${out}, ${inF}]; x must be [..., ${inF}].`,
    );
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== out))
    throw new Error(
      `lorakit: quantizedLinear: bias ${shapeString(bias.shape)} does not match the weight [${out}, ${inF}]; expected [${out}].`,
    );
  const m = numel(x.shape.slice(0, -1));
  const y = Tensor.empty([...x.shape.slice(0, -1), out], x.dtype, x.device);
  if (!isGraphOnly()) kernel(x.device, 'quantLinear')(y, x, w, bias, m);
  if (needsRecord([x, bias])) {
    // dx needs only W (held by the layer, frozen); dbias needs nothing.
    record([x, bias], [y], [], ([g], [gx, gb]) => {
      let dx: Tensor | null = null;
      let db: Tensor | null = null;
      if (gx) {
        if (w.disposed)
          throw new Error('lorakit: quantizedLinear backward: the quantized weight was disposed.');
        dx = Tensor.empty(x.shape, x.dtype, x.device);
        kernel(x.device, 'quantLinearBackward')(dx, g, w, m, false);
      }
      if (gb && bias) {
        db = Tensor.empty(bias.shape, bias.dtype, bias.device);
        kernel(g.device, 'sumColumns')(db, g, m, out);
      }
      return [dx, db];
    });
  }
  return y;
}
