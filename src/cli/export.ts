// lorakit export: a model (with an adapter merged in) as a Hugging Face folder or a GGUF file, or an
// adapter alone as a GGUF LoRA for llama.cpp.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { exportGGUF, ggufQuant } from '../export/gguf.js';
import { exportGGUFLora } from '../export/gguf-lora.js';
import { exportHF, hfDType } from '../export/hf.js';
import { formatBytes } from './progress.js';
import { parseFlags, UsageError, type Specs } from './args.js';
import { checkNewFolder, checkOutFile } from './outputs.js';
import { MODEL_FLAGS, openModel } from './run.js';

export const SYNOPSIS =
  '--model M [--adapter DIR] --format safetensors|gguf|gguf-lora --out PATH [--quant f16|q8_0|q4_0] [--dtype ...]';
export const HELP = 'export to a Hugging Face folder, GGUF, or a GGUF LoRA adapter';

export const FLAGS = {
  model: MODEL_FLAGS.model,
  adapter: { type: 'string', help: 'PEFT adapter folder (merged in; for gguf-lora, the adapter written)' },
  format: { type: 'string', help: 'what to write', choices: ['safetensors', 'gguf', 'gguf-lora'] },
  out: { type: 'string', help: 'folder (safetensors) or file (gguf, gguf-lora) to write' },
  quant: {
    type: 'string',
    help: 'GGUF weight type (gguf: f16; gguf-lora: f32)',
    choices: ['f32', 'f16', 'q8_0', 'q4_0'],
  },
  dtype: {
    type: 'string',
    help: "safetensors weights' type (default: the base model's)",
    choices: ['float32', 'bfloat16', 'float16'],
  },
  name: { type: 'string', help: 'general.name written into a GGUF file' },
  // Runs on the CPU: --device cpu is accepted, --device cuda refused with a sentence (openModel).
  device: { ...MODEL_FLAGS.device, hidden: true },
  quantize: {
    ...MODEL_FLAGS.quantize,
    help: 'load the base quantized, as a QLoRA adapter was trained; written dequantized',
  },
  'double-quant': MODEL_FLAGS['double-quant'],
} as const satisfies Specs;

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, FLAGS, 'export');
  if (!f.model) throw new UsageError('lorakit export: --model is required.');
  if (!f.format)
    throw new UsageError('lorakit export: --format is required (safetensors, gguf or gguf-lora).');
  if (!f.out) throw new UsageError('lorakit export: --out is required.');
  const format = f.format;
  if (format === 'safetensors' && f.quant)
    throw new UsageError(
      'lorakit export: --quant applies to gguf and gguf-lora; use --dtype for safetensors.',
    );
  if (format !== 'safetensors' && f.dtype)
    throw new UsageError(`lorakit export: --dtype applies to safetensors; use --quant for ${format}.`);
  if (format === 'gguf-lora' && !f.adapter)
    throw new UsageError('lorakit export: --format gguf-lora needs --adapter DIR.');
  if (format === 'gguf-lora' && f.quant === 'q4_0')
    throw new UsageError('lorakit export: a GGUF LoRA is written as f32, f16 or q8_0, not q4_0.');
  if (format === 'safetensors') checkNewFolder('export', '--out', f.out);
  else {
    checkOutFile('export', '--out', f.out, '.gguf file');
    mkdirSync(dirname(f.out), { recursive: true });
  }
  if (f.adapter !== undefined && !existsSync(f.adapter))
    throw new UsageError(`lorakit export: --adapter ${f.adapter} does not exist.`);
  const dtype = hfDType(f.dtype);
  const { model, tokenizer, path } = await openModel('export', {
    ...f,
    dtype: dtype === 'bfloat16' ? 'bfloat16' : 'float32',
  });
  try {
    const adapter = f.adapter ? 'default' : null;
    let summary: string;
    let warnings: string[];
    if (format === 'safetensors') {
      const r = await exportHF(model, tokenizer, path, f.out, { adapter, dtype });
      summary = `${r.dir} (${r.dtype}, ${r.files.length} files, ${formatBytes(r.bytes)})`;
      warnings = r.warnings;
    } else if (format === 'gguf') {
      const r = await exportGGUF(model, tokenizer, path, f.out, {
        adapter,
        quant: ggufQuant(f.quant) ?? 'f16',
        name: f.name,
      });
      summary = `${r.path} (GGUF ${f.quant ?? 'f16'}, ${r.tensors} tensors, ${formatBytes(r.bytes)})`;
      warnings = r.warnings;
    } else {
      const quant = f.quant === 'f16' || f.quant === 'q8_0' ? f.quant : 'f32';
      const r = exportGGUFLora(model, 'default', f.out, { quant, name: f.name });
      summary = `${r.path} (GGUF LoRA ${quant}, ${r.tensors} tensors, ${formatBytes(r.bytes)})`;
      warnings = r.warnings;
    }
    for (const w of warnings) process.stderr.write(`lorakit: warning: ${w}\n`);
    process.stdout.write(`exported ${f.model}${f.adapter ? ` + ${f.adapter}` : ''}: ${summary}\n`);
    return 0;
  } finally {
    model.dispose();
  }
}
