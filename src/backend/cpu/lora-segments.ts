// The LoRA term of many adapters over one batch (src/ops/lora-segments.ts) on the CPU GEMM: per
// segment h = x·Aᵀ into a scratch, then y += s·h·Bᵀ through the GEMM's epilogue (alpha = s, beta = 1),
// bf16 factors read as stored.
import type { Kernels } from '../kernels.js';
import { cpu } from './addon.js';
import { f32, f32OrBf16 } from './arrays.js';

// Rows per GEMM call. Up to 8 rows (native/cpu/gemm.cc, kSmallM) the GEMM takes its dot-product route,
// whose sums for a row do not depend on how many rows come with it; more rows would take the packed,
// blocked route, which sums in another order. Cutting every segment into such chunks keeps each row's
// bits independent of its batch.
const CHUNK_ROWS = 8;

export const loraSegmentsKernels = {
  loraSegments: (y, x, As, Bs, { starts, ends, scales }) => {
    const inF = x.shape.at(-1)!;
    const out = y.shape.at(-1)!;
    const xs = f32(x);
    const ys = f32(y);
    const maxRank = As.reduce((m, A) => Math.max(m, A.shape[0]), 0);
    const h = new Float32Array(CHUNK_ROWS * maxRank); // [rows, r] of one chunk
    // Rank-r products are far too small to pay for waking the thread team.
    const threads = cpu.getThreads();
    cpu.setThreads(1);
    try {
      As.forEach((A, g) => {
        const a = f32OrBf16(A); // [r, in]
        const b = f32OrBf16(Bs[g]); // [out, r]
        const r = A.shape[0];
        for (let r0 = starts[g]; r0 < ends[g]; r0 += CHUNK_ROWS) {
          const m = Math.min(CHUNK_ROWS, ends[g] - r0);
          const xr = xs.subarray(r0 * inF, (r0 + m) * inF); // [m, in]
          const yr = ys.subarray(r0 * out, (r0 + m) * out); // [m, out]
          const hr = h.subarray(0, m * r); // [m, r]
          cpu.gemm(hr, xr, a, null, 1, m, r, inF, false, true, 1, 0, m * inF, r * inF, m * r);
          cpu.gemm(yr, hr, b, null, 1, m, out, r, false, true, scales[g], 1, m * r, out * r, m * out);
        }
      });
    } finally {
      cpu.setThreads(threads);
    }
  },
} satisfies Kernels;
