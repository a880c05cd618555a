import { loadModel } from '../models/load.js';
import { loadAdapter } from '../peft/adapters.js';
import type { LoadedModel } from '../models/load.js';
import type { Specs } from './args.js';

/** Flags shared by commands that run a model. */
export const MODEL_FLAGS = {
  model: { type: 'string', help: 'model folder, .gguf file or hub id' },
  adapter: { type: 'string', help: 'PEFT adapter folder to apply' },
  dtype: { type: 'string', help: 'base weight storage', choices: ['float32', 'bfloat16'] },
  device: { type: 'string', help: 'compute device', choices: ['cpu', 'cuda'] },
  quantize: { type: 'string', help: 'quantize the base weights', choices: ['nf4', 'fp4', 'int8'] },
  'double-quant': { type: 'bool', help: 'quantize the quantization constants too' },
} as const satisfies Specs;

export async function openModel(
  command: string,
  f: { model?: string; adapter?: string; dtype?: string; device?: string; quantize?: string; 'double-quant'?: boolean },
): Promise<LoadedModel> {
  const { UsageError } = await import('./args.js');
  if (!f.model) throw new UsageError(`lorakit ${command}: --model is required.`);
  if (f.quantize || f['double-quant']) throw new UsageError(`lorakit ${command}: --quantize is not available in this version yet.`);
  if (f.device === 'cuda') throw new UsageError(`lorakit ${command}: --device cuda is not available in this build; use --device cpu.`);
  const loaded = await loadModel(f.model, { dtype: f.dtype === 'bfloat16' ? 'bfloat16' : 'float32' });
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
