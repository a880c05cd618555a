// A Llama-family decoder (Llama 2/3, Mistral, Qwen2/2.5, Qwen3, SmolLM, TinyLlama) built from ops.
import { checkpoint, checkpointOutput, computeValues, isRecomputing } from '../autograd/tape.js';
import { attention, type AttentionResult } from '../ops/attention.js';
import { add, cast } from '../ops/elementwise.js';
import { embedding } from '../ops/embedding.js';
import { rmsnorm } from '../ops/rmsnorm.js';
import { parseRopeConfig, rope, ropeTables, type RopeConfig } from '../ops/rope.js';
import { swiglu } from '../ops/swiglu.js';
import { forwardShared, Linear, type ForwardContext } from '../nn/linear.js';
import { keep, Tensor, tidy, type Device } from '../tensor/tensor.js';
import { floatDTypes, offload, prefetch, useDevice } from '../backend/device.js';
import type { DType } from '../tensor/dtype.js';
import type { ModelConfig } from './config.js';
import type { LoraConfig } from '../peft/config.js';
import type { KVStore } from './kv-cache.js';
import { readPrequantized, type RawWeights } from '../quant/bnb-read.js';
import { quantizeWeight, type QuantizeOptions } from '../quant/weight.js';

/** Where weights come from: a safetensors folder or a GGUF file, in Hugging Face tensor names. */
export interface WeightSource {
  has(name: string): boolean;
  /** The named tensor; big matrices may come as bf16 when `dtype` is bf16, norms always f32. */
  read(name: string, dtype: 'f32' | 'bf16'): Tensor;
}

export type WeightDType = 'f32' | 'bf16';

/** Inputs of one forward pass, all [B, T] i32. */
export interface Batch {
  ids: Tensor;
  /** Position of each token inside its own sequence (restarts at 0 for packed sequences). */
  positions: Tensor;
  /** 0 = padding; equal positive ids = one sequence (attention never crosses them). */
  segments: Tensor;
}

class DecoderLayer {
  constructor(
    readonly index: number,
    readonly inputNorm: Tensor,
    readonly postAttnNorm: Tensor,
    readonly q: Linear,
    readonly k: Linear,
    readonly v: Linear,
    readonly o: Linear,
    readonly gate: Linear,
    readonly up: Linear,
    readonly down: Linear,
    readonly qNorm: Tensor | null,
    readonly kNorm: Tensor | null,
  ) {}

  linears(): Linear[] {
    return [this.q, this.k, this.v, this.o, this.gate, this.up, this.down];
  }

  // x [B, T, D] -> x + attention(norm(x)) [B, T, D]. In a checkpoint's recompute the output is never
  // read, so the o projection's product and the residual sum are recorded, not computed
  // (checkpointOutput). kept (a checkpoint's, see there): the first run keeps attention's output and
  // logsumexp there, and the recompute reuses them instead of running attention's forward again.
  attentionBlock(
    x: Tensor,
    batch: Batch,
    rt: RopeRuntime,
    cfg: ModelConfig,
    ctx: ForwardContext,
    cache?: KVStore,
    kept?: Tensor[],
  ): Tensor {
    const [B, T] = x.shape;
    const h = rmsnorm(x, this.inputNorm, cfg.rmsNormEps);
    const [qh, kh, vh] = forwardShared([this.q, this.k, this.v], h, ctx);
    let q = qh.reshape([B, T, cfg.numHeads, cfg.headDim]);
    let k = kh.reshape([B, T, cfg.numKvHeads, cfg.headDim]);
    let v = vh.reshape([B, T, cfg.numKvHeads, cfg.headDim]);
    if (this.qNorm && this.kNorm) {
      q = rmsnorm(q, this.qNorm, cfg.rmsNormEps);
      k = rmsnorm(k, this.kNorm, cfg.rmsNormEps);
    }
    q = rope(q, rt.cos, rt.sin, batch.positions);
    k = rope(k, rt.cos, rt.sin, batch.positions);
    const recompute = isRecomputing();
    const reuse = kept && recompute ? { out: kept[0], lse: kept[1] } : undefined;
    const keep = kept && !recompute ? (r: AttentionResult) => kept.push(r.out, r.lse) : undefined;
    const a = (
      cache
        ? cache.attend(this.index, q, k, v, batch.segments)
        : attention(q, k, v, batch.segments, { reuse, keep })
    ).reshape([B, T, cfg.numHeads * cfg.headDim]);
    return checkpointOutput(() => add(x, this.o.forward(a, ctx)));
  }

  // x1 [B, T, D] -> x1 + mlp(norm(x1)) [B, T, D]; the down projection as attentionBlock's o projection.
  mlpBlock(x1: Tensor, cfg: ModelConfig, ctx: ForwardContext): Tensor {
    const h2 = rmsnorm(x1, this.postAttnNorm, cfg.rmsNormEps);
    const [gate, up] = forwardShared([this.gate, this.up], h2, ctx);
    const m = swiglu(gate, up);
    return checkpointOutput(() => add(x1, this.down.forward(m, ctx)));
  }

  // x [B, T, D] -> [B, T, D]
  forward(
    x: Tensor,
    batch: Batch,
    rt: RopeRuntime,
    cfg: ModelConfig,
    ctx: ForwardContext,
    cache?: KVStore,
  ): Tensor {
    // Only the MLP's output is the layer's: the attention block's is read by the MLP.
    const x1 = computeValues(() => this.attentionBlock(x, batch, rt, cfg, ctx, cache));
    return this.mlpBlock(x1, cfg, ctx);
  }

  dispose(): void {
    for (const l of this.linears()) l.dispose();
    for (const t of [this.inputNorm, this.postAttnNorm, this.qNorm, this.kNorm]) t?.dispose();
  }
}

/** RoPE tables, grown on demand (a 128K-context model does not need 128K rows to train at 2K). */
export interface RopeRuntime {
  cos: Tensor;
  sin: Tensor;
  rows: number;
}

export interface ForwardOptions {
  ctx?: Partial<ForwardContext>;
  /** Recompute each decoder layer in backward instead of keeping its activations. */
  checkpointing?: boolean;
  /**
   * With checkpointing on a GPU: keep each checkpoint's saved input in pinned host memory between
   * forward and backward (copied back one block ahead), so activation memory no longer grows with
   * depth. Layers are then checkpointed as two blocks each (attention, MLP), so the recompute skips
   * two of the seven projections' products at no GPU memory cost. (On the CPU nothing moves, but the
   * layers are still split, which the tests use.)
   */
  offloadCheckpoints?: boolean;
  cache?: KVStore;
}

export class CausalLM {
  private ropeRuntime: RopeRuntime | null = null;
  readonly rope: RopeConfig;
  /** Adapters attached to this model by name (see peft/), and the one forward passes use. */
  readonly adapterConfigs = new Map<string, LoraConfig>();
  /** Per-adapter trainable copies of the embedding table (PEFT's modules_to_save: embed_tokens). */
  readonly embedCopies = new Map<string, Tensor>();
  activeAdapter: string | null = null;

  constructor(
    readonly config: ModelConfig,
    readonly embedTokens: Tensor,
    readonly layers: DecoderLayer[],
    readonly finalNorm: Tensor,
    /** The output head; with tied embeddings its weight is embedTokens itself. Never quantized. */
    readonly lmHead: Linear<Tensor>,
  ) {
    this.rope = parseRopeConfig(config.raw, config.headDim);
  }

  /**
   * Builds the model from its weights. With `quant`, each decoder linear weight is quantized right
   * after it is read and its dense copy freed (the embeddings and the output head stay dense, as
   * bitsandbytes leaves them); weights stored pre-quantized by bitsandbytes load as they are.
   */
  static load(
    config: ModelConfig,
    source: WeightSource,
    dtype: WeightDType = 'f32',
    quant?: QuantizeOptions,
    device: Device = 'cpu',
  ): CausalLM {
    useDevice(device);
    // Where `dtype` is a compute dtype (a GPU: bf16, or f32 for exact fp32 math) every frozen tensor is
    // stored in it; elsewhere (the CPU computes in f32) big matrices stay bf16 storage and norms f32.
    // Tensors for another device are moved as soon as they are read, so the host holds one at a time.
    const computes = floatDTypes(device).includes(dtype);
    const place = (t: Tensor): Tensor => {
      const host = computes && t.dtype !== dtype ? cast(t, dtype) : t;
      if (host.device === device) return host;
      const moved = keep(host.toDevice(device));
      if (host !== t) host.dispose();
      t.dispose();
      return moved;
    };
    const read = (name: string, big: boolean): Tensor => {
      if (!source.has(name))
        throw new Error(`lorakit: the checkpoint has no tensor '${name}' required by ${config.modelType}.`);
      return keep(source.read(name, big ? dtype : 'f32'));
    };
    const expect = (t: Tensor, name: string, shape: number[]): Tensor => {
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
        throw new Error(
          `lorakit: tensor '${name}' has shape [${t.shape.join(', ')}], config.json implies [${shape.join(', ')}].`,
        );
      return t;
    };
    const c = config;
    const dense = (path: string, out: number, inp: number, bias: boolean): Linear<Tensor> => {
      const w = place(expect(read(`${path}.weight`, true), `${path}.weight`, [out, inp]));
      const b = bias ? place(expect(read(`${path}.bias`, false), `${path}.bias`, [out])) : null;
      return new Linear(path, w, b);
    };
    const raw: RawWeights = source;
    const linear = (path: string, out: number, inp: number, bias: boolean): Linear => {
      const pre = readPrequantized(raw, `${path}.weight`, out, inp);
      if (!pre && !quant) return dense(path, out, inp, bias);
      const b = bias ? place(expect(read(`${path}.bias`, false), `${path}.bias`, [out])) : null;
      if (pre) return new Linear(path, pre.moveTo(device), b);
      // One dense weight at a time: read it in fp32, quantize, free it.
      const w = expect(read(`${path}.weight`, false), `${path}.weight`, [out, inp]);
      try {
        return new Linear(path, quantizeWeight(w, quant!).moveTo(device), b);
      } finally {
        w.dispose();
      }
    };
    const embed = place(
      expect(read('model.embed_tokens.weight', true), 'model.embed_tokens.weight', [
        c.vocabSize,
        c.hiddenSize,
      ]),
    );
    const qDim = c.numHeads * c.headDim;
    const kvDim = c.numKvHeads * c.headDim;
    const layers: DecoderLayer[] = [];
    for (let i = 0; i < c.numLayers; i++) {
      const p = `model.layers.${i}`;
      const norm = (name: string, size: number) =>
        place(expect(read(`${p}.${name}.weight`, false), `${p}.${name}.weight`, [size]));
      layers.push(
        new DecoderLayer(
          i,
          norm('input_layernorm', c.hiddenSize),
          norm('post_attention_layernorm', c.hiddenSize),
          linear(`${p}.self_attn.q_proj`, qDim, c.hiddenSize, c.attentionBias),
          linear(`${p}.self_attn.k_proj`, kvDim, c.hiddenSize, c.attentionBias),
          linear(`${p}.self_attn.v_proj`, kvDim, c.hiddenSize, c.attentionBias),
          linear(`${p}.self_attn.o_proj`, c.hiddenSize, qDim, c.outputBias),
          linear(`${p}.mlp.gate_proj`, c.intermediateSize, c.hiddenSize, c.mlpBias),
          linear(`${p}.mlp.up_proj`, c.intermediateSize, c.hiddenSize, c.mlpBias),
          linear(`${p}.mlp.down_proj`, c.hiddenSize, c.intermediateSize, c.mlpBias),
          c.qkNorm ? norm('self_attn.q_norm', c.headDim) : null,
          c.qkNorm ? norm('self_attn.k_norm', c.headDim) : null,
        ),
      );
    }
    const finalNorm = place(expect(read('model.norm.weight', false), 'model.norm.weight', [c.hiddenSize]));
    // Tied: the head shares the embedding table (PEFT's "lm_head" then still names this layer).
    const tied = c.tieWordEmbeddings || !source.has('lm_head.weight');
    const lmHead = tied ? new Linear('lm_head', embed) : dense('lm_head', c.vocabSize, c.hiddenSize, false);
    return new CausalLM(config, embed, layers, finalNorm, lmHead);
  }

  /** Where the model's weights live and its forward runs. */
  get device(): Device {
    return this.embedTokens.device;
  }

  /**
   * The dtype activations flow in: f32 on the CPU; on a GPU the dtype the frozen weights were placed
   * in (bf16, or f32 for a model loaded with dtype float32). The norms are never quantized nor
   * trained, so theirs is that dtype.
   */
  get activationDType(): DType {
    return this.finalNorm.dtype;
  }

  /** Every linear layer, in model order, the output head last. */
  linears(): Linear[] {
    return [...this.layers.flatMap((l) => l.linears()), this.lmHead];
  }

  /** RoPE tables covering positions [0, positions) (grown by doubling; DecodeStep reads them too). */
  ropeFor(positions: number): RopeRuntime {
    const rt = this.ropeRuntime;
    if (rt && rt.rows >= positions) return rt;
    let rows = Math.max(256, rt?.rows ?? 0);
    while (rows < positions) rows *= 2;
    rt?.cos.dispose();
    rt?.sin.dispose();
    const tables = ropeTables(this.rope, this.config.headDim, rows);
    const cos = keep(tables.cos.toDevice(this.device));
    const sin = keep(tables.sin.toDevice(this.device));
    tables.cos.dispose();
    tables.sin.dispose();
    this.ropeRuntime = { cos, sin, rows };
    return this.ropeRuntime;
  }

  /** Final hidden states [B, T, D] (after the last norm). */
  hidden(hostBatch: Batch, opts: ForwardOptions = {}): Tensor {
    const ctx: ForwardContext = { adapter: this.activeAdapter, training: false, seed: 0, ...opts.ctx };
    const T = hostBatch.ids.shape[1];
    const maxPos = hostBatch.positions.as('i32').reduce((m, p) => Math.max(m, p), 0) + 1;
    // Batches are built on the host and checked there; a model on another device takes a copy.
    const copy = hostBatch.ids.device !== this.device;
    if (copy) {
      for (const id of hostBatch.ids.as('i32'))
        if (id < 0 || id >= this.config.vocabSize)
          throw new Error(
            `lorakit: embedding: token id ${id} is out of range for a vocabulary of ${this.config.vocabSize} tokens.`,
          );
      for (const s of hostBatch.segments.as('i32'))
        if (s < 0)
          throw new Error(`lorakit: attention: segment ids must be 0 (padding) or positive, got ${s}.`);
    }
    const batch: Batch = !copy
      ? hostBatch
      : {
          ids: hostBatch.ids.toDevice(this.device),
          positions: hostBatch.positions.toDevice(this.device),
          segments: hostBatch.segments.toDevice(this.device),
        };
    if (this.config.slidingWindow !== null && maxPos > this.config.slidingWindow)
      throw new Error(
        `lorakit: sequences of ${maxPos} tokens exceed this model's sliding window (${this.config.slidingWindow}).`,
      );
    const rt = this.ropeFor(maxPos);
    if (ctx.rowAdapters?.some((a) => a !== null && this.embedCopies.has(a)))
      throw new Error(
        'lorakit: adapters with their own embeddings (modules_to_save) cannot be batched per row.',
      );
    let x = embedding(
      (ctx.adapter !== null && this.embedCopies.get(ctx.adapter)) || this.embedTokens,
      batch.ids,
      this.activationDType,
    );
    const offloading = opts.checkpointing && opts.offloadCheckpoints && !opts.cache;
    if (opts.checkpointing && !opts.cache) {
      // Each block is checkpointed: forward keeps its input, backward recomputes it. When the inputs
      // are offloaded to the host, each layer is two blocks (attention, then MLP): the extra input
      // costs host memory only, and the recompute then skips the o projection's product as well as
      // the down projection's (each block's last, whose output backward never reads).
      // The attention blocks also keep attention's output and logsumexp for their recompute (offloaded
      // with the inputs: 16 MiB a layer at 8B, where attention's forward is 0.15 ms of GPU time).
      type Block = (x: Tensor, kept: Tensor[]) => Tensor;
      const blocks: Block[] = this.layers.flatMap((layer): Block[] =>
        offloading
          ? [
              (xi, kept) => layer.attentionBlock(xi, batch, rt, this.config, ctx, undefined, kept),
              (xi) => layer.mlpBlock(xi, this.config, ctx),
            ]
          : [(xi) => layer.forward(xi, batch, rt, this.config, ctx)],
      );
      let previous: Tensor[] = [];
      for (const [i, block] of blocks.entries()) {
        const xin = x;
        const before = previous;
        const kept: Tensor[] = [];
        // Backward of block i starts copying block i − 1's input (and kept tensors) back while block i
        // recomputes.
        x = checkpoint(
          ([xi]) => block(xi, kept),
          [xin],
          before.length ? () => before.forEach(prefetch) : undefined,
          kept,
        );
        // The last block's input is the first one backward needs: it stays.
        if (offloading && i < blocks.length - 1) [xin, ...kept].forEach(offload);
        previous = [xin, ...kept];
        // From here the block's input belongs to the tape alone (which saved it), so its memory goes
        // as soon as backward has passed this block instead of at the end of the caller's scope.
        keep(xin);
        xin.dispose();
      }
    } else {
      for (const layer of this.layers) {
        // A layer's intermediates that backward does not need are freed as soon as it returns (the
        // tape holds its own references to what it saved).
        const xin = x;
        x = tidy(() => layer.forward(xin, batch, rt, this.config, ctx, opts.cache));
      }
    }
    opts.cache?.commit(T);
    return rmsnorm(x, this.finalNorm, this.config.rmsNormEps);
  }

  /** Logits [B, T, V]. */
  logits(batch: Batch, opts: ForwardOptions = {}): Tensor {
    const ctx: ForwardContext = { adapter: this.activeAdapter, training: false, seed: 0, ...opts.ctx };
    return this.lmHead.forward(this.hidden(batch, opts), ctx);
  }

  dispose(): void {
    for (const l of this.layers) l.dispose();
    if (this.lmHead.weight !== this.embedTokens) this.lmHead.dispose();
    else for (const a of this.lmHead.adapters.values()) a.dispose();
    for (const t of this.embedCopies.values()) t.dispose();
    this.embedTokens.dispose();
    this.finalNorm.dispose();
    this.ropeRuntime?.cos.dispose();
    this.ropeRuntime?.sin.dispose();
  }
}

export { DecoderLayer };
