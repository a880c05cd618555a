// bitsandbytes checkpoints, reading: pre-quantized 4-bit (and int8) weights as transformers saves
// them (from any weight source, so in a browser too; saving is bnb.ts).
//
// 4-bit keys for a weight `W` (transformers save_pretrained of a Linear4bit):
//   W                                   U8 [ceil(n/2), 1]  packed codes
//   W.absmax                            F32 [blocks], or U8 [blocks] with double quantization
//   W.quant_map                         F32 [16]           the code (NF4 or FP4 table)
//   W.nested_absmax                     F32 [ceil(blocks/256)]   (double quantization)
//   W.nested_quant_map                  F32 [256]                (double quantization)
//   W.quant_state.bitsandbytes__nf4     U8 JSON: quant_type, blocksize, dtype, shape, nested_* fields
// int8 (Linear8bitLt): W I8 [out, in] and the sibling `SCB` F32 [out] (per-row absmax).
import { Tensor } from '../tensor/tensor.js';
import { code4, DYNAMIC_MAP } from './codes.js';
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
