// The CPU's fast path for one new token of one sequence (generate, chat, serve with a single decoding
// sequence): the layer's work in five native calls (native/cpu/decode.cc) on buffers made once, with no
// tensors, tape or op dispatch per step, reading each weight where it lies (fp32, bf16 or int8 rows).
// It computes what CausalLM.hidden + lmHead compute for a one-token batch with the KV cache, in the
// same order of operations up to the order of the fp32 sums. An active plain LoRA adapter (any rank, on
// any linear, with embed_tokens from modules_to_save) runs in the same kernels: each adapted weight adds
// s·B·(A·x). What it does not cover (DoRA, a saved lm_head copy, 4-bit weights, a GPU) gets no
// DecodeStep and takes the op-by-op path.
import { cpu } from '../backend/cpu/addon.js';
import type { ForwardContext, Linear } from '../nn/linear.js';
import { QuantizedWeight } from '../quant/weight.js';
import type { Tensor } from '../tensor/tensor.js';
import type { KVCache } from './kv-cache.js';
import type { PagedKVCache, PagedSequence } from './paged-kv-cache.js';
import type { CausalLM } from './llama.js';

/**
 * A weight as decode.cc takes it: dense (f32 or bf16 bits) | null, int8 | null, row scales | null,
 * bias | null, then LoRA A | null, B | null, rank (0: none), scale.
 */
type WeightArgs = [
  Float32Array | Uint16Array | null,
  Uint8Array | null,
  Float32Array | null,
  Float32Array | null,
  Float32Array | null,
  Float32Array | null,
  number,
  number,
];
const NONE: WeightArgs = [null, null, null, null, null, null, 0, 0];

const INFERENCE: ForwardContext = { adapter: null, training: false, seed: 0 };

// The layer's weight with the adapter's factors, or null where decode.cc cannot run it.
function weightArgs(l: Linear, adapter: string | null): WeightArgs | null {
  const bias = l.bias ? l.bias.as('f32') : null;
  const a = adapter === null ? undefined : l.adapters.get(adapter);
  const lora = a ? (a.sharedFactors?.({ ...INFERENCE, adapter }) ?? undefined) : null;
  if (lora === undefined) return null; // an adapter that is not plain LoRA (DoRA, a full copy)
  const loraArgs: [Float32Array | null, Float32Array | null, number, number] = lora
    ? [lora.A.as('f32'), lora.B.as('f32'), lora.A.shape[0], lora.s]
    : [null, null, 0, 0];
  const w = l.weight;
  if (w instanceof QuantizedWeight)
    return w.type === 'int8' && w.absmax
      ? [null, w.data.as('u8'), w.absmax.as('f32'), bias, ...loraArgs]
      : null;
  if (w.dtype === 'f32') return [w.as('f32'), null, null, bias, ...loraArgs];
  if (w.dtype === 'bf16') return [w.as('bf16'), null, null, bias, ...loraArgs];
  return null;
}

interface LayerArgs {
  inputNorm: Float32Array;
  postNorm: Float32Array;
  qNorm: Float32Array | null;
  kNorm: Float32Array | null;
  q: WeightArgs;
  k: WeightArgs;
  v: WeightArgs;
  o: WeightArgs;
  gate: WeightArgs;
  up: WeightArgs;
  down: WeightArgs;
}

export class DecodeStep {
  private readonly x: Float32Array;
  private readonly q: Float32Array;
  private readonly k: Float32Array;
  private readonly v: Float32Array;
  private readonly attn: Float32Array;
  private readonly mlp: Float32Array;
  private readonly out: Float32Array;

  private constructor(
    readonly model: CausalLM,
    private readonly embed: Tensor,
    private readonly layers: LayerArgs[],
    private readonly head: WeightArgs,
  ) {
    const c = model.config;
    this.x = new Float32Array(c.hiddenSize);
    this.q = new Float32Array(c.numHeads * c.headDim);
    this.k = new Float32Array(c.numKvHeads * c.headDim);
    this.v = new Float32Array(c.numKvHeads * c.headDim);
    this.attn = new Float32Array(c.numHeads * c.headDim);
    this.mlp = new Float32Array(c.intermediateSize);
    this.out = new Float32Array(model.lmHead.outFeatures);
  }

  /**
   * The fast path for `model` with `adapter` active, or null where it does not apply: a model off the
   * CPU, an adapter other than plain LoRA on some layer, weights neither fp32, bf16 nor int8.
   * Made once per generation (it holds views of the weights, so it is invalid once the model is disposed).
   */
  static for(model: CausalLM, adapter: string | null = model.activeAdapter): DecodeStep | null {
    if (model.device !== 'cpu' || model.activationDType !== 'f32') return null;
    const embed = (adapter !== null && model.embedCopies.get(adapter)) || model.embedTokens;
    if (embed.dtype !== 'f32' && embed.dtype !== 'bf16') return null;
    const layers: LayerArgs[] = [];
    for (const L of model.layers) {
      const w = [L.q, L.k, L.v, L.o, L.gate, L.up, L.down].map((l) => weightArgs(l, adapter));
      if (w.some((a) => a === null)) return null;
      const [q, k, v, o, gate, up, down] = w as WeightArgs[];
      layers.push({
        inputNorm: L.inputNorm.as('f32'),
        postNorm: L.postAttnNorm.as('f32'),
        qNorm: L.qNorm && L.kNorm ? L.qNorm.as('f32') : null,
        kNorm: L.qNorm && L.kNorm ? L.kNorm.as('f32') : null,
        q,
        k,
        v,
        o,
        gate,
        up,
        down,
      });
    }
    const head = weightArgs(model.lmHead, adapter);
    if (!head) return null;
    return new DecodeStep(model, embed, layers, head);
  }

  /**
   * Next-token logits [V] after token `id` at position `pos`, its keys and values appended to `cache`
   * (a one-sequence cache of this model) at its length, which then advances by one. The array is this
   * DecodeStep's own and is overwritten by the next call.
   */
  logits(id: number, pos: number, cache: KVCache): Float32Array {
    if (cache.batch !== 1) throw new Error('lorakit: DecodeStep takes a one-sequence KV cache.');
    const at = cache.length;
    if (at + 1 > cache.capacity)
      throw new Error(`lorakit: the KV cache holds ${cache.capacity} positions; ${at + 1} were needed.`);
    const out = this.run(id, pos, at, (l) => cache.hostLayer(l), null, 1);
    cache.appended(1);
    return out;
  }

  /**
   * logits() for a sequence of a paged CPU cache (serving): the token goes at position seq.length, in
   * the blocks the sequence already holds (PagedKVCache.reserve), and seq.length advances by one.
   */
  pagedLogits(id: number, seq: PagedSequence, cache: PagedKVCache): Float32Array {
    if (cache.device !== 'cpu' || cache.dtype !== 'f32')
      throw new Error('lorakit: DecodeStep takes a CPU fp32 KV cache.');
    const at = seq.length;
    if (cache.blocksFor(at + 1) > seq.blocks.length)
      throw new Error(
        `lorakit: the sequence holds ${seq.blocks.length} KV blocks; position ${at} needs another.`,
      );
    const blocks = Int32Array.from(seq.blocks);
    const out = this.run(
      id,
      at,
      at,
      (l) => ({ k: cache.keys[l].as('f32'), v: cache.values[l].as('f32') }),
      blocks,
      cache.blockSize,
    );
    seq.length += 1;
    return out;
  }

  // One token at position `pos`, written at cache position `at` of the layers' stores (blocks: the
  // sequence's blocks of a paged store, or null for a contiguous one).
  private run(
    id: number,
    pos: number,
    at: number,
    layerKV: (layer: number) => { k: Float32Array; v: Float32Array },
    blocks: Int32Array | null,
    blockSize: number,
  ): Float32Array {
    const m = this.model;
    const c = m.config;
    if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize)
      throw new Error(
        `lorakit: embedding: token id ${id} is out of range for a vocabulary of ${c.vocabSize} tokens.`,
      );
    if (c.slidingWindow !== null && pos + 1 > c.slidingWindow)
      throw new Error(
        `lorakit: sequences of ${pos + 1} tokens exceed this model's sliding window (${c.slidingWindow}).`,
      );
    const D = c.hiddenSize;
    const H = c.numHeads;
    const Hkv = c.numKvHeads;
    const Dh = c.headDim;
    const I = c.intermediateSize;
    const eps = c.rmsNormEps;
    const { x, q, k, v, attn, mlp } = this;
    // The embedding row, widened from bf16 exactly as the embedding op does.
    if (this.embed.dtype === 'bf16') {
      const e = this.embed.as('bf16');
      const bits = new Uint32Array(x.buffer, x.byteOffset, D);
      for (let i = 0; i < D; i++) bits[i] = e[id * D + i] << 16;
    } else x.set(this.embed.as('f32').subarray(id * D, (id + 1) * D));
    const rt = m.ropeFor(pos + 1);
    const cos = rt.cos.as('f32');
    const sin = rt.sin.as('f32');
    const half = rt.cos.shape[1];
    const scale = 1 / Math.sqrt(Dh);
    for (let l = 0; l < this.layers.length; l++) {
      const L = this.layers[l];
      const kv = layerKV(l);
      cpu.decodeProject(
        q,
        k,
        v,
        x,
        L.inputNorm,
        ...L.q,
        ...L.k,
        ...L.v,
        H * Dh,
        Hkv * Dh,
        Hkv * Dh,
        D,
        eps,
        false,
      );
      cpu.decodeAttention(
        attn,
        q,
        k,
        v,
        kv.k,
        kv.v,
        L.qNorm,
        L.kNorm,
        cos,
        sin,
        at,
        pos,
        H,
        Hkv,
        Dh,
        half,
        rt.rows,
        eps,
        scale,
        blocks,
        blockSize,
      );
      cpu.decodeProject(x, null, null, attn, null, ...L.o, ...NONE, ...NONE, D, 0, 0, H * Dh, eps, true);
      cpu.decodeSwiglu(mlp, x, L.postNorm, ...L.gate, ...L.up, I, D, eps);
      cpu.decodeProject(x, null, null, mlp, null, ...L.down, ...NONE, ...NONE, D, 0, 0, I, eps, true);
    }
    const out = this.out;
    cpu.decodeProject(
      out,
      null,
      null,
      x,
      m.finalNorm.as('f32'),
      ...this.head,
      ...NONE,
      ...NONE,
      out.length,
      0,
      0,
      D,
      eps,
      false,
    );
    return out;
  }
}
