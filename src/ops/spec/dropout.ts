// Inverted dropout with a counter-based mask: a hash of (seed, element index), never stored.
import { cuda, host, op, type OpGroup } from './dsl.js';

export const dropout = {
  ops: {
    /** out[i] = x[i] · (keep(seed, i) ? 1/(1 − p) : 0); the same (p, seed, size) always gives the same mask */
    dropout: op('out:float = x:float p seed'),
  },
  cpu: {
    dropoutF32: host('out:f32 x:f32 p seed n'),
  },
  cuda: {
    /** The CPU backend's mask exactly (native/cpu/dropout.cc): out, x of dtype t. */
    dropout: cuda('lkc::dropout', 'out:ptr x:ptr t:dtype p:probability seed:seed n:count'),
  },
} as const satisfies OpGroup;
