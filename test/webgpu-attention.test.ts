// The WebGPU attention and cross-entropy kernels against the CPU backend: outputs and gradients at odd
// sizes (not multiples of the 16-row tiles or 256-thread workgroups), with GQA, Tq < Tk, packed
// sequences and padding, head sizes that take one or several D-chunks, views at element offsets, and
// ignored targets.
import { test } from 'node:test';
import { attention } from '../src/ops/attention.js';
import { crossEntropy, IGNORE_INDEX } from '../src/ops/cross-entropy.js';
import { linearCrossEntropy } from '../src/ops/linear-cross-entropy.js';
import { Tensor } from '../src/tensor/tensor.js';
import { compareWebGpu, ids, input, WEBGPU_SKIP } from './webgpu-helpers.js';

const skip = WEBGPU_SKIP;

/** segments [B, T] from per-batch-row runs [id, length] (0 = padding). */
function segments(rows: [number, number][][]): Tensor {
  const values = rows.flatMap((runs) => runs.flatMap(([id, n]) => new Array<number>(n).fill(id)));
  return Tensor.from(values, [rows.length, values.length / rows.length], 'i32');
}

interface Case {
  B: number;
  Tq: number;
  Tk: number;
  Hq: number;
  Hkv: number;
  D: number;
  seg: Tensor;
}

async function compareAttention(what: string, c: Case, tol = 2e-5): Promise<void> {
  const q = input([c.B, c.Tq, c.Hq, c.D], 1);
  const k = input([c.B, c.Tk, c.Hkv, c.D], 2);
  const v = input([c.B, c.Tk, c.Hkv, c.D], 3);
  await compareWebGpu(
    what,
    [{ t: q, trainable: true }, { t: k, trainable: true }, { t: v, trainable: true }, { t: c.seg }],
    ([qq, kk, vv, s]) => attention(qq, kk, vv, s),
    tol,
  );
}

test('WebGPU attention: causal GQA at odd sizes (B 2, T 37, Hq 6, Hkv 2, D 24)', { skip }, async () => {
  await compareAttention('attention D 24', {
    B: 2,
    Tq: 37,
    Tk: 37,
    Hq: 6,
    Hkv: 2,
    D: 24,
    seg: segments([[[1, 37]], [[1, 37]]]),
  });
});

test('WebGPU attention: D 64, packed sequences and padding', { skip }, async () => {
  // Row 0: three packed sequences then right padding; row 1: left padding, and an id that comes back
  // after a gap (a row of segment 3 then sees keys from both of its runs).
  const seg = segments([
    [
      [1, 11],
      [2, 17],
      [3, 4],
      [0, 5],
    ],
    [
      [0, 6],
      [3, 9],
      [5, 12],
      [3, 10],
    ],
  ]);
  await compareAttention('attention D 64 packed', { B: 2, Tq: 37, Tk: 37, Hq: 4, Hkv: 4, D: 64, seg });
});

test('WebGPU attention: Tq < Tk (queries are the last keys), one query row too', { skip }, async () => {
  const seg = segments([
    [
      [1, 20],
      [2, 21],
    ],
    [
      [0, 3],
      [4, 38],
    ],
  ]);
  await compareAttention('attention Tq 19 of Tk 41', { B: 2, Tq: 19, Tk: 41, Hq: 6, Hkv: 3, D: 24, seg });
  await compareAttention('attention Tq 1 of Tk 41', { B: 2, Tq: 1, Tk: 41, Hq: 6, Hkv: 2, D: 40, seg });
});

test('WebGPU attention: head sizes that take several D-chunks (D 100, D 256)', { skip }, async () => {
  const seg = segments([
    [
      [1, 13],
      [2, 8],
    ],
  ]);
  await compareAttention('attention D 100', { B: 1, Tq: 21, Tk: 21, Hq: 4, Hkv: 2, D: 100, seg });
  await compareAttention('attention D 256', { B: 1, Tq: 21, Tk: 21, Hq: 2, Hkv: 1, D: 256, seg });
});

test('WebGPU attention: q, k, v as views at element offsets', { skip }, async () => {
  const [B, T, H, D] = [3, 19, 2, 24];
  const seg = segments([
    [[1, T]],
    [
      [1, 7],
      [2, 12],
    ],
  ]);
  const q = input([B, T, H, D], 4);
  const k = input([B, T, H, D], 5);
  const v = input([B, T, H, D], 6);
  await compareWebGpu('attention of views', [{ t: q }, { t: k }, { t: v }, { t: seg }], ([qq, kk, vv, s]) =>
    attention(qq.sliceRows(1, 3), kk.sliceRows(1, 3), vv.sliceRows(0, 2), s),
  );
});

/** Targets [N] in [0, V) with every `every`-th row (from `from`) ignored. */
function targets(N: number, V: number, seed: number, every = 3, from = 1): Tensor {
  const t = ids([N], V, seed).toFloat32();
  return Tensor.from(
    Array.from(t, (x, i) => (i % every === from ? IGNORE_INDEX : x)),
    [N],
    'i32',
  );
}

test(
  'WebGPU cross-entropy: loss and dlogits with ignored targets, V not a multiple of 256',
  { skip },
  async () => {
    for (const [N, V] of [
      [13, 1000],
      [5, 37],
      [3, 257],
    ]) {
      const logits = input([N, V], 7, 2);
      await compareWebGpu(
        `crossEntropy ${N}×${V}`,
        [{ t: logits, trainable: true }, { t: targets(N, V, 8) }],
        ([x, t]) => crossEntropy(x, t),
      );
    }
    // A view at an element offset (rows 2..9 of a larger tensor), not trainable.
    const big = input([11, 301], 9);
    const t = targets(7, 301, 10);
    await compareWebGpu('crossEntropy of a view', [{ t: big }, { t }], ([x, tt]) =>
      crossEntropy(x.sliceRows(2, 9), tt),
    );
  },
);

test('WebGPU linear cross-entropy: loss and dh, f32 and bf16 heads, ignored targets', { skip }, async () => {
  for (const [N, D, V, bf16] of [
    [23, 40, 333, false],
    [70, 24, 1001, true],
  ] as const) {
    const h = input([N, D], 11);
    const w = input([V, D], 12, 0.3);
    await compareWebGpu(
      `linearCrossEntropy ${N}×${D}, V ${V}${bf16 ? ' bf16' : ''}`,
      [{ t: h, trainable: true }, { t: w, bf16 }, { t: targets(N, V, 13, 4, 2) }],
      ([hh, ww, tt]) => linearCrossEntropy(hh, ww, tt),
    );
  }
  // Logits over 64 MiB: the rows go in chunks (192 rows, then the rest).
  const [N0, D0, V0] = [300, 8, 70001];
  await compareWebGpu(
    `linearCrossEntropy in chunks, V ${V0}`,
    [
      { t: input([N0, D0], 16), trainable: true },
      { t: input([V0, D0], 17, 0.3) },
      { t: targets(N0, V0, 18, 4, 2) },
    ],
    ([hh, ww, tt]) => linearCrossEntropy(hh, ww, tt),
  );
  // Every row ignored: loss 0, dh 0.
  const N = 9;
  const none = Tensor.from(new Array<number>(N).fill(IGNORE_INDEX), [N], 'i32');
  await compareWebGpu(
    'linearCrossEntropy, no targets',
    [{ t: input([N, 16], 14), trainable: true }, { t: input([50, 16], 15) }, { t: none }],
    ([hh, ww, tt]) => linearCrossEntropy(hh, ww, tt),
  );
});
