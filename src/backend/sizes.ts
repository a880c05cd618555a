// The sizes native entry points take, from the tensors and attributes a kernel gets: the same for
// every backend.
import type { GemmAttrs } from '../ops/spec/matmul.js';
import type { Tensor } from '../tensor/tensor.js';

/** B, Tq, Tk, Hq, Hkv, D of attention's q [B, Tq, Hq, D] and k [B, Tk, Hkv, D]. */
export function attentionSizes(q: Tensor, k: Tensor): [number, number, number, number, number, number] {
  const [B, Tq, Hq, D] = q.shape;
  const [, Tk, Hkv] = k.shape;
  return [B, Tq, Tk, Hq, Hkv, D];
}

/** One GEMM item's m, n, k, transA, transB, alpha, beta. */
export const gemmProduct = (g: GemmAttrs): [number, number, number, boolean, boolean, number, number] => [
  g.m,
  g.n,
  g.k,
  g.transA,
  g.transB,
  g.alpha,
  g.beta,
];

/** A batched GEMM's element strides between items of a, b and c. */
export const gemmStrides = (g: GemmAttrs): [number, number, number] => [g.strideA, g.strideB, g.strideC];
