// CPU cross-entropy (native/cpu/cross_entropy.cc) and the fused output head + loss built on it and the
// GEMM: logits only ever exist for a chunk of rows, and only for rows that have a target.
import { IGNORE_INDEX } from '../../ops/spec/cross-entropy.js';
import { Tensor } from '../../tensor/tensor.js';
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';
import { f32, f32OrBf16, optF32 } from './arrays.js';

/** Rows of logits [rows, V] computed at a time by the fused head. */
const CHUNK_ROWS = 256;

export const crossEntropyKernels = {
  crossEntropyForward: (loss, lse, rowLoss, logits, targets) => {
    const [N, V] = logits.shape;
    cpu.crossEntropyForwardF32(f32(loss), f32(lse), optF32(rowLoss), f32(logits), targets.as('i32'), N, V);
  },
  crossEntropyBackward: (dlogits, logits, targets, lse, gradLoss) => {
    const [N, V] = logits.shape;
    cpu.crossEntropyBackwardF32(
      f32(dlogits),
      f32(logits),
      targets.as('i32'),
      f32(lse),
      f32(gradLoss)[0],
      N,
      V,
    );
  },
  // The rows that have a target are gathered a chunk at a time: logits = h·wᵀ, their loss, and with
  // dhUnit the unit-gradient dlogits (written over the logits) times w, scattered back to the rows.
  linearCrossEntropyForward: (rowLoss, dhUnit, h, w, targets) => {
    const [N, D] = h.shape;
    const V = w.shape[0];
    const tgt = targets.as('i32');
    const hd = f32(h);
    const loss = f32(rowLoss).fill(0);
    const dh = optF32(dhUnit)?.fill(0) ?? null;
    const wd = f32OrBf16(w);
    const rows: number[] = [];
    for (let i = 0; i < N; i++) if (tgt[i] !== IGNORE_INDEX) rows.push(i);
    const most = Math.min(CHUNK_ROWS, rows.length);
    const scratch = [most * D, most * V, most, most, 1, most * D].map((n) => Tensor.empty([n]));
    try {
      const [hcT, logitsT, lseT, lossT, sumT, dhcT] = scratch.map(f32);
      const tc = new Int32Array(most);
      for (let c0 = 0; c0 < rows.length; c0 += CHUNK_ROWS) {
        const chunk = rows.slice(c0, c0 + CHUNK_ROWS);
        const n = chunk.length;
        const hc = hcT.subarray(0, n * D);
        const logits = logitsT.subarray(0, n * V);
        chunk.forEach((r, j) => {
          hc.set(hd.subarray(r * D, (r + 1) * D), j * D);
          tc[j] = tgt[r];
        });
        const t = tc.subarray(0, n);
        cpu.gemm(logits, hc, wd, null, 1, n, V, D, false, true, 1, 0, n * D, V * D, n * V);
        const lse = lseT.subarray(0, n);
        const rl = lossT.subarray(0, n);
        cpu.crossEntropyForwardF32(sumT, lse, rl, logits, t, n, V);
        chunk.forEach((r, j) => (loss[r] = rl[j]));
        if (!dh) continue;
        cpu.crossEntropyBackwardF32(logits, logits, t, lse, 1, n, V);
        const dhc = dhcT.subarray(0, n * D);
        cpu.gemm(dhc, logits, wd, null, 1, n, D, V, false, false, 1, 0, n * V, V * D, n * D);
        chunk.forEach((r, j) => dh.set(dhc.subarray(j * D, (j + 1) * D), r * D));
      }
    } finally {
      for (const t of scratch) t.dispose();
    }
  },
  scaleByScalar: (out, x, scalar) => cpu.scaleF32(f32(out), f32(x), f32(scalar)[0], x.size),
} satisfies Kernels;
