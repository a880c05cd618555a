// bitsandbytes checkpoints: reading pre-quantized 4-bit (and int8) weights as transformers saves them,
// and saving a quantized model the same way so transformers + bitsandbytes load it.
//
// 4-bit keys for a weight `W` (transformers save_pretrained of a Linear4bit):
//   W                                   U8 [ceil(n/2), 1]  packed codes
//   W.absmax                            F32 [blocks], or U8 [blocks] with double quantization
//   W.quant_map                         F32 [16]           the code (NF4 or FP4 table)
//   W.nested_absmax                     F32 [ceil(blocks/256)]   (double quantization)
//   W.nested_quant_map                  F32 [256]                (double quantization)
//   W.quant_state.bitsandbytes__nf4     U8 JSON: quant_type, blocksize, dtype, shape, nested_* fields
// int8 (Linear8bitLt): W I8 [out, in] and the sibling `SCB` F32 [out] (per-row absmax).
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors } from '../io/safetensors.js';
import { Tensor } from '../tensor/tensor.js';
import { code4, DYNAMIC_MAP, type Quant4Type } from './codes.js';
import { BLOCKSIZES, QuantizedWeight, sharedDynamicCode, type NestedAbsmax } from './weight.js';

/** What reading needs from a weight file: tensor names and their values (u8/i32/f32 as stored). */
export interface RawWeights {
  has(name: string): boolean;
  read(name: string, dtype: 'f32' | 'bf16'): Tensor;
}

interface QuantStateJson {
  quant_type?: unknown;
  blocksize?: unknown;
  dtype?: unknown;
  shape?: unknown;
  nested_blocksize?: unknown;
  nested_offset?: unknown;
}

/** The bitsandbytes quant-state key of a 4-bit weight, if the source holds one. */
export function bnbStateKey(src: RawWeights, name: string): string | null {
  for (const t of ['nf4', 'fp4'])
    if (src.has(`${name}.quant_state.bitsandbytes__${t}`)) return `${name}.quant_state.bitsandbytes__${t}`;
  return null;
}

/** Whether `name` is stored pre-quantized by bitsandbytes (4-bit or int8). */
export function isPrequantized(src: RawWeights, name: string): boolean {
  return bnbStateKey(src, name) !== null || src.has(name.replace(/weight$/, 'SCB'));
}

function readAs(src: RawWeights, name: string, what: string, dtype: 'u8' | 'f32' | 'i32'): Tensor {
  if (!src.has(name))
    throw new Error(`lorakit: the checkpoint has no '${name}', which the bitsandbytes ${what} needs.`);
  const t = src.read(name, 'f32');
  if (t.dtype !== dtype) {
    t.dispose();
    throw new Error(
      `lorakit: '${name}' should be ${dtype === 'u8' ? 'U8' : dtype === 'i32' ? 'I8' : 'F32'} in a bitsandbytes checkpoint, found ${t.dtype}.`,
    );
  }
  return t;
}

/**
 * Reads a pre-quantized weight `name` (…​.weight) and checks it is [rows, cols]; null when the weight
 * is stored dense. Throws a clear error for quant states lorakit cannot use.
 */
export function readPrequantized(
  src: RawWeights,
  name: string,
  rows: number,
  cols: number,
): QuantizedWeight | null {
  const key = bnbStateKey(src, name);
  if (key === null) {
    const scb = name.replace(/weight$/, 'SCB');
    if (!src.has(scb)) return null;
    return readInt8(src, name, scb, rows, cols);
  }
  const type = key.endsWith('nf4') ? 'nf4' : 'fp4';
  const stateT = readAs(src, key, 'quant state', 'u8');
  let state: QuantStateJson;
  try {
    state = JSON.parse(new TextDecoder().decode(stateT.as('u8'))) as QuantStateJson;
  } catch {
    throw new Error(`lorakit: '${key}' is not valid JSON.`);
  } finally {
    stateT.dispose();
  }
  const blocksize = Number(state.blocksize);
  if (state.quant_type !== type)
    throw new Error(`lorakit: '${key}' says quant_type ${String(state.quant_type)}.`);
  if (!BLOCKSIZES.includes(blocksize))
    throw new Error(`lorakit: '${key}': block size ${String(state.blocksize)} is not supported.`);
  const shape = Array.isArray(state.shape) ? state.shape.map(Number) : [];
  if (shape.length !== 2 || shape[0] !== rows || shape[1] !== cols)
    throw new Error(
      `lorakit: '${name}' is quantized with shape [${shape.join(', ')}], config.json implies [${rows}, ${cols}].`,
    );
  const n = rows * cols;
  const blocks = Math.ceil(n / blocksize);
  const owned: Tensor[] = [];
  const take = (t: Tensor): Tensor => (owned.push(t), t);
  try {
    const packed = take(readAs(src, name, 'weight', 'u8'));
    if (packed.size !== Math.ceil(n / 2))
      throw new Error(
        `lorakit: '${name}' holds ${packed.size} bytes, a [${rows}, ${cols}] 4-bit weight needs ${Math.ceil(n / 2)}.`,
      );
    const data = packed.reshape([packed.size]);
    owned.push(data);
    const map = take(readAs(src, `${name}.quant_map`, 'quant map', 'f32'));
    const want = code4(type);
    if (map.size !== 16 || map.as('f32').some((v, i) => v !== want[i]))
      throw new Error(
        `lorakit: '${name}.quant_map' is not bitsandbytes' ${type} code; custom 4-bit codes are not supported.`,
      );
    let absmax: Tensor | null = null;
    let nested: NestedAbsmax | null = null;
    if (src.has(`${name}.nested_absmax`)) {
      const nb = Number(state.nested_blocksize ?? 256);
      const offset = Math.fround(Number(state.nested_offset));
      if (!Number.isFinite(offset) || !Number.isInteger(nb) || nb <= 0)
        throw new Error(`lorakit: '${key}' lacks a valid nested_offset/nested_blocksize.`);
      const qabsmax = take(readAs(src, `${name}.absmax`, 'absmax', 'u8'));
      const absmax2 = take(readAs(src, `${name}.nested_absmax`, 'nested absmax', 'f32'));
      const code = take(readAs(src, `${name}.nested_quant_map`, 'nested quant map', 'f32'));
      if (qabsmax.size !== blocks || absmax2.size !== Math.ceil(blocks / nb) || code.size !== 256)
        throw new Error(
          `lorakit: '${name}': nested absmax sizes do not match ${blocks} blocks of ${blocksize}.`,
        );
      // The standard dynamic map is held once for all weights.
      const standard = code.as('f32').every((v, i) => Object.is(v, DYNAMIC_MAP[i]));
      nested = {
        qabsmax: qabsmax.reshape([blocks]),
        absmax2: absmax2.reshape([absmax2.size]),
        code: standard ? sharedDynamicCode() : code.reshape([256]),
        offset,
        blocksize: nb,
      };
      owned.push(nested.qabsmax, nested.absmax2);
      if (!standard) owned.push(nested.code);
    } else {
      const a = take(readAs(src, `${name}.absmax`, 'absmax', 'f32'));
      if (a.size !== blocks)
        throw new Error(`lorakit: '${name}.absmax' has ${a.size} values, ${blocks} blocks need as many.`);
      absmax = a.reshape([blocks]);
      owned.push(absmax);
    }
    const qw = new QuantizedWeight(
      type,
      [rows, cols],
      data,
      absmax,
      nested,
      blocksize,
      typeof state.dtype === 'string' ? state.dtype : 'float32',
    );
    // The views hold the storage; the tensors read from the file can go.
    const kept = new Set<Tensor>(
      [data, absmax, nested?.qabsmax, nested?.absmax2, nested?.code].filter((t): t is Tensor => !!t),
    );
    for (const t of owned) if (!kept.has(t)) t.dispose();
    return qw;
  } catch (e) {
    for (const t of owned) t.dispose();
    throw e;
  }
}

function readInt8(
  src: RawWeights,
  name: string,
  scbName: string,
  rows: number,
  cols: number,
): QuantizedWeight {
  const w = readAs(src, name, 'int8 weight', 'i32');
  const scb = readAs(src, scbName, 'int8 scales', 'f32');
  try {
    if (w.shape.length !== 2 || w.shape[0] !== rows || w.shape[1] !== cols || scb.size !== rows)
      throw new Error(
        `lorakit: '${name}' (int8) has shape [${w.shape.join(', ')}], config.json implies [${rows}, ${cols}].`,
      );
    const bytes = Tensor.from(new Uint8Array(Int8Array.from(w.as('i32')).buffer), [rows * cols], 'u8');
    const absmax = Tensor.from(scb.as('f32'), [rows]);
    return new QuantizedWeight('int8', [rows, cols], bytes, absmax, null, 64, 'float32');
  } finally {
    w.dispose();
    scb.dispose();
  }
}

/** Python's json.dumps layout (", " and ": "), which bitsandbytes writes. */
function pyJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(pyJson).join(', ')}]`;
  if (v !== null && typeof v === 'object')
    return `{${Object.entries(v)
      .map(([k, x]) => `${JSON.stringify(k)}: ${pyJson(x)}`)
      .join(', ')}}`;
  return JSON.stringify(v);
}

/** The tensors bitsandbytes saves for a 4-bit weight called `name`. New tensors (views) the caller disposes. */
export function bnbTensors(qw: QuantizedWeight, name: string): Record<string, Tensor> {
  if (qw.type === 'int8')
    throw new Error('lorakit: saving int8 weights in bitsandbytes format is not supported; save nf4 or fp4.');
  const type = qw.type as Quant4Type;
  const state: Record<string, unknown> = {
    quant_type: type,
    blocksize: qw.blocksize,
    dtype: qw.sourceDtype,
    shape: [...qw.shape],
  };
  const out: Record<string, Tensor> = {
    [name]: qw.data.reshape([qw.data.size, 1]),
    [`${name}.quant_map`]: Tensor.from(code4(type), [16]),
  };
  if (qw.nested) {
    state.nested_blocksize = qw.nested.blocksize;
    state.nested_dtype = 'float32';
    state.nested_offset = qw.nested.offset;
    out[`${name}.absmax`] = qw.nested.qabsmax.reshape([qw.nested.qabsmax.size]);
    out[`${name}.nested_absmax`] = qw.nested.absmax2.reshape([qw.nested.absmax2.size]);
    out[`${name}.nested_quant_map`] = qw.nested.code.reshape([256]);
  } else out[`${name}.absmax`] = qw.absmax!.reshape([qw.absmax!.size]);
  const json = new TextEncoder().encode(pyJson(state));
  out[`${name}.quant_state.bitsandbytes__${type}`] = Tensor.from(json, [json.length], 'u8');
  return out;
}

/** transformers' BitsAndBytesConfig for a 4-bit model, as save_pretrained writes it. */
export function bnbQuantizationConfig(type: Quant4Type, doubleQuant: boolean): Record<string, unknown> {
  return {
    _load_in_4bit: true,
    _load_in_8bit: false,
    bnb_4bit_compute_dtype: 'float32',
    bnb_4bit_quant_storage: 'uint8',
    bnb_4bit_quant_type: type,
    bnb_4bit_use_double_quant: doubleQuant,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: null,
    llm_int8_threshold: 6.0,
    load_in_4bit: true,
    load_in_8bit: false,
    quant_method: 'bitsandbytes',
  };
}

/** What saving reads of a model (as models/llama.ts's CausalLM has it; quant/ sits below models/). */
export interface QuantizedModelTensors {
  readonly config: { readonly raw: Record<string, unknown> };
  linears(): { path: string; weight: Tensor | QuantizedWeight; bias: Tensor | null }[];
  readonly lmHead: unknown;
  readonly embedTokens: Tensor;
  readonly finalNorm: Tensor;
  readonly layers: readonly {
    index: number;
    inputNorm: Tensor;
    postAttnNorm: Tensor;
    qNorm: Tensor | null;
    kNorm: Tensor | null;
  }[];
}

/**
 * Saves a model whose decoder linears are 4-bit quantized as a transformers + bitsandbytes folder:
 * model.safetensors (quantized linears in bitsandbytes' keys, everything else fp32) and config.json
 * with its quantization_config. Files appear complete or not at all.
 */
export function saveQuantizedModel(model: QuantizedModelTensors, dir: string): void {
  const tensors: Record<string, Tensor> = {};
  const views: Tensor[] = [];
  let type: Quant4Type | null = null;
  let doubleQuant = false;
  for (const l of model.linears()) {
    const w = l.weight;
    if (w instanceof QuantizedWeight) {
      if (w.type === 'int8')
        throw new Error(
          'lorakit: saving int8 weights in bitsandbytes format is not supported; save nf4 or fp4.',
        );
      if (type !== null && (type !== w.type || doubleQuant !== (w.nested !== null)))
        throw new Error(
          'lorakit: all quantized layers must share one type and double-quantization setting to be saved for bitsandbytes.',
        );
      type = w.type;
      doubleQuant = w.nested !== null;
      const t = bnbTensors(w, `${l.path}.weight`);
      Object.assign(tensors, t);
      views.push(...Object.values(t));
    } else if (l !== model.lmHead || w !== model.embedTokens) tensors[`${l.path}.weight`] = w;
    if (l.bias) tensors[`${l.path}.bias`] = l.bias;
  }
  if (type === null)
    throw new Error('lorakit: the model has no quantized layers to save in bitsandbytes format.');
  tensors['model.embed_tokens.weight'] = model.embedTokens;
  tensors['model.norm.weight'] = model.finalNorm;
  for (const layer of model.layers) {
    const p = `model.layers.${layer.index}`;
    tensors[`${p}.input_layernorm.weight`] = layer.inputNorm;
    tensors[`${p}.post_attention_layernorm.weight`] = layer.postAttnNorm;
    if (layer.qNorm) tensors[`${p}.self_attn.q_norm.weight`] = layer.qNorm;
    if (layer.kNorm) tensors[`${p}.self_attn.k_norm.weight`] = layer.kNorm;
  }
  mkdirSync(dir, { recursive: true });
  try {
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  } finally {
    for (const t of views) t.dispose();
  }
  const config = {
    ...model.config.raw,
    dtype: 'float32',
    quantization_config: bnbQuantizationConfig(type, doubleQuant),
  };
  const tmp = join(dir, 'config.json.tmp');
  // Python reads 6 as an int; transformers insists llm_int8_threshold is a float.
  writeFileSync(
    tmp,
    `${JSON.stringify(config, null, 2).replace(/("llm_int8_threshold": )(\d+)(,?\n)/, '$1$2.0$3')}\n`,
  );
  renameSync(tmp, join(dir, 'config.json'));
}
