// lorakit merge: an adapter merged into its base model, written as a Hugging Face folder.
import { existsSync } from 'node:fs';
import { exportHF, hfDType } from '../export/hf.js';
import { formatBytes } from './progress.js';
import { parseFlags, UsageError, type Specs } from './args.js';
import { checkNewFolder } from './outputs.js';
import { MODEL_FLAGS, openModel } from './run.js';

export const SYNOPSIS = '--model M --adapter DIR --out DIR [--dtype float32|bfloat16|float16]';
export const HELP = 'merge an adapter into the base model (Hugging Face folder)';

export const FLAGS = {
  model: MODEL_FLAGS.model,
  adapter: { type: 'string', help: 'PEFT adapter folder to merge' },
  out: { type: 'string', help: 'new folder for the merged model' },
  dtype: {
    type: 'string',
    help: "weights' storage type (default: the base model's; 16-bit for a quantized base)",
    choices: ['float32', 'bfloat16', 'float16'],
  },
  // Runs on the CPU: --device cpu is accepted, --device cuda refused with a sentence (openModel).
  device: { ...MODEL_FLAGS.device, hidden: true },
  quantize: {
    ...MODEL_FLAGS.quantize,
    help: 'load the base quantized, as the adapter was trained (QLoRA); the merge is written dequantized',
  },
  'double-quant': MODEL_FLAGS['double-quant'],
} as const satisfies Specs;

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, FLAGS, 'merge');
  if (!f.model) throw new UsageError('lorakit merge: --model is required.');
  if (!f.adapter) throw new UsageError('lorakit merge: --adapter is required.');
  if (!f.out) throw new UsageError('lorakit merge: --out is required.');
  checkNewFolder('merge', '--out', f.out);
  if (!existsSync(f.adapter)) throw new UsageError(`lorakit merge: --adapter ${f.adapter} does not exist.`);
  const dtype = hfDType(f.dtype);
  const { model, tokenizer, path } = await openModel('merge', {
    ...f,
    dtype: dtype === 'bfloat16' ? 'bfloat16' : 'float32',
  });
  try {
    const r = await exportHF(model, tokenizer, path, f.out, { adapter: 'default', dtype });
    for (const w of r.warnings) process.stderr.write(`lorakit: warning: ${w}\n`);
    process.stdout.write(
      `merged ${f.adapter} into ${f.model}: ${r.dir} (${r.dtype}, ${r.files.length} files, ${formatBytes(r.bytes)})\n`,
    );
    return 0;
  } finally {
    model.dispose();
  }
}
