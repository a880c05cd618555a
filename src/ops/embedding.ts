// Token embedding lookup: table [V, D] (f32 or bf16) gathered by i32 ids into activation rows.
import { kernel } from '../backend/kernels.js';
import { needsRecord, record } from '../autograd/tape.js';
import { shapeString, Tensor } from '../tensor/tensor.js';
import type { DType } from '../tensor/dtype.js';
import { activationDType, deviceLabel, floatDTypes } from '../backend/device.js';
import { expectDType, sameDevice } from './util.js';

/**
 * ids [...] i32 -> [..., D] rows of table [V, D] (f32 or bf16), in `dtype` (the device's activation
 * dtype unless given; the CPU computes in f32 only).
 */
export function embedding(table: Tensor, ids: Tensor, dtype: DType = activationDType(table.device)): Tensor {
  sameDevice('embedding', table, ids);
  expectDType('embedding', 'table', table, 'f32', 'bf16');
  expectDType('embedding', 'ids', ids, 'i32');
  if (table.shape.length !== 2)
    throw new Error(`lorakit: embedding: table must be [vocab, dim], got ${shapeString(table.shape)}.`);
  const [V, D] = table.shape;
  if (ids.onHost) {
    const d = ids.as('i32');
    for (let i = 0; i < d.length; i++)
      if (d[i] < 0 || d[i] >= V)
        throw new Error(
          `lorakit: embedding: token id ${d[i]} is out of range for a vocabulary of ${V} tokens.`,
        );
  }
  const training = needsRecord([table]);
  if (training && table.dtype !== 'f32')
    throw new Error(
      `lorakit: embedding: a ${table.dtype} table cannot be trained; keep trainable embeddings in f32.`,
    );
  if (dtype !== 'f32' && dtype !== 'bf16')
    throw new Error(`lorakit: embedding: the output dtype must be f32 or bf16, got ${dtype}.`);
  const computes = floatDTypes(table.device);
  if (!computes.includes(dtype))
    throw new Error(
      `lorakit: embedding: the ${deviceLabel(table.device)} computes in ${computes.join(' or ')}, not ${dtype}.`,
    );
  const out = Tensor.empty([...ids.shape, D], dtype, table.device);
  kernel(table.device, 'embeddingForward')(out, table, ids);
  if (training)
    record([table], [out], [ids], ([g]) => {
      const dtable = Tensor.empty([V, D], 'f32', g.device);
      kernel(g.device, 'embeddingBackward')(dtable, g, ids);
      return [dtable];
    });
  return out;
}
