import { loadModel, loadModelOptionalTokenizer } from '../models/load.js';
import { loadAdapter } from '../peft/adapters.js';
import type { LoadedModel, LoadOptions } from '../models/load.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { UsageError, type Specs } from './args.js';
import type { CausalLM } from '../models/llama.js';
import { baseWeightBytes, QuantizedWeight } from '../quant/weight.js';
import { formatBytes } from './progress.js';
import type { Device } from '../tensor/tensor.js';

/** Flags shared by commands that run a model. */
export const MODEL_FLAGS = {
  model: { type: 'string', help: 'model folder, .gguf file or hub id' },
  adapter: { type: 'string', help: 'PEFT adapter folder to apply' },
  dtype: {
    type: 'string',
    help: 'CPU: base weight storage (float32); cuda: weights and activations (bfloat16)',
    choices: ['float32', 'bfloat16'],
  },
  device: { type: 'string', help: 'compute device', choices: ['cpu', 'cuda', 'webgpu'] },
  quantize: { type: 'string', help: 'quantize the base weights', choices: ['nf4', 'fp4', 'int8'] },
  'double-quant': { type: 'bool', help: 'quantize the quantization constants too' },
} as const satisfies Specs;

/**
 * The commands each device runs beside the CPU. Serving batches per-row adapters and merge/export
 * rewrite weights on the host; generation reads every token back, which WebGPU only does
 * asynchronously (its decode loop is not written yet), so WebGPU trains and evaluates.
 */
const DEVICE_COMMANDS: Record<Exclude<Device, 'cpu'>, readonly string[]> = {
  cuda: ['train', 'eval', 'generate', 'chat', 'serve'],
  webgpu: ['train', 'eval'],
};

/** The device of --device for a command (cpu when not given); a device the command cannot use is a usage error. */
export function deviceFor(command: string, flag: string | undefined): Device {
  if (flag === undefined || flag === 'cpu') return 'cpu';
  if (flag !== 'cuda' && flag !== 'webgpu')
    throw new UsageError(`lorakit ${command}: --device must be cpu, cuda or webgpu, got '${flag}'.`);
  if (!DEVICE_COMMANDS[flag].includes(command))
    throw new UsageError(
      `lorakit ${command}: --device ${flag} is not supported by this command; use --device cpu.`,
    );
  return flag;
}

interface ModelFlagValues {
  model?: string;
  adapter?: string;
  dtype?: string;
  device?: string;
  quantize?: string;
  'double-quant'?: boolean;
}

/** Loads --model (and --adapter) for a command; a model folder must have a tokenizer. */
export async function openModel(command: string, f: ModelFlagValues): Promise<LoadedModel> {
  const loaded = await openFor(command, f, 'required');
  // 'required' has already refused a folder without a tokenizer.
  return { ...loaded, tokenizer: loaded.tokenizer! };
}

/** openModel for commands that work on pre-tokenized rows too (eval): the tokenizer may be null. */
export async function openModelOptionalTokenizer(
  command: string,
  f: ModelFlagValues,
): Promise<LoadedModel<Tokenizer | null>> {
  return openFor(command, f, 'optional');
}

async function openFor(
  command: string,
  f: ModelFlagValues,
  tokenizer: 'required' | 'optional',
): Promise<LoadedModel<Tokenizer | null>> {
  if (!f.model) throw new UsageError(`lorakit ${command}: --model is required.`);
  if (f['double-quant'] && f.quantize !== 'nf4' && f.quantize !== 'fp4')
    throw new UsageError(`lorakit ${command}: --double-quant needs --quantize nf4 or fp4.`);
  const opts: LoadOptions = {
    device: deviceFor(command, f.device),
    dtype: f.dtype === 'bfloat16' || f.dtype === 'float32' ? f.dtype : undefined,
    quantize: f.quantize === 'nf4' || f.quantize === 'fp4' || f.quantize === 'int8' ? f.quantize : undefined,
    doubleQuant: f['double-quant'] === true,
  };
  const loaded =
    tokenizer === 'optional'
      ? await loadModelOptionalTokenizer(f.model, opts)
      : await loadModel(f.model, opts);
  const q = describeBaseWeights(loaded.model);
  if (q.includes('quantized')) process.stderr.write(`lorakit: ${q}\n`);
  if (f.adapter) {
    try {
      loadAdapter(loaded.model, f.adapter, 'default');
    } catch (e) {
      loaded.model.dispose();
      throw e;
    }
  }
  return loaded;
}

/** One line on the memory the base weights take, e.g. "base weights 71.2 MiB (nf4+dq: 4.13 bits per quantized parameter)". */
export function describeBaseWeights(model: CausalLM): string {
  const { bytes, quantizedParams, quantizedBytes } = baseWeightBytes(model);
  if (quantizedParams === 0) return `base weights ${formatBytes(bytes)}`;
  const kinds = new Set<string>();
  for (const l of model.linears())
    if (l.weight instanceof QuantizedWeight) kinds.add(`${l.weight.type}${l.weight.nested ? '+dq' : ''}`);
  const bits = ((quantizedBytes * 8) / quantizedParams).toFixed(3);
  return `base weights ${formatBytes(bytes)} (${bytes} bytes); ${quantizedParams.toLocaleString('en-US')} parameters quantized (${[...kinds].join(', ')}): ${formatBytes(quantizedBytes)}, ${bits} bits each`;
}
