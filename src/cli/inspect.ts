import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readGGUF } from '../io/gguf.js';
import { oneLine, quote } from '../io/quote.js';
import { openSafetensors, openSafetensorsModel, type TensorSource } from '../io/safetensors.js';
import { readModelConfig } from '../models/load.js';
import { readPeftConfig } from '../peft/config.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS } from '../peft/adapters.js';
import { parseFlags, UsageError, type Specs } from './args.js';
import { formatBytes } from './progress.js';

export const SYNOPSIS = 'PATH [--json]';
export const HELP = 'describe a model, adapter, GGUF file or checkpoint';

export const FLAGS = {
  json: { type: 'bool', help: 'print one JSON object' },
} as const satisfies Specs;

/** A JSON object from a file (`where` names it), or one clear sentence. */
function parseObject(text: string, where: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(
      `lorakit: ${where}: not valid JSON (${oneLine(e instanceof Error ? e.message : String(e))}).`,
    );
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new Error(`lorakit: ${where}: expected a JSON object.`);
  return v as Record<string, unknown>;
}

interface Summary {
  kind: string;
  path: string;
  [key: string]: unknown;
}

function tensorSummary(src: TensorSource): {
  tensors: number;
  parameters: number;
  bytes: number;
  dtypes: Record<string, number>;
  shapes: Record<string, number[]>;
} {
  let parameters = 0;
  let bytes = 0;
  const dtypes: Record<string, number> = {};
  const shapes: Record<string, number[]> = {};
  for (const [name, info] of src.tensors) {
    const n = info.shape.reduce((a, b) => a * b, 1);
    parameters += n;
    bytes += info.byteLength;
    dtypes[info.dtype] = (dtypes[info.dtype] ?? 0) + n;
    shapes[name] = [...info.shape];
  }
  return { tensors: src.tensors.size, parameters, bytes, dtypes, shapes };
}

/**
 * The bytes a model's weights take once loaded: as stored, with bitsandbytes 4-bit weights counted at
 * their packed size (codes, absmax constants and the double-quantization offset; the shared code
 * tables not counted), and the bits per quantized parameter.
 */
function baseWeights(
  src: TensorSource,
  where: string,
): {
  bytes: number;
  quantizedParameters: number;
  quantizedBytes: number;
  bitsPerQuantizedParameter: number | null;
} {
  let bytes = 0;
  let quantizedParameters = 0;
  let quantizedBytes = 0;
  const size = (name: string): number => src.tensors.get(name)?.byteLength ?? 0;
  for (const [name, info] of src.tensors) {
    const m = /^(.*)\.quant_state\.bitsandbytes__(nf4|fp4)$/.exec(name);
    if (m) {
      const t = src.read(name, 'native');
      try {
        const state = parseObject(new TextDecoder().decode(t.as('u8')), `${where}: tensor ${quote(name)}`);
        const shape = Array.isArray(state.shape) ? state.shape.filter((d) => typeof d === 'number') : [];
        quantizedParameters += shape.reduce((a: number, b: number) => a * b, 1);
      } finally {
        t.dispose();
      }
      const w = m[1];
      const q =
        size(w) +
        size(`${w}.absmax`) +
        size(`${w}.nested_absmax`) +
        (src.tensors.has(`${w}.nested_absmax`) ? 4 : 0);
      quantizedBytes += q;
      continue;
    }
    if (/\.(absmax|nested_absmax|quant_map|nested_quant_map)$/.test(name)) continue;
    if (
      src.tensors.has(`${name}.quant_state.bitsandbytes__nf4`) ||
      src.tensors.has(`${name}.quant_state.bitsandbytes__fp4`)
    )
      continue;
    bytes += info.byteLength;
  }
  bytes += quantizedBytes;
  return {
    bytes,
    quantizedParameters,
    quantizedBytes,
    bitsPerQuantizedParameter: quantizedParameters ? (quantizedBytes * 8) / quantizedParameters : null,
  };
}

async function summarize(path: string): Promise<Summary> {
  if (!existsSync(path)) throw new UsageError(`lorakit inspect: ${path} does not exist.`);
  if (statSync(path).isFile()) {
    if (path.endsWith('.gguf')) {
      const f = await readGGUF(path);
      const metadata = Object.fromEntries(
        Object.entries(f.metadata).map(([k, v]) => [
          k,
          Array.isArray(v)
            ? `[${v.length} values]`
            : typeof v === 'bigint'
              ? v.toString()
              : k === 'tokenizer.chat_template'
                ? '<present>'
                : v,
        ]),
      );
      const types: Record<string, number> = {};
      let parameters = 0;
      let bytes = 0;
      const shapes: Record<string, number[]> = {};
      for (const t of f.tensors.values()) {
        types[t.typeName] = (types[t.typeName] ?? 0) + t.numel;
        parameters += t.numel;
        bytes += t.byteLength ?? 0;
        shapes[t.name] = t.shape;
      }
      return {
        kind: 'gguf',
        path,
        version: f.version,
        metadata,
        tensors: f.tensors.size,
        parameters,
        bytes,
        types,
        shapes,
      };
    }
    if (path.endsWith('.safetensors')) {
      const f = openSafetensors(path);
      try {
        return { kind: 'safetensors', path, metadata: f.metadata, ...tensorSummary(f) };
      } finally {
        f.close();
      }
    }
    throw new UsageError(`lorakit inspect: ${path}: not a folder, .gguf or .safetensors file.`);
  }
  if (existsSync(join(path, 'trainer_state.json'))) {
    const state = parseObject(
      readFileSync(join(path, 'trainer_state.json'), 'utf8'),
      join(path, 'trainer_state.json'),
    );
    const adapter = await summarize(join(path, 'adapter'));
    return {
      kind: 'checkpoint',
      path,
      step: state.step,
      epoch: state.epoch,
      options: state.options,
      adapter,
    };
  }
  if (existsSync(join(path, ADAPTER_CONFIG))) {
    const config = readPeftConfig(join(path, ADAPTER_CONFIG));
    const f = openSafetensors(join(path, ADAPTER_WEIGHTS));
    try {
      return { kind: 'adapter', path, config, ...tensorSummary(f) };
    } finally {
      f.close();
    }
  }
  if (existsSync(join(path, 'config.json'))) {
    const config = readModelConfig(join(path, 'config.json'));
    const src = openSafetensorsModel(path);
    try {
      const { raw, ...shape } = config;
      const quantization = raw.quantization_config ?? null;
      return {
        kind: 'model',
        path,
        config: shape,
        quantization,
        baseWeights: baseWeights(src, path),
        ...tensorSummary(src),
      };
    } finally {
      src.close();
    }
  }
  throw new UsageError(`lorakit inspect: ${path}: not a model, adapter or checkpoint folder.`);
}

function print(s: Summary, indent = ''): void {
  const { shapes, ...rest } = s as Summary & { shapes?: Record<string, number[]> };
  for (const [k, v] of Object.entries(rest)) {
    if (k === 'bytes' && typeof v === 'number')
      process.stdout.write(`${indent}${k}: ${v} (${formatBytes(v)})\n`);
    else if (v && typeof v === 'object' && !Array.isArray(v) && 'kind' in v) {
      process.stdout.write(`${indent}${k}:\n`);
      print(v as Summary, `${indent}  `);
    } else process.stdout.write(`${indent}${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}\n`);
  }
  if (shapes) {
    process.stdout.write(`${indent}shapes:\n`);
    for (const [name, shape] of Object.entries(shapes))
      process.stdout.write(`${indent}  ${name} [${shape.join(', ')}]\n`);
  }
}

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, FLAGS, 'inspect', { positionals: true });
  if (f._.length !== 1) throw new UsageError('lorakit inspect: give exactly one PATH.');
  const s = await summarize(f._[0]);
  if (f.json) process.stdout.write(`${JSON.stringify(s)}\n`);
  else print(s);
  return 0;
}
