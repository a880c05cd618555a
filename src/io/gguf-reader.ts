// GGUF (v2, v3; little-endian) reader: metadata, tensor infos, and per-tensor dequantization to f32,
// from bytes in memory or (in Node, through io/gguf.ts) a file. Nothing here touches a file system, so
// a browser uses it as is.
//
// Layout: magic "GGUF", u32 version, u64 tensor_count, u64 kv_count, kv pairs (string key, u32 value
// type, value), tensor infos (string name, u32 n_dims, u64 dims[n_dims] (ne0 fastest), u32 ggml type,
// u64 offset), padding to `general.alignment` (default 32), then the data section; tensor offsets are
// relative to its start. Only the header is parsed up front (through a small buffered reader); tensor
// data is read one tensor at a time, a few MiB at a time, when asked for.
import { cpu } from '../backend/cpu/addon.js';
import { shapeString, Tensor } from '../tensor/tensor.js';
import { readConverted, readDirect } from './convert.js';
import {
  checkTensorRanges,
  CHUNK_BYTES,
  readExact,
  scratchBytes,
  type ByteSource,
  type Reopen,
} from './bytes.js';
import { quote, quoteValue } from './quote.js';
import {
  BLOCK_TYPES,
  dequantizeBlocksJs,
  GGML_TYPES,
  ggmlTypeName,
  READABLE_TYPES,
  type GGMLType,
} from './gguf-quants.js';

declare module '../backend/cpu/addon.js' {
  interface CpuAddon {
    /** Optional native dequantizer (native/cpu/gguf_dequant.cc): dst[nBlocks × blockSize] from raw blocks. */
    ggmlDequantize?(dst: Float32Array, src: Uint8Array, type: number, nBlocks: number): void;
  }
}

/**
 * A metadata value. 64-bit integers (uint64/int64) are numbers when they fit in ±2^53 (so sizes and
 * token ids stay plain numbers) and bigint only beyond, where a number would lose digits.
 */
export type GGUFValue = number | bigint | string | boolean | GGUFValue[];

export const GGUF_VALUE_TYPES = [
  'uint8',
  'int8',
  'uint16',
  'int16',
  'uint32',
  'int32',
  'float32',
  'bool',
  'string',
  'array',
  'uint64',
  'int64',
  'float64',
] as const;
export type GGUFValueType = (typeof GGUF_VALUE_TYPES)[number];

export interface GGUFTensorInfo {
  name: string;
  /** Dimensions as GGUF stores them: dims[0] (ne0) varies fastest. */
  dims: number[];
  /** The row-major shape lorakit uses: dims reversed. */
  shape: number[];
  /** ggml type id, and its name (e.g. 'Q4_K'). */
  type: number;
  typeName: string;
  /** Offset relative to the data section, as stored. */
  offset: number;
  /** Absolute byte position in the file. */
  byteOffset: number;
  /** Bytes of the tensor's data, or null for a ggml type lorakit does not know. */
  byteLength: number | null;
  numel: number;
}

const MAGIC = 0x46554747; // "GGUF" read as u32 LE
const MAX_DIMS = 4;
const MAX_NESTING = 16;
const DEFAULT_ALIGNMENT = 32;

function fail(path: string, what: string): never {
  throw new Error(`lorakit: ${path}: ${what}`);
}

/** Sequential reads from a file through a buffer, with every read bounds-checked against the file. */
class HeaderReader {
  pos = 0;
  private buf = new Uint8Array(1 << 20);
  private view = new DataView(this.buf.buffer);
  private start = 0;
  private end = 0;
  private readonly decoder = new TextDecoder('utf-8');

  constructor(
    private readonly src: ByteSource,
    readonly size: number,
    private readonly path: string,
  ) {}

  get remaining(): number {
    return this.size - this.pos;
  }

  /** Makes bytes [pos, pos + n) available in buf; returns their offset inside buf. */
  private need(n: number, what: string): number {
    if (n > this.size - this.pos)
      fail(this.path, `file ends inside the header (reading ${what}); truncated or corrupt.`);
    if (this.pos < this.start || this.pos + n > this.end) {
      if (n > this.buf.length) {
        this.buf = new Uint8Array(Math.max(n, this.buf.length * 2));
        this.view = new DataView(this.buf.buffer);
      }
      const len = Math.min(this.buf.length, this.size - this.pos);
      readExact(this.src, this.buf.subarray(0, len), this.pos, this.path);
      this.start = this.pos;
      this.end = this.pos + len;
    }
    const at = this.pos - this.start;
    this.pos += n;
    return at;
  }

  u8 = (what: string) => this.buf[this.need(1, what)];
  i8 = (what: string) => this.view.getInt8(this.need(1, what));
  u16 = (what: string) => this.view.getUint16(this.need(2, what), true);
  i16 = (what: string) => this.view.getInt16(this.need(2, what), true);
  u32 = (what: string) => this.view.getUint32(this.need(4, what), true);
  i32 = (what: string) => this.view.getInt32(this.need(4, what), true);
  f32 = (what: string) => this.view.getFloat32(this.need(4, what), true);
  f64 = (what: string) => this.view.getFloat64(this.need(8, what), true);
  u64 = (what: string) => this.view.getBigUint64(this.need(8, what), true);
  i64 = (what: string) => this.view.getBigInt64(this.need(8, what), true);

  /** A u64 that must be a safe JS integer (counts, sizes, offsets). */
  count(what: string): number {
    const v = this.u64(what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      fail(this.path, `${what} ${v} is impossibly large; corrupt header.`);
    return Number(v);
  }

  string(what: string): string {
    const len = this.count(`${what} length`);
    if (len > this.remaining)
      fail(this.path, `${what} claims ${len} bytes, beyond the end of the file; corrupt header.`);
    const at = this.need(len, what);
    return this.decoder.decode(this.buf.subarray(at, at + len));
  }

  /** A copy of the next n bytes, in a buffer of their own (aligned for any typed array view). */
  bytes(n: number, what: string): ArrayBuffer {
    const at = this.need(n, what);
    const out = new ArrayBuffer(n);
    new Uint8Array(out).set(this.buf.subarray(at, at + n));
    return out;
  }
}

/** 64-bit integers as numbers when exact, else bigint (see GGUFValue). */
function int64Value(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
}

/** Smallest encoding of one value of each type, to bound array counts before looping over them. */
const MIN_BYTES = [1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8];

/** `label` names the value in messages: `metadata "key"`, the key quoted (it is file content). */
function readValue(r: HeaderReader, type: number, label: string, path: string, depth: number): GGUFValue {
  switch (type) {
    case 0:
      return r.u8(label);
    case 1:
      return r.i8(label);
    case 2:
      return r.u16(label);
    case 3:
      return r.i16(label);
    case 4:
      return r.u32(label);
    case 5:
      return r.i32(label);
    case 6:
      return r.f32(label);
    case 7: {
      const b = r.u8(label);
      if (b > 1) fail(path, `${label} has bool value ${b}; corrupt header.`);
      return b === 1;
    }
    case 8:
      return r.string(label);
    case 9: {
      if (depth >= MAX_NESTING)
        fail(path, `${label} nests arrays deeper than ${MAX_NESTING}; corrupt header.`);
      const elemType = r.u32(label);
      if (elemType >= MIN_BYTES.length)
        fail(path, `${label} is an array of unknown value type ${elemType}; corrupt header.`);
      const n = r.count(`${label} array length`);
      if (n * MIN_BYTES[elemType] > r.remaining)
        fail(path, `${label} claims ${n} elements, beyond the end of the file; corrupt header.`);
      return readArray(r, elemType, n, label, path, depth + 1);
    }
    case 10:
      return int64Value(r.u64(label));
    case 11:
      return int64Value(r.i64(label));
    case 12:
      return r.f64(label);
    default:
      fail(path, `${label} has unknown value type ${type}; corrupt header or a newer GGUF.`);
  }
}

function readArray(
  r: HeaderReader,
  type: number,
  n: number,
  label: string,
  path: string,
  depth: number,
): GGUFValue[] {
  // Fixed-size numeric arrays (token scores, token types) are read in one piece.
  const fixed: Partial<Record<number, (b: ArrayBuffer) => ArrayLike<number>>> = {
    0: (b) => new Uint8Array(b),
    1: (b) => new Int8Array(b),
    2: (b) => new Uint16Array(b),
    3: (b) => new Int16Array(b),
    4: (b) => new Uint32Array(b),
    5: (b) => new Int32Array(b),
    6: (b) => new Float32Array(b),
    12: (b) => new Float64Array(b),
  };
  const make = fixed[type];
  if (make) return Array.from(make(r.bytes(n * MIN_BYTES[type], label)));
  const out: GGUFValue[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = readValue(r, type, label, path, depth);
  return out;
}

function define<T>(o: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

function typeOfValue(type: number, label: string, path: string): GGUFValueType {
  const name = GGUF_VALUE_TYPES[type];
  if (name === undefined)
    fail(path, `${label} has unknown value type ${type}; corrupt header or a newer GGUF.`);
  return name;
}

export class GGUFFile {
  private constructor(
    readonly path: string,
    readonly version: number,
    readonly alignment: number,
    /** Absolute byte position of the data section. */
    readonly dataOffset: number,
    readonly metadata: Readonly<Record<string, GGUFValue>>,
    /** The stored value type of each metadata key ('array' for arrays), for writing it back. */
    readonly metadataTypes: Readonly<Record<string, GGUFValueType>>,
    /** Tensor infos in file order. */
    readonly tensors: ReadonlyMap<string, GGUFTensorInfo>,
    private readonly reopen: Reopen,
  ) {}

  /** A GGUF file already read into memory (a browser's File or fetch); `path` names it in messages. */
  static fromBytes(bytes: Uint8Array, path: string): GGUFFile {
    return GGUFFile.fromSource(bytes, bytes.length, path, (use) => use(bytes));
  }

  /** Parses the header from `src` (`size` bytes); tensors are read later through `reopen`. */
  static fromSource(src: ByteSource, size: number, path: string, reopen: Reopen): GGUFFile {
    const r = new HeaderReader(src, size, path);
    if (size < 24) fail(path, `too short to be a GGUF file (${size} bytes).`);
    const magic = r.u32('magic');
    if (magic !== MAGIC) fail(path, 'not a GGUF file (bad magic).');
    const version = r.u32('version');
    if (version === 1)
      fail(path, 'is GGUF version 1, which lorakit does not read; convert it with a current llama.cpp.');
    if (version > 0xffff) fail(path, 'is a big-endian GGUF, which lorakit does not read.');
    if (version !== 2 && version !== 3)
      fail(path, `has GGUF version ${version}; lorakit reads versions 2 and 3.`);
    const nTensors = r.count('tensor count');
    const nKv = r.count('metadata count');
    // Each kv takes at least 13 bytes and each tensor info at least 24: bounds loops on lying counts.
    if (nKv * 13 + nTensors * 24 > r.remaining)
      fail(
        path,
        `header claims ${nKv} metadata entries and ${nTensors} tensors, more than the file holds; corrupt or truncated.`,
      );

    const metadata: Record<string, GGUFValue> = {};
    const types: Record<string, GGUFValueType> = {};
    for (let i = 0; i < nKv; i++) {
      const key = r.string(`metadata key ${i}`);
      const label = `metadata ${quote(key)}`;
      if (Object.hasOwn(types, key)) fail(path, `metadata key ${quote(key)} appears twice; corrupt header.`);
      const type = r.u32(label);
      // Defined, not assigned: a key such as '__proto__' is then an entry like any other.
      define(types, key, typeOfValue(type, label, path));
      define(metadata, key, readValue(r, type, label, path, 0));
    }

    let alignment = DEFAULT_ALIGNMENT;
    if ('general.alignment' in metadata) {
      const a = metadata['general.alignment'];
      if (types['general.alignment'] !== 'uint32' || typeof a !== 'number' || a === 0 || (a & (a - 1)) !== 0)
        fail(path, `general.alignment must be a uint32 power of two, got ${quoteValue(a)}.`);
      alignment = a;
    }

    const infos: GGUFTensorInfo[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < nTensors; i++) {
      const name = r.string(`tensor ${i} name`);
      const label = `tensor ${quote(name)}`;
      if (seen.has(name)) fail(path, `${label} appears twice; corrupt header.`);
      seen.add(name);
      const nDims = r.u32(`${label} n_dims`);
      if (nDims > MAX_DIMS)
        fail(path, `${label} has ${nDims} dimensions (at most ${MAX_DIMS}); corrupt header.`);
      const dims: number[] = [];
      let numel = 1;
      for (let d = 0; d < nDims; d++) {
        const v = r.count(`${label} dimension`);
        dims.push(v);
        numel *= v;
      }
      if (!Number.isSafeInteger(numel))
        fail(path, `${label} has impossible dimensions [${dims.join(', ')}].`);
      const type = r.u32(`${label} type`);
      const offset = r.count(`${label} offset`);
      infos.push({
        name,
        dims,
        shape: [...dims].reverse(),
        type,
        typeName: ggmlTypeName(type),
        offset,
        byteOffset: 0,
        byteLength: null,
        numel,
      });
    }

    const dataOffset = Math.ceil(r.pos / alignment) * alignment;
    const dataSize = size - dataOffset;
    const ranges: [number, number, string][] = [];
    for (const t of infos) {
      t.byteOffset = dataOffset + t.offset;
      if (t.offset % alignment !== 0)
        fail(
          path,
          `tensor ${quote(t.name)} has offset ${t.offset}, not a multiple of the alignment ${alignment}; corrupt header.`,
        );
      const gt = GGML_TYPES.get(t.type);
      if (!gt) continue; // listed, but read() refuses it by name
      if (t.dims.length > 0 && t.dims[0] % gt.blockSize !== 0)
        fail(
          path,
          `tensor ${quote(t.name)} has rows of ${t.dims[0]} values, not a multiple of the ${gt.name} block size ${gt.blockSize}.`,
        );
      t.byteLength = (t.numel / gt.blockSize) * gt.typeSize;
      if (t.offset + t.byteLength > dataSize)
        fail(
          path,
          `tensor ${quote(t.name)} (${gt.name} ${shapeString(t.shape)}) lies beyond the end of the file; truncated or corrupt.`,
        );
      if (t.byteLength > 0) ranges.push([t.offset, t.offset + t.byteLength, t.name]);
    }
    checkTensorRanges(path, ranges);

    return new GGUFFile(
      path,
      version,
      alignment,
      dataOffset,
      metadata,
      types,
      new Map(infos.map((t) => [t.name, t])),
      reopen,
    );
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): GGUFTensorInfo {
    const t = this.tensors.get(name);
    if (!t) fail(this.path, `no tensor named ${quote(name)} (it has ${this.tensors.size}).`);
    return t;
  }

  /** A metadata value, or undefined. */
  get(key: string): GGUFValue | undefined {
    return this.metadata[key];
  }

  /**
   * The tensor dequantized to f32 (or rounded to bf16 when asked), in row-major `shape`. Types:
   * F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
   */
  read(name: string, as: 'f32' | 'bf16' = 'f32'): Tensor {
    const t = this.info(name);
    if (!READABLE_TYPES.has(t.type) || t.byteLength === null) {
      const supported = [...READABLE_TYPES].map(ggmlTypeName).join(', ');
      fail(
        this.path,
        `tensor ${quote(name)} has type ${t.typeName} (${t.type}), which lorakit cannot dequantize (it reads ${supported}).`,
      );
    }
    const out = Tensor.empty(t.shape, as);
    try {
      this.reopen((src) => {
        const what = `${this.path}: tensor ${quote(name)}`;
        if ((t.type === 0 && as === 'f32') || (t.type === 30 && as === 'bf16'))
          readDirect(src, this.path, t.byteOffset, out);
        else if (t.type === 0 || t.type === 1 || t.type === 30)
          readConverted(
            src,
            this.path,
            t.byteOffset,
            t.type === 0 ? 'F32' : t.type === 1 ? 'F16' : 'BF16',
            out,
            what,
          );
        else readBlocks(src, this.path, t, GGML_TYPES.get(t.type)!, out);
      });
    } catch (e) {
      out.dispose();
      throw e;
    }
    return out;
  }

  /**
   * The tensor's stored bytes as a u8 tensor (block-quantized weights kept quantized, e.g. for a
   * quantized linear layer); `info(name)` tells its type and shape.
   */
  readRaw(name: string): Tensor {
    const t = this.info(name);
    if (t.byteLength === null)
      fail(this.path, `tensor ${quote(name)} has unknown type ${t.type}; its size is unknown.`);
    const out = Tensor.empty([t.byteLength], 'u8');
    try {
      this.reopen((src) => readDirect(src, this.path, t.byteOffset, out));
    } catch (e) {
      out.dispose();
      throw e;
    }
    return out;
  }
}

/** Dequantizes a block-quantized tensor chunk by chunk: raw blocks into scratch, values into `out`. */
function readBlocks(src: ByteSource, path: string, t: GGUFTensorInfo, gt: GGMLType, out: Tensor): void {
  if (!BLOCK_TYPES.has(gt.id))
    throw new Error(`lorakit: ${path}: tensor ${quote(t.name)}: no dequantizer for ${gt.name}.`);
  const totalBlocks = t.numel / gt.blockSize;
  const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / gt.typeSize));
  const rawSpan = Math.ceil((perChunk * gt.typeSize) / 64) * 64;
  const toBf16 = out.dtype === 'bf16';
  const buf = scratchBytes(rawSpan + (toBf16 ? perChunk * gt.blockSize * 4 : 0));
  const native = cpu.ggmlDequantize;
  for (let b = 0; b < totalBlocks; b += perChunk) {
    const nb = Math.min(perChunk, totalBlocks - b);
    const raw = new Uint8Array(buf, 0, nb * gt.typeSize);
    readExact(src, raw, t.byteOffset + b * gt.typeSize, path);
    const start = b * gt.blockSize;
    const n = nb * gt.blockSize;
    const dst = toBf16 ? new Float32Array(buf, rawSpan, n) : out.as('f32').subarray(start, start + n);
    if (native) native(dst, raw, gt.id, nb);
    else dequantizeBlocksJs(gt.id, raw, dst, nb);
    if (toBf16) cpu.f32ToBf16(out.as('bf16').subarray(start, start + n), dst, n);
  }
}
