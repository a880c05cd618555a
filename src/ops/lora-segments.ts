// The LoRA term of many adapters over one batch of rows, in place: a server batches the rows (tokens)
// of requests that use different adapters, runs the base GEMM once for all of them, then adds each
// run of rows' own low-rank term with this op (Punica's SGMV, S-LoRA):
//
//   y[start:end] += s·(x[start:end]·Aᵀ)·Bᵀ   for every segment {start, end, A, B, s}
//
// in lora-linear.ts's arithmetic (h = x·Aᵀ in fp32 sums, in the activations' dtype; then s·h·Bᵀ summed
// in fp32 and added to y with one rounding). A row's result depends only on that row and its adapter,
// never on the other rows of the batch, so a mixed batch gives each request exactly the tokens it
// would get alone. Inference only: nothing is recorded for backward.
import { needsRecord } from '../autograd/tape.js';
import { kernel } from '../backend/kernels.js';
import { numel, shapeString, type Tensor } from '../tensor/tensor.js';
import { expectDType, expectFloat } from './util.js';

const OP = 'loraSegments';

/** Rows [start, end) of a batch that use one adapter: A [r, in], B [out, r] (f32 or bf16), scale s. */
export interface LoraSegment {
  start: number;
  end: number;
  A: Tensor;
  B: Tensor;
  s: number;
}

/** The largest rank a segment's adapter may have (the CUDA kernels stage a row's h in shared memory). */
export const LORA_SEGMENTS_MAX_RANK = 256;

function check(y: Tensor, x: Tensor, segments: readonly LoraSegment[]): void {
  expectFloat(OP, 'x', x);
  if (y.device !== x.device) throw new Error(`lorakit: ${OP}: y is on ${y.device} but x is on ${x.device}.`);
  if (y.dtype !== x.dtype)
    throw new Error(`lorakit: ${OP}: y must have x's dtype ${x.dtype}, got ${y.dtype}.`);
  if (x.shape.length < 1 || y.shape.length !== x.shape.length)
    throw new Error(
      `lorakit: ${OP}: x ${shapeString(x.shape)} and y ${shapeString(y.shape)} must be [..., in] and [..., out] with the same leading dimensions.`,
    );
  const lead = x.shape.slice(0, -1);
  if (y.shape.slice(0, -1).some((d, i) => d !== lead[i]))
    throw new Error(
      `lorakit: ${OP}: x ${shapeString(x.shape)} and y ${shapeString(y.shape)} must have the same leading dimensions.`,
    );
  if (needsRecord([y, x, ...segments.flatMap(({ A, B }) => [A, B])]))
    throw new Error(
      `lorakit: ${OP} is inference only and records no gradients; run it under noGrad() or on tensors that do not require grad.`,
    );
  const rows = numel(lead);
  const inF = x.shape.at(-1)!;
  const out = y.shape.at(-1)!;
  segments.forEach(({ start, end, A, B, s }, g) => {
    const seg = `${OP}: segment ${g}`;
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end > rows)
      throw new Error(
        `lorakit: ${seg} covers rows [${start}, ${end}), which is not a range inside [0, ${rows}).`,
      );
    for (const [name, t] of [
      ['A', A],
      ['B', B],
    ] as const) {
      if (t.device !== x.device)
        throw new Error(`lorakit: ${seg}: ${name} is on ${t.device} but x is on ${x.device}.`);
      expectDType(seg, name, t, 'f32', 'bf16');
    }
    if (A.shape.length !== 2 || A.shape[1] !== inF)
      throw new Error(`lorakit: ${seg}: A ${shapeString(A.shape)} must be [r, ${inF}] (x's features).`);
    const r = A.shape[0];
    if (r < 1 || r > LORA_SEGMENTS_MAX_RANK)
      throw new Error(`lorakit: ${seg}: A has rank ${r}; ranks must be in [1, ${LORA_SEGMENTS_MAX_RANK}].`);
    if (B.shape.length !== 2 || B.shape[0] !== out || B.shape[1] !== r)
      throw new Error(
        `lorakit: ${seg}: B ${shapeString(B.shape)} must be [${out}, ${r}] (y's features, A's rank ${r}).`,
      );
    if (!Number.isFinite(s))
      throw new Error(`lorakit: ${seg}: the scale s must be a finite number, got ${s}.`);
  });
  // Disjoint: sorted by start, each segment ends before the next begins (empty ones overlap nothing).
  const order = segments
    .map((seg, g) => ({ ...seg, g }))
    .filter(({ start, end }) => end > start)
    .sort((a, b) => a.start - b.start);
  for (let i = 1; i < order.length; i++) {
    const [p, q] = [order[i - 1], order[i]];
    if (q.start < p.end)
      throw new Error(
        `lorakit: ${OP}: segments ${p.g} [${p.start}, ${p.end}) and ${q.g} [${q.start}, ${q.end}) overlap; each row may take one adapter.`,
      );
  }
}

/**
 * y [..., out] += s·(x[rows]·Aᵀ)·Bᵀ for each segment's rows (along the flattened leading dimensions),
 * in place. x [..., in] holds activations (f32 on the CPU, f32 or bf16 on CUDA) and y has its dtype;
 * each segment's A [r, in] and B [out, r] are f32 or bf16, ranks 1..256 and different between
 * segments as they come. Segments are disjoint; rows in none keep their values.
 */
export function loraSegments(y: Tensor, x: Tensor, segments: readonly LoraSegment[]): void {
  check(y, x, segments);
  const live = segments.filter(({ start, end }) => end > start);
  // Nothing to add: no rows, no outputs, or no features (x·Aᵀ = 0).
  if (live.length === 0 || y.shape.at(-1) === 0 || x.shape.at(-1) === 0) return;
  kernel(x.device, 'loraSegments')(
    y,
    x,
    live.map(({ A }) => A),
    live.map(({ B }) => B),
    {
      starts: live.map(({ start }) => start),
      ends: live.map(({ end }) => end),
      scales: live.map(({ s }) => s),
    },
  );
}
