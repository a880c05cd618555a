// Inverted dropout with a counter-based mask: a hash of (seed, element index), never stored.
import { cpuCall, cu, cudaCall, host, input, num, op, out, type OpGroup } from './dsl.js';

export const dropout = {
  ops: {
    /** out[i] = x[i] · (keep(seed, i) ? 1/(1 − p) : 0); the same (p, seed, size) always gives the same mask */
    dropout: op(out('out', 'float'), input('x', 'float'), num('p'), num('seed')),
  },
  cpu: {
    dropoutF32: cpuCall(host.f32('out'), host.f32('x'), host.num('p'), host.num('seed'), host.num('n')),
  },
  cuda: {
    /** The CPU backend's mask exactly (native/cpu/dropout.cc): out, x of dtype t. */
    dropout: cudaCall('lkc::dropout', [
      cu.ptr('out'),
      cu.ptr('x'),
      cu.dtype('t'),
      cu.probability('p'),
      cu.seed('seed'),
      cu.count('n'),
    ]),
  },
} as const satisfies OpGroup;
