// safetensors reading, from bytes in memory or (in Node, through io/safetensors.ts) a file: the header
// parsed and validated, tensors read one at a time. Nothing here touches a file system, so a browser
// uses it as is.
//
// File layout: u64 little-endian header length N, N bytes of JSON header
// {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}, then the
// data section; offsets are relative to its start. The whole header is validated when a file is
// opened, before any tensor byte is read, so a truncated or lying file fails with one clear sentence
// instead of an out-of-bounds read. Tensors are read one at a time straight into host memory.
import { shapeString, Tensor } from '../tensor/tensor.js';
import type { DType } from '../tensor/dtype.js';
import { checkTensorRanges, readExact, type ByteSource, type Reopen } from './bytes.js';
import { RAW_BYTES, readConverted, readDirect, type RawType } from './convert.js';
import { oneLine, quote, quoteValue } from './quote.js';

export type SafetensorsDType = RawType;

const DTYPES: ReadonlySet<string> = new Set<SafetensorsDType>([
  'F32',
  'F16',
  'BF16',
  'I32',
  'I64',
  'U8',
  'I8',
  'BOOL',
  'F64',
]);

/** The Python reference refuses headers above 100 MB; so do we (it also bounds our allocation). */
const MAX_HEADER = 100_000_000;

/** More dimensions than any model tensor has: a shape beyond this is a corrupt header. */
const MAX_DIMS = 16;

export interface SafetensorsTensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte position of the tensor's data in the file (header included). */
  byteOffset: number;
  byteLength: number;
}

/**
 * How read() returns a tensor: 'native' keeps the file's type where lorakit has it (F32→f32,
 * BF16→bf16, F16→f16, I32/I64/I8→i32, U8/BOOL→u8, F64→f32); 'f32' and 'bf16' convert floats.
 */
export type ReadAs = 'f32' | 'bf16' | 'native';

/** What model loaders need from a weight file or folder. */
export interface TensorSource {
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
  has(name: string): boolean;
  read(name: string, as?: ReadAs): Tensor;
  close(): void;
}

function fail(path: string, what: string): never {
  throw new Error(`lorakit: ${path}: ${what}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

const NATIVE: Record<SafetensorsDType, DType> = {
  F32: 'f32',
  BF16: 'bf16',
  F16: 'f16',
  I32: 'i32',
  I64: 'i32',
  I8: 'i32',
  U8: 'u8',
  BOOL: 'u8',
  F64: 'f32',
};

/** File types whose bytes are exactly a lorakit dtype's: read with no conversion at all. */
const DIRECT: Partial<Record<SafetensorsDType, DType>> = {
  F32: 'f32',
  BF16: 'bf16',
  F16: 'f16',
  I32: 'i32',
  U8: 'u8',
  BOOL: 'u8',
};

/**
 * One .safetensors file with a validated header. Each read() reopens the file, reads, and closes it,
 * unless the file was handed over already read into memory (fromBytes).
 */
export class SafetensorsFile implements TensorSource {
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;

  private constructor(
    readonly path: string,
    tensors: Map<string, SafetensorsTensorInfo>,
    metadata: Record<string, string>,
    private readonly reopen: Reopen,
  ) {
    this.tensors = tensors;
    this.metadata = metadata;
  }

  /**
   * A file whose bytes the caller has read (a browser's File or fetch, or a descriptor it checked);
   * `path` only names it in messages, and reads copy out of `bytes`.
   */
  static fromBytes(bytes: Uint8Array, path: string): SafetensorsFile {
    return SafetensorsFile.fromSource(bytes, bytes.length, path, (use) => use(bytes));
  }

  /** Parses the header from `src` (`size` bytes); tensors are read later through `reopen`. */
  static fromSource(src: ByteSource, size: number, path: string, reopen: Reopen): SafetensorsFile {
    if (size < 8) fail(path, `too short to be a safetensors file (${size} bytes).`);
    const lenBytes = new Uint8Array(8);
    readExact(src, lenBytes, 0, path);
    const n = new DataView(lenBytes.buffer).getBigUint64(0, true);
    if (n > BigInt(size - 8))
      fail(
        path,
        `header length ${n} exceeds the file size (${size} bytes): truncated or not a safetensors file.`,
      );
    if (n > BigInt(MAX_HEADER))
      fail(path, `header length ${n} is larger than the 100 MB safetensors allows.`);
    const headerLen = Number(n);
    const headerBytes = new Uint8Array(headerLen);
    readExact(src, headerBytes, 8, path);
    const { tensors, metadata } = parseHeader(path, headerBytes, size - 8 - headerLen, 8 + headerLen);
    return new SafetensorsFile(path, tensors, metadata, reopen);
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): SafetensorsTensorInfo {
    const t = this.tensors.get(name);
    if (!t) {
      const some = [...this.tensors.keys()]
        .slice(0, 5)
        .map((n) => oneLine(n, 40))
        .join(', ');
      fail(
        this.path,
        `no tensor named ${quote(name)} (it has ${this.tensors.size}${some ? `: ${some}${this.tensors.size > 5 ? ', …' : ''}` : ''}).`,
      );
    }
    return t;
  }

  read(name: string, as: ReadAs = 'native'): Tensor {
    const info = this.info(name);
    const native = NATIVE[info.dtype];
    const isFloat = native === 'f32' || native === 'bf16' || native === 'f16';
    const dtype: DType = as === 'native' || !isFloat ? native : as;
    const out = Tensor.empty(info.shape, dtype);
    try {
      this.reopen((src) => {
        const what = `${this.path}: tensor ${quote(name)}`;
        if (DIRECT[info.dtype] === dtype) readDirect(src, this.path, info.byteOffset, out);
        else readConverted(src, this.path, info.byteOffset, info.dtype, out, what);
      });
    } catch (e) {
      out.dispose();
      throw e;
    }
    return out;
  }

  /** Nothing stays open between reads; present so every TensorSource can be closed alike. */
  close(): void {}
}

function parseHeader(
  path: string,
  bytes: Uint8Array,
  dataSize: number,
  dataStart: number,
): { tensors: Map<string, SafetensorsTensorInfo>; metadata: Record<string, string> } {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    fail(path, 'corrupt header (not valid UTF-8 JSON).');
  }
  if (!isRecord(json)) fail(path, 'corrupt header (the JSON is not an object).');
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, SafetensorsTensorInfo>();
  const ranges: [number, number, string][] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isRecord(entry)) fail(path, '__metadata__ must be an object of strings.');
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') fail(path, `__metadata__ value ${quote(k)} is not a string.`);
        // Defined, not assigned: a key such as '__proto__' is then an entry like any other.
        Object.defineProperty(metadata, k, {
          value: v,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      continue;
    }
    const label = `tensor ${quote(name)}`;
    if (!isRecord(entry)) fail(path, `${label} has no dtype/shape/data_offsets entry.`);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string') fail(path, `${label} has no dtype.`);
    if (!DTYPES.has(dtype))
      fail(
        path,
        `${label} has dtype ${quote(dtype)}, which lorakit does not read (${[...DTYPES].join(', ')}).`,
      );
    if (!Array.isArray(shape) || shape.length > MAX_DIMS || !shape.every(isCount))
      fail(path, `${label} has an invalid shape ${quoteValue(shape)}.`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount))
      fail(path, `${label} has invalid data_offsets ${quoteValue(offsets)}.`);
    const [begin, end] = offsets;
    if (begin > end || end > dataSize)
      fail(
        path,
        `${label} has data_offsets [${begin}, ${end}] outside the ${dataSize}-byte data section (truncated file?).`,
      );
    const dt = dtype as SafetensorsDType;
    let numel = 1;
    for (const d of shape) numel *= d;
    const expected = numel * RAW_BYTES[dt];
    if (end - begin !== expected)
      fail(
        path,
        `${label} (${dt} ${shapeString(shape)}) needs ${expected} bytes but its data_offsets span ${end - begin}.`,
      );
    tensors.set(name, {
      dtype: dt,
      shape: [...shape],
      byteOffset: dataStart + begin,
      byteLength: end - begin,
    });
    if (end > begin) ranges.push([begin, end, name]);
  }
  checkTensorRanges(path, ranges);
  return { tensors, metadata };
}

// ---- sharded model folders -------------------------------------------------------------------------

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/** A model's weights across one or several safetensors files, read through one API. */
export class SafetensorsModel implements TensorSource {
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
  constructor(
    readonly dir: string,
    readonly files: readonly SafetensorsFile[],
    private readonly owner: ReadonlyMap<string, SafetensorsFile>,
    /** metadata of the index file (total_size …), or of the single file. */
    readonly metadata: Readonly<Record<string, unknown>>,
  ) {
    const all = new Map<string, SafetensorsTensorInfo>();
    for (const [name, file] of owner) all.set(name, file.info(name));
    this.tensors = all;
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  /** The file holding a tensor (to report it, or to read its raw bytes). */
  fileOf(name: string): SafetensorsFile {
    const f = this.owner.get(name);
    if (!f) fail(this.dir, `no tensor named ${quote(name)} in the model (it has ${this.owner.size}).`);
    return f;
  }

  read(name: string, as: ReadAs = 'native'): Tensor {
    return this.fileOf(name).read(name, as);
  }

  close(): void {}
}

/** One file's SafetensorsModel: every tensor is its own. */
export function singleFileModel(dir: string, f: SafetensorsFile): SafetensorsModel {
  return new SafetensorsModel(dir, [f], new Map([...f.tensors.keys()].map((k) => [k, f])), f.metadata);
}

/**
 * weight_map of a parsed model.safetensors.index.json: tensor name -> shard file. `validShard` says
 * which names may be shards (in Node: relative paths inside the folder).
 */
export function weightMapOf(
  json: unknown,
  indexPath: string,
  validShard: (shard: string) => boolean,
): Map<string, string> {
  if (!isRecord(json) || !isRecord(json.weight_map))
    throw new Error(`lorakit: ${indexPath}: has no weight_map object.`);
  const map = new Map<string, string>();
  for (const [name, shard] of Object.entries(json.weight_map)) {
    if (typeof shard !== 'string' || shard === '' || !validShard(shard))
      throw new Error(
        `lorakit: ${indexPath}: weight_map entry ${quote(name)} names an invalid shard ${quoteValue(shard)}.`,
      );
    map.set(name, shard);
  }
  return map;
}

/**
 * The shards of a sharded model, each tensor in the shard `weightMap` places it (checked up front),
 * with the index's metadata; `shardPath` names a shard in messages.
 */
export function shardedModel(
  dir: string,
  weightMap: ReadonlyMap<string, string>,
  files: ReadonlyMap<string, SafetensorsFile>,
  index: unknown,
  shardPath: (shard: string) => string,
): SafetensorsModel {
  const owner = new Map<string, SafetensorsFile>();
  for (const [name, shard] of weightMap) {
    const f = files.get(shard);
    if (!f || !f.has(name))
      throw new Error(
        `lorakit: ${shardPath(shard)}: has no tensor ${quote(name)}, which ${INDEX_FILE} places there.`,
      );
    owner.set(name, f);
  }
  const metadata = isRecord(index) && isRecord(index.metadata) ? index.metadata : {};
  return new SafetensorsModel(dir, [...files.values()], owner, metadata);
}

/**
 * A model's weights from its files' bytes, by file name (a browser has no folder to open):
 * `model.safetensors`, or `model.safetensors.index.json` and the shards its weight_map names. `dir`
 * names the model in messages. Every header is validated up front, as openSafetensorsModel does.
 */
export function safetensorsModelFromBytes(
  files: Readonly<Record<string, Uint8Array>>,
  dir = 'model',
): SafetensorsModel {
  const named = (name: string): Uint8Array | undefined =>
    Object.hasOwn(files, name) ? files[name] : undefined;
  const single = named(SINGLE_FILE);
  if (single) return singleFileModel(dir, SafetensorsFile.fromBytes(single, `${dir}/${SINGLE_FILE}`));
  const indexBytes = named(INDEX_FILE);
  if (!indexBytes) throw new Error(`lorakit: ${dir}: has neither ${SINGLE_FILE} nor ${INDEX_FILE}.`);
  const indexPath = `${dir}/${INDEX_FILE}`;
  let index: unknown;
  try {
    index = JSON.parse(new TextDecoder().decode(indexBytes));
  } catch (e) {
    throw new Error(`lorakit: ${indexPath}: not valid JSON (${oneLine((e as Error).message)}).`);
  }
  const weightMap = weightMapOf(index, indexPath, () => true);
  const shards = new Map<string, SafetensorsFile>();
  for (const shard of new Set(weightMap.values())) {
    const bytes = named(shard);
    if (!bytes) throw new Error(`lorakit: ${dir}: shard ${shard} listed in ${INDEX_FILE} is missing.`);
    shards.set(shard, SafetensorsFile.fromBytes(bytes, `${dir}/${shard}`));
  }
  return shardedModel(dir, weightMap, shards, index, (shard) => `${dir}/${shard}`);
}
