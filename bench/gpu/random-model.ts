// Random-weight models with the real shapes of Qwen2.5-0.5B, Llama-3.2-1B and Llama-3.1-8B on the GPU,
// for the GPU benchmarks (bench/gpu/train-gpu.ts, bench/gpu/generate-gpu.ts): speed does not depend on
// the values.
import type { ModelConfig } from '../../src/models/config.js';
import { CausalLM, DecoderLayer } from '../../src/models/llama.js';
import { Linear } from '../../src/nn/linear.js';
import { QuantizedWeight, quantizeWeight } from '../../src/quant/weight.js';
import { keep, Tensor } from '../../src/tensor/tensor.js';

/** The published configs (config.json) of the three models, as the architectures need them. */
export const SHAPES: Record<string, Record<string, unknown>> = {
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

// Random values: one random bf16 block on the GPU, copied over every weight (speed does not depend on
// the values; generating 8 B random numbers on the host would dominate the run).
let block: Tensor | null = null;
export function randomBf16(shape: number[]): Tensor {
  if (!block) {
    const n = 1 << 22;
    const v = new Float32Array(n);
    let s = 12345;
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      v[i] = ((s / 4294967296) * 2 - 1) * 0.03;
    }
    block = keep(Tensor.from(v, [n], 'bf16', 'cuda'));
  }
  const t = keep(Tensor.empty(shape, 'bf16', 'cuda'));
  for (let i = 0; i < t.size; i += block.size)
    Tensor.copyElements(t, i, block, 0, Math.min(block.size, t.size - i));
  return t;
}

function ones(n: number): Tensor {
  return keep(Tensor.from(new Float32Array(n).fill(1), [n], 'bf16', 'cuda'));
}

/** NF4 + double-quant weights: one quantized random matrix per distinct shape, copied per layer. */
const quantCache = new Map<string, QuantizedWeight>();
function randomNf4(out: number, inp: number): QuantizedWeight {
  const key = `${out}x${inp}`;
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
    q.data.toDevice('cuda'),
    null,
    {
      ...n,
      qabsmax: n.qabsmax.toDevice('cuda'),
      absmax2: n.absmax2.toDevice('cuda'),
      code: n.code.toDevice('cuda'),
    },
    q.blocksize,
  );
}

export function randomModel(c: ModelConfig, quantized: boolean): CausalLM {
  const embed = randomBf16([c.vocabSize, c.hiddenSize]);
  const lin = (path: string, out: number, inp: number, bias: boolean): Linear =>
    new Linear(
      path,
      quantized ? randomNf4(out, inp) : randomBf16([out, inp]),
      bias ? randomBf16([out]) : null,
    );
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const layers = Array.from({ length: c.numLayers }, (_, i) => {
    const p = `model.layers.${i}`;
    return new DecoderLayer(
      i,
      ones(c.hiddenSize),
      ones(c.hiddenSize),
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
    : new Linear('lm_head', randomBf16([c.vocabSize, c.hiddenSize]));
  return new CausalLM(c, embed, layers, ones(c.hiddenSize), head);
}

/** Frees the random source block and the quantized templates (once the models are built). */
export function freeRandomSources(): void {
  block?.dispose();
  block = null;
  for (const q of quantCache.values()) q.dispose();
  quantCache.clear();
}
