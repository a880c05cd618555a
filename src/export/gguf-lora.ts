// An adapter alone as a GGUF LoRA file that llama.cpp applies on top of the base model's GGUF, laid out
// as llama.cpp's convert_lora_to_gguf.py writes it: general.type = adapter, adapter.type = lora,
// adapter.lora.alpha, and per target `<gguf weight name>.lora_a` (A [r, in]) and `.lora_b` (B [out, r]),
// with B's rows permuted for llama's q/k like the base weights.
//
// llama.cpp scales B·A·x by alpha / r (r read from each lora_b). Writing alpha = s·r for the adapter's
// real scale s (alpha/r, or alpha/√r for rsLoRA) makes that product exactly s, so rsLoRA needs no
// change to the tensors. DoRA's magnitude rescaling has no GGUF form and is refused.
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import type { CausalLM } from '../models/llama.js';
import { loraScale } from '../peft/config.js';
import { LoraLinear } from '../peft/lora.js';
import { MergedLora } from '../peft/merge.js';
import type { GGUFKV } from '../io/gguf-kv.js';
import { writeGGUF, type GGMLOut, type GGUFTensorSpec } from './gguf-writer.js';
import { ggufArch, ggufTensorName, permuteRows, type ExportReport } from './gguf.js';
import { encodeF16, quantizeQ8_0 } from './quantize.js';
import { writeFileAtomically } from './streaming.js';

export type GGUFLoraQuant = 'f32' | 'f16' | 'q8_0';

export interface GGUFLoraOptions {
  /** Tensor encoding (default f32, as convert_lora_to_gguf.py); Q8_0 only where rows fill whole blocks. */
  quant?: GGUFLoraQuant;
  /** general.name (default: the adapter's name). */
  name?: string;
}

/** Writes adapter `name` of the model as a GGUF LoRA adapter file at `out`. */
export function exportGGUFLora(
  model: CausalLM,
  name: string,
  out: string,
  opts: GGUFLoraOptions = {},
): ExportReport {
  const config = model.adapterConfigs.get(name);
  if (!config)
    throw new Error(
      `lorakit: no adapter named '${name}' (have: ${[...model.adapterConfigs.keys()].join(', ') || 'none'}).`,
    );
  if (config.useDora)
    throw new Error(
      'lorakit: a DoRA adapter cannot be written as a GGUF LoRA (llama.cpp has no magnitude vector); export the merged model instead (--format gguf --adapter DIR).',
    );
  const quant = opts.quant ?? 'f32';
  if (quant !== 'f32' && quant !== 'f16' && quant !== 'q8_0')
    throw new Error(`lorakit: a GGUF LoRA is written as f32, f16 or q8_0, not '${String(quant)}'.`);
  const arch = ggufArch(model);
  const s = loraScale(config);
  const tiedHead = model.lmHead.weight === model.embedTokens;
  const specs: GGUFTensorSpec[] = [];
  const producers: (() => Float32Array)[] = [];
  const type = (rowLen: number): GGMLOut =>
    quant === 'f32' ? 'F32' : quant === 'q8_0' && rowLen % 32 === 0 ? 'Q8_0' : 'F16';
  for (const l of model.linears()) {
    const a = l.adapters.get(name);
    if (!a) continue;
    const lora = a instanceof MergedLora ? a.lora : a;
    if (!(lora instanceof LoraLinear))
      throw new Error(`lorakit: the adapter '${name}' of ${l.path} is not a LoRA adapter.`);
    if (l === model.lmHead && tiedHead)
      throw new Error(
        'lorakit: the adapter targets lm_head, which this model ties to its embeddings; llama.cpp cannot apply it as a GGUF LoRA (export the merged model instead).',
      );
    const base = ggufTensorName(`${l.path}.weight`);
    const r = lora.config.r;
    specs.push({ name: `${base}.lora_a`, shape: [r, l.inFeatures], type: type(l.inFeatures) });
    producers.push(() => lora.A.as('f32').slice());
    specs.push({ name: `${base}.lora_b`, shape: [l.outFeatures, r], type: type(r) });
    const qk = arch === 'llama' && (l.name === 'q_proj' || l.name === 'k_proj');
    const heads = l.name === 'q_proj' ? model.config.numHeads : model.config.numKvHeads;
    producers.push(() => (qk ? permuteRows(lora.B.as('f32'), heads, r) : lora.B.as('f32').slice()));
  }
  if (specs.length === 0) throw new Error(`lorakit: adapter '${name}' targets no layer of this model.`);
  const kvs: GGUFKV[] = [
    { key: 'general.architecture', type: 'string', value: arch },
    { key: 'general.type', type: 'string', value: 'adapter' },
    {
      key: 'general.name',
      type: 'string',
      value: opts.name ?? (config.baseModel ? `${basename(config.baseModel)}-${name}` : name),
    },
    { key: 'adapter.type', type: 'string', value: 'lora' },
    { key: 'adapter.lora.alpha', type: 'f32', value: s * config.r },
    { key: 'general.file_type', type: 'u32', value: quant === 'f32' ? 0 : quant === 'f16' ? 1 : 7 },
    { key: 'general.quantization_version', type: 'u32', value: 2 },
  ];
  writeFileAtomically(out, (f) =>
    writeGGUF(f, kvs, specs, (i) => {
      const v = producers[i]();
      const t = specs[i].type;
      return t === 'F32'
        ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
        : t === 'F16'
          ? encodeF16(v)
          : quantizeQ8_0(v);
    }),
  );
  return { path: out, bytes: statSync(out).size, tensors: specs.length, warnings: [] };
}
