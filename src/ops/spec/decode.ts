// Batch-1 decode step kernels (native/cpu/decode.cc): the CPU's fast path for one new token through a
// decoder layer, called by src/models/decode-step.ts rather than through the op table. A weight is eight
// arguments: dense (fp32 or bf16 bits) | null, int8 bits | null, int8 row scales | null, bias | null,
// then its LoRA adapter: A [r, cols] | null, B [rows, r] | null, r (0: none), scale s.
import { host, type OpGroup } from './dsl.js';

type WeightSignature<N extends string> =
  `w${N}?:f32|u16 q${N}?:u8 s${N}?:f32 b${N}?:f32 a${N}?:f32 l${N}?:f32 r${N} ls${N}`;
const weight = <N extends string>(n: N): WeightSignature<N> =>
  `w${n}?:f32|u16 q${n}?:u8 s${n}?:f32 b${n}?:f32 a${n}?:f32 l${n}?:f32 r${n} ls${n}`;

export const decode = {
  ops: {},
  cpu: {
    /**
     * y_i [rows_i] = W_i [rows_i, cols] · norm(x) (+ b_i) (+ s_i·B_i·(A_i·norm(x))) for up to three
     * weights (rows_i = 0: none, the unused last); with accumulate y_i += …. norm(x) = norm · (x · rstd) (rmsnorm) or x when null.
     */
    decodeProject: host(
      `y0:f32 y1?:f32 y2?:f32 x:f32 norm?:f32 ${weight('0')} ${weight('1')} ${weight('2')} rows0 rows1 rows2 cols eps accumulate:bool`,
    ),
    /** m [rows] = silu(Wg · norm(x) + bg) · (Wu · norm(x) + bu), Wg, Wu [rows, cols], each with its LoRA term. */
    decodeSwiglu: host(`m:f32 x:f32 norm?:f32 ${weight('g')} ${weight('u')} rows cols eps`),
    /**
     * q [H·Dh], k [Hkv·Dh] normed per head (qNorm, kNorm [Dh], when given) and rotated at `pos`
     * (cos, sin [P, half]) in place; k, v written at row `at` of kCache, vCache [capacity, Hkv, Dh];
     * out [H·Dh] = softmax(q·kᵀ·scale)·v over cache rows [0, at]. With blocks (a paged cache: kCache,
     * vCache [numBlocks, blockSize, Hkv, Dh]) position t is at slot blocks[t / blockSize]·blockSize + t % blockSize.
     */
    decodeAttention: host(
      'out:f32 q:f32 k:f32 v:f32 kCache:f32 vCache:f32 qNorm?:f32 kNorm?:f32 cos:f32 sin:f32 at pos H Hkv Dh half P eps scale blocks?:i32 blockSize',
    ),
  },
} as const satisfies OpGroup;
