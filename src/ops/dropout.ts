// Inverted dropout with a counter-based mask: the mask is a hash of (seed, element index), so it is
// never stored, and backward regenerates it from the seed.
import { kernel } from '../backend/kernels.js';
import { needsRecord, record } from '../autograd/tape.js';
import { Tensor } from '../tensor/tensor.js';
import { copy } from './elementwise.js';
import { emptyLike, expectFloat } from './util.js';

/**
 * Inverted dropout: each element is zeroed with probability p and the kept ones scaled by 1/(1 − p).
 * The mask depends only on `seed` (a non-negative safe integer) and the element index; p = 0 returns a
 * copy.
 */
export function dropout(x: Tensor, p: number, seed: number): Tensor {
  expectFloat('dropout', 'x', x);
  if (!(p >= 0 && p <= 1)) throw new Error(`lorakit: dropout: p must be between 0 and 1, got ${p}.`);
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new Error(`lorakit: dropout: seed must be a non-negative integer, got ${seed}.`);
  if (p === 0) return copy(x);
  const out = emptyLike(x);
  kernel(x.device, 'dropout')(out, x, p, seed);
  if (needsRecord([x]))
    record([x], [out], [], ([g]) => {
      const dx = emptyLike(g);
      kernel(g.device, 'dropout')(dx, g, p, seed);
      return [dx];
    });
  return out;
}
