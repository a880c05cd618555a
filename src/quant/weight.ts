// Quantized frozen weights: NF4/FP4 blockwise (optionally with double-quantized absmax) and int8 rows,
// stored as bitsandbytes stores them, with native quantize/dequantize.
import { cpu } from '../backend/cpu/addon.js';
import { keep, shapeString, Tensor, type Device } from '../tensor/tensor.js';
import { DYNAMIC_MAP, torchMeanF32, type Quant4Type } from './codes.js';
import { dequantizeBlockwise8, quantizeBlockwise8 } from './blockwise8.js';

/**
 * A quantized weight as the native kernels take it: data, absmax | null, qabsmax | null,
 * absmax2 | null, code8 | null, offset, kind (0 nf4, 1 fp4, 2 int8), blocksize, nested blocksize,
 * rows, cols.
 */
export type QuantArgs = [
  Uint8Array,
  Float32Array | null,
  Uint8Array | null,
  Float32Array | null,
  Float32Array | null,
  number,
  number,
  number,
  number,
  number,
  number,
];

export type QuantType = Quant4Type | 'int8';

export const QUANT_TYPES: readonly QuantType[] = ['nf4', 'fp4', 'int8'];
export const BLOCKSIZES: readonly number[] = [32, 64, 128, 256, 512, 1024, 2048, 4096];

/** Double quantization of the 4-bit absmax constants: 8-bit codes in blocks of 256 around a mean. */
export interface NestedAbsmax {
  /** One 8-bit code per 4-bit block [blocks] (u8). */
  qabsmax: Tensor;
  /** One fp32 scale per nested block [ceil(blocks / 256)]. */
  absmax2: Tensor;
  /** The 8-bit code (256 values, f32). */
  code: Tensor;
  /** Mean of the absmax values, subtracted before quantizing them. */
  offset: number;
  blocksize: number;
}

export interface QuantizeOptions {
  type: QuantType;
  /** 4-bit block size (64 by default; 32 … 4096). */
  blocksize?: number;
  /** Quantize the absmax constants too (4-bit only). */
  doubleQuant?: boolean;
}

const KIND: Record<QuantType, number> = { nf4: 0, fp4: 1, int8: 2 };

/**
 * A frozen weight W [rows, cols] (rows = out features) in quantized storage. Owns its tensors.
 * 4-bit: `data` holds ceil(n/2) bytes, two codes per byte (even element in the high nibble), over the
 * row-major flattened weight in blocks of `blocksize`; `absmax` per block (or `nested`).
 * int8: `data` holds int8 bits [rows, cols], `absmax` the per-row max |w|.
 */
export class QuantizedWeight {
  constructor(
    readonly type: QuantType,
    readonly shape: readonly [number, number],
    readonly data: Tensor,
    readonly absmax: Tensor | null,
    readonly nested: NestedAbsmax | null,
    readonly blocksize: number,
    /** The dtype the weight had before quantization ('float32', 'bfloat16', …), kept for saving. */
    readonly sourceDtype = 'float32',
  ) {
    for (const t of [data, absmax, nested?.qabsmax, nested?.absmax2, nested?.code]) if (t) keep(t);
  }

  get size(): number {
    return this.shape[0] * this.shape[1];
  }

  /** Bytes of quantized storage (codes and constants; the 8-bit code shared by all weights not counted). */
  get bytes(): number {
    let b = this.data.size + (this.absmax ? this.absmax.size * 4 : 0);
    const n = this.nested;
    if (n)
      b += n.qabsmax.size + n.absmax2.size * 4 + 4 + (n.code === sharedDynamicCode() ? 0 : n.code.size * 4);
    return b;
  }

  /** Storage bits per weight. */
  get bitsPerParameter(): number {
    return (this.bytes * 8) / this.size;
  }

  get disposed(): boolean {
    return this.data.disposed;
  }

  /** The arguments the native kernels take for this weight. */
  args(): QuantArgs {
    const n = this.nested;
    return [
      this.data.as('u8'),
      this.absmax ? this.absmax.as('f32') : null,
      n ? n.qabsmax.as('u8') : null,
      n ? n.absmax2.as('f32') : null,
      n ? n.code.as('f32') : null,
      n ? n.offset : 0,
      KIND[this.type],
      this.blocksize,
      n ? n.blocksize : 256,
      this.shape[0],
      this.shape[1],
    ];
  }

  /** The fp32 absmax of every 4-bit block (dequantizing the nested constants), or the int8 row scales. */
  absmaxF32(): Float32Array {
    if (this.absmax) return Float32Array.from(this.absmax.as('f32'));
    const n = this.nested!;
    const a = dequantizeBlockwise8(n.qabsmax.as('u8'), n.absmax2.as('f32'), n.blocksize, n.code.as('f32'));
    for (let i = 0; i < a.length; i++) a[i] = Math.fround(a[i] + n.offset);
    return a;
  }

  get device(): Device {
    return this.data.device;
  }

  /** This weight on another device; this one is disposed (its storage moves, it is not shared). */
  moveTo(device: Device): QuantizedWeight {
    if (device === this.device) return this;
    const n = this.nested;
    const moved = new QuantizedWeight(
      this.type,
      this.shape,
      this.data.toDevice(device),
      this.absmax ? this.absmax.toDevice(device) : null,
      n
        ? {
            ...n,
            qabsmax: n.qabsmax.toDevice(device),
            absmax2: n.absmax2.toDevice(device),
            code: n.code.toDevice(device),
          }
        : null,
      this.blocksize,
      this.sourceDtype,
    );
    this.dispose();
    return moved;
  }

  dispose(): void {
    const code = this.nested?.code;
    for (const t of [this.data, this.absmax, this.nested?.qabsmax, this.nested?.absmax2]) t?.dispose();
    if (code && code !== sharedDynamicCode()) code.dispose();
  }
}

function checkOptions(opts: QuantizeOptions): { type: QuantType; blocksize: number; doubleQuant: boolean } {
  if (!QUANT_TYPES.includes(opts.type))
    throw new Error(`lorakit: unknown quantization '${String(opts.type)}' (use ${QUANT_TYPES.join(', ')}).`);
  const blocksize = opts.blocksize ?? 64;
  if (opts.type !== 'int8' && !BLOCKSIZES.includes(blocksize))
    throw new Error(
      `lorakit: quantization block size ${blocksize} is not supported (use ${BLOCKSIZES.join(', ')}).`,
    );
  const doubleQuant = opts.doubleQuant === true;
  if (doubleQuant && opts.type === 'int8')
    throw new Error('lorakit: double quantization applies to nf4 and fp4, not int8.');
  return { type: opts.type, blocksize, doubleQuant };
}

let dynamicCode: Tensor | null = null;

/** One f32 tensor of bitsandbytes' dynamic map, shared by every double-quantized weight (never freed). */
export function sharedDynamicCode(): Tensor {
  if (!dynamicCode || dynamicCode.disposed) dynamicCode = keep(Tensor.from(DYNAMIC_MAP, [256]));
  return dynamicCode;
}

/** Double-quantizes fp32 absmax values as bitsandbytes does (mean offset, 8-bit dynamic code, blocks of 256). */
export function nestAbsmax(absmax: Float32Array): NestedAbsmax {
  const offset = torchMeanF32(absmax);
  const centred = new Float32Array(absmax.length);
  for (let i = 0; i < absmax.length; i++) centred[i] = absmax[i] - offset;
  const { q, absmax: absmax2 } = quantizeBlockwise8(centred, 256, DYNAMIC_MAP);
  return {
    qabsmax: Tensor.from(q, [q.length], 'u8'),
    absmax2: Tensor.from(absmax2, [absmax2.length]),
    code: sharedDynamicCode(),
    offset,
    blocksize: 256,
  };
}

/**
 * Quantizes a weight [rows, cols] (f32 or bf16; 1-D tensors count as one row) bit-exactly as
 * bitsandbytes: quantize_4bit (NF4/FP4, optional compress_statistics) or int8_vectorwise_quant.
 */
export function quantizeWeight(w: Tensor, opts: QuantizeOptions): QuantizedWeight {
  const { type, blocksize, doubleQuant } = checkOptions(opts);
  if (w.dtype !== 'f32' && w.dtype !== 'bf16')
    throw new Error(`lorakit: only f32 or bf16 weights can be quantized, got ${w.dtype}.`);
  if (w.shape.length > 2 || w.shape.length === 0)
    throw new Error(`lorakit: quantizeWeight expects a 1-D or 2-D weight, got ${shapeString(w.shape)}.`);
  const shape: [number, number] = w.shape.length === 1 ? [1, w.shape[0]] : [w.shape[0], w.shape[1]];
  const n = w.size;
  const x = w.dtype === 'f32' ? w.as('f32') : w.toFloat32();
  const source = w.dtype === 'bf16' ? 'bfloat16' : 'float32';
  if (type === 'int8') {
    const data = Tensor.empty([n], 'u8');
    const absmax = Tensor.empty([shape[0]]);
    cpu.quantizeInt8(data.as('u8'), absmax.as('f32'), x, shape[0], shape[1]);
    return new QuantizedWeight(type, shape, data, absmax, null, blocksize, source);
  }
  const data = Tensor.empty([Math.ceil(n / 2)], 'u8');
  const absmax = Tensor.empty([Math.ceil(n / blocksize)]);
  cpu.quantize4bit(data.as('u8'), absmax.as('f32'), x, n, blocksize, KIND[type]);
  if (!doubleQuant) return new QuantizedWeight(type, shape, data, absmax, null, blocksize, source);
  const nested = nestAbsmax(absmax.as('f32'));
  absmax.dispose();
  return new QuantizedWeight(type, shape, data, null, nested, blocksize, source);
}

/** Rows [r0, r1) of the weight in fp32 [(r1 - r0), cols]: a new tensor. */
export function dequantizeRows(qw: QuantizedWeight, r0: number, r1: number): Tensor {
  if (qw.disposed) throw new Error('lorakit: the quantized weight was disposed.');
  if (!(Number.isInteger(r0) && Number.isInteger(r1) && 0 <= r0 && r0 <= r1 && r1 <= qw.shape[0]))
    throw new Error(`lorakit: rows [${r0}, ${r1}) are outside the weight's ${qw.shape[0]} rows.`);
  const out = Tensor.empty([r1 - r0, qw.shape[1]]);
  cpu.dequantizeRows(out.as('f32'), ...qw.args(), r0, r1);
  return out;
}

/** The whole weight in fp32 [rows, cols] (a new tensor; for merging and export, not for compute). */
export function dequantizeWeight(qw: QuantizedWeight): Tensor {
  return dequantizeRows(qw, 0, qw.shape[0]);
}

/** A dense f32 copy of a weight's values, whether it is a tensor or quantized. */
export function weightToFloat32(w: Tensor | QuantizedWeight): Float32Array {
  if (w instanceof Tensor) return w.toFloat32();
  const t = dequantizeWeight(w);
  try {
    return Float32Array.from(t.as('f32'));
  } finally {
    t.dispose();
  }
}

/** Bytes a weight takes in memory (dense or quantized). */
export function weightBytes(w: Tensor | QuantizedWeight): number {
  if (w instanceof QuantizedWeight) return w.bytes;
  return w.size * (w.dtype === 'f32' || w.dtype === 'i32' ? 4 : w.dtype === 'u8' ? 1 : 2);
}

/** The linear layers of a model, as quantizeModel needs them (avoids importing the model here). */
interface HasLinears {
  linears(): { weight: Tensor | QuantizedWeight; path: string }[];
  readonly lmHead: unknown;
}

/**
 * Quantizes a loaded model's decoder linears in place, one at a time (the dense weight is freed as
 * soon as its quantized copy exists). The output head stays dense, as bitsandbytes leaves it.
 */
export function quantizeModel(model: HasLinears, opts: QuantizeOptions): void {
  for (const l of model.linears()) {
    if (l === model.lmHead || l.weight instanceof QuantizedWeight) continue;
    const dense = l.weight;
    l.weight = quantizeWeight(dense, opts);
    dense.dispose();
  }
}

/** Bytes of the base model's weights as stored (quantized linears at their quantized size). */
export function baseWeightBytes(model: {
  linears(): { weight: Tensor | QuantizedWeight; bias: Tensor | null }[];
  embedTokens: Tensor;
  lmHead: { weight: Tensor };
}): {
  bytes: number;
  quantizedParams: number;
  quantizedBytes: number;
} {
  let bytes = weightBytes(model.embedTokens);
  let quantizedParams = 0;
  let quantizedBytes = 0;
  for (const l of model.linears()) {
    if (l.weight === model.embedTokens) continue;
    bytes += weightBytes(l.weight) + (l.bias ? weightBytes(l.bias) : 0);
    if (l.weight instanceof QuantizedWeight) {
      quantizedParams += l.weight.size;
      quantizedBytes += l.weight.bytes;
    }
  }
  return { bytes, quantizedParams, quantizedBytes };
}
