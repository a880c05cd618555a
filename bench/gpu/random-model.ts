// Random-weight models with the real shapes of SmolLM2-135M, Qwen2.5-0.5B, Llama-3.2-1B and
// Llama-3.1-8B, for the benchmarks (bench/gpu/train-gpu.ts, bench/gpu/generate-gpu.ts,
// bench/train-devices.ts): speed does not depend on the values. Weights go to the CUDA device in bf16
// unless a device and dtype are given.
import type { ModelConfig } from '../../src/models/config.js';
import type { Device } from '../../src/tensor/tensor.js';
import { CausalLM, DecoderLayer } from '../../src/models/llama.js';
import { Linear } from '../../src/nn/linear.js';
import { QuantizedWeight, quantizeWeight } from '../../src/quant/weight.js';
import { keep, Tensor } from '../../src/tensor/tensor.js';

/** The published configs (config.json) of the three models, as the architectures need them. */
export const SHAPES: Record<string, Record<string, unknown>> = {
  'smollm2-135m': {
    model_type: 'llama',
    hidden_size: 576,
    num_hidden_layers: 30,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    intermediate_size: 1536,
    vocab_size: 49152,
    tie_word_embeddings: true,
    rope_theta: 100000,
    rms_norm_eps: 1e-5,
    max_position_embeddings: 8192,
    hidden_act: 'silu',
  },
  'qwen2.5-0.5b': {
    model_type: 'qwen2',
    hidden_size: 896,
    num_hidden_layers: 24,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    intermediate_size: 4864,
    vocab_size: 151936,
    tie_word_embeddings: true,
    rope_theta: 1000000,
    rms_norm_eps: 1e-6,
    max_position_embeddings: 32768,
    hidden_act: 'silu',
  },
  'llama-3.2-1b': {
    model_type: 'llama',
    hidden_size: 2048,
    num_hidden_layers: 16,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    intermediate_size: 8192,
    vocab_size: 128256,
    tie_word_embeddings: true,
    rope_theta: 500000,
    rms_norm_eps: 1e-5,
    max_position_embeddings: 131072,
    head_dim: 64,
    hidden_act: 'silu',
    rope_scaling: {
      rope_type: 'llama3',
      factor: 32,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    },
  },
  'llama-3.1-8b': {
    model_type: 'llama',
    hidden_size: 4096,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    intermediate_size: 14336,
    vocab_size: 128256,
    tie_word_embeddings: false,
    rope_theta: 500000,
    rms_norm_eps: 1e-5,
    max_position_embeddings: 131072,
    hidden_act: 'silu',
    rope_scaling: {
      rope_type: 'llama3',
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    },
  },
};

/** Where the random weights go: the device and the dense weights' dtype. */
export interface RandomTarget {
  device: Device;
  dtype: 'bf16' | 'f32';
}
const CUDA_BF16: RandomTarget = { device: 'cuda', dtype: 'bf16' };

// Random values: one random block per target, copied over every weight (speed does not depend on
// the values; generating 8 B random numbers on the host would dominate the run).
const blocks = new Map<string, Tensor>();
export function randomDense(shape: number[], t: RandomTarget = CUDA_BF16): Tensor {
  const key = `${t.device} ${t.dtype}`;
  let block = blocks.get(key);
  if (!block) {
    const n = 1 << 22;
    const v = new Float32Array(n);
    let s = 12345;
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      v[i] = ((s / 4294967296) * 2 - 1) * 0.03;
    }
    block = keep(Tensor.from(v, [n], t.dtype, t.device));
    blocks.set(key, block);
  }
  const out = keep(Tensor.empty(shape, t.dtype, t.device));
  for (let i = 0; i < out.size; i += block.size)
    Tensor.copyElements(out, i, block, 0, Math.min(block.size, out.size - i));
  return out;
}

/** Random bf16 values on the CUDA device. */
export const randomBf16 = (shape: number[]): Tensor => randomDense(shape, CUDA_BF16);

function ones(n: number, t: RandomTarget): Tensor {
  return keep(Tensor.from(new Float32Array(n).fill(1), [n], t.dtype, t.device));
}

/** NF4 + double-quant weights: one quantized random matrix per distinct shape, copied per layer. */
const quantCache = new Map<string, QuantizedWeight>();
function randomNf4(out: number, inp: number, device: Device): QuantizedWeight {
  const key = `${out}x${inp} ${device}`;
  let q = quantCache.get(key);
  if (!q) {
    const host = Tensor.empty([out, inp]);
    const d = host.as('f32');
    let s = out * 7 + inp;
    for (let i = 0; i < d.length; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      d[i] = ((s / 4294967296) * 2 - 1) * 0.03;
    }
    q = quantizeWeight(host, { type: 'nf4', doubleQuant: true, blocksize: 64 });
    host.dispose();
    quantCache.set(key, q);
  }
  const n = q.nested!;
  return new QuantizedWeight(
    q.type,
    q.shape,
    q.data.toDevice(device),
    null,
    {
      ...n,
      qabsmax: n.qabsmax.toDevice(device),
      absmax2: n.absmax2.toDevice(device),
      code: n.code.toDevice(device),
    },
    q.blocksize,
  );
}

export function randomModel(c: ModelConfig, quantized: boolean, t: RandomTarget = CUDA_BF16): CausalLM {
  const embed = randomDense([c.vocabSize, c.hiddenSize], t);
  const lin = (path: string, out: number, inp: number, bias: boolean): Linear =>
    new Linear(
      path,
      quantized ? randomNf4(out, inp, t.device) : randomDense([out, inp], t),
      bias ? randomDense([out], t) : null,
    );
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const layers = Array.from({ length: c.numLayers }, (_, i) => {
    const p = `model.layers.${i}`;
    return new DecoderLayer(
      i,
      ones(c.hiddenSize, t),
      ones(c.hiddenSize, t),
      lin(`${p}.self_attn.q_proj`, q, c.hiddenSize, c.attentionBias),
      lin(`${p}.self_attn.k_proj`, kv, c.hiddenSize, c.attentionBias),
      lin(`${p}.self_attn.v_proj`, kv, c.hiddenSize, c.attentionBias),
      lin(`${p}.self_attn.o_proj`, c.hiddenSize, q, false),
      lin(`${p}.mlp.gate_proj`, c.intermediateSize, c.hiddenSize, false),
      lin(`${p}.mlp.up_proj`, c.intermediateSize, c.hiddenSize, false),
      lin(`${p}.mlp.down_proj`, c.hiddenSize, c.intermediateSize, false),
      null,
      null,
    );
  });
  const head = c.tieWordEmbeddings
    ? new Linear('lm_head', embed)
    : new Linear('lm_head', randomDense([c.vocabSize, c.hiddenSize], t));
  return new CausalLM(c, embed, layers, ones(c.hiddenSize, t), head);
}

/** Frees the random source block and the quantized templates (once the models are built). */
export function freeRandomSources(): void {
  for (const b of blocks.values()) b.dispose();
  blocks.clear();
  for (const q of quantCache.values()) q.dispose();
  quantCache.clear();
}
