// safetensors: read (single file or a sharded model folder) and write.
//
// File layout: u64 little-endian header length N, N bytes of JSON header
// {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}, then the
// data section; offsets are relative to its start. The whole header is validated when a file is
// opened, before any tensor byte is read, so a truncated or lying file fails with one clear sentence
// instead of an out-of-bounds read. Tensors are read one at a time straight into native memory.
import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { isAbsolute, join, normalize } from 'node:path';
import { shapeString, Tensor } from '../tensor/tensor.js';
import type { DType } from '../tensor/dtype.js';
import { RAW_BYTES, readConverted, readDirect, type RawType } from './convert.js';
import { bytesOf, fileSize, readExact, withFile, type ByteSource } from './file.js';
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
 * One .safetensors file with a validated header. Each read() opens the file, reads, and closes it,
 * unless the file was handed over already read into memory (fromBytes).
 */
export class SafetensorsFile implements TensorSource {
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
  private readonly size: number;

  private constructor(
    readonly path: string,
    size: number,
    tensors: Map<string, SafetensorsTensorInfo>,
    metadata: Record<string, string>,
    private readonly bytes: Uint8Array | null,
  ) {
    this.size = size;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  static open(path: string): SafetensorsFile {
    return withFile(path, (fd) => SafetensorsFile.parse(fd, fileSize(fd), path, null));
  }

  /**
   * A file whose bytes the caller has read (from a descriptor it checked, without blocking); `path`
   * only names it in messages, and reads copy out of `bytes`.
   */
  static fromBytes(bytes: Uint8Array, path: string): SafetensorsFile {
    return SafetensorsFile.parse(bytes, bytes.length, path, bytes);
  }

  private static parse(
    src: ByteSource,
    size: number,
    path: string,
    bytes: Uint8Array | null,
  ): SafetensorsFile {
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
    return new SafetensorsFile(path, size, tensors, metadata, bytes);
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
      const load = (src: ByteSource): void => {
        const what = `${this.path}: tensor ${quote(name)}`;
        if (DIRECT[info.dtype] === dtype) readDirect(src, this.path, info.byteOffset, out);
        else readConverted(src, this.path, info.byteOffset, info.dtype, out, what);
      };
      if (this.bytes) load(this.bytes);
      else
        withFile(this.path, (fd) => {
          if (fileSize(fd) !== this.size) fail(this.path, 'the file changed size since it was opened.');
          load(fd);
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
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++)
    if (ranges[i][0] < ranges[i - 1][1])
      fail(
        path,
        `tensors ${quote(ranges[i - 1][2], 60)} and ${quote(ranges[i][2], 60)} overlap in the data section.`,
      );
  return { tensors, metadata };
}

/** Opens one .safetensors file, validating its header completely. */
export function openSafetensors(path: string): SafetensorsFile {
  return SafetensorsFile.open(path);
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

/**
 * A model folder's weights: `model.safetensors`, or `model.safetensors.index.json` and the shards
 * its weight_map names. `dir` may also be a .safetensors file. Every shard is opened (and its header
 * validated) up front, so a missing or corrupt shard fails before any weight is read.
 */
export function openSafetensorsModel(dir: string): SafetensorsModel {
  if (!existsSync(dir)) throw new Error(`lorakit: ${dir}: no such file or folder.`);
  if (statSync(dir).isFile()) {
    const f = openSafetensors(dir);
    return new SafetensorsModel(dir, [f], new Map([...f.tensors.keys()].map((k) => [k, f])), f.metadata);
  }
  const single = join(dir, SINGLE_FILE);
  if (existsSync(single)) {
    const f = openSafetensors(single);
    return new SafetensorsModel(dir, [f], new Map([...f.tensors.keys()].map((k) => [k, f])), f.metadata);
  }
  const indexPath = join(dir, INDEX_FILE);
  if (!existsSync(indexPath))
    throw new Error(`lorakit: ${dir}: has neither ${SINGLE_FILE} nor ${INDEX_FILE}.`);
  const weightMap = readIndex(indexPath);
  const files = new Map<string, SafetensorsFile>();
  for (const shard of new Set(weightMap.values())) {
    const p = join(dir, shard);
    if (!existsSync(p))
      throw new Error(`lorakit: ${dir}: shard ${shard} listed in ${INDEX_FILE} is missing.`);
    files.set(shard, openSafetensors(p));
  }
  const owner = new Map<string, SafetensorsFile>();
  for (const [name, shard] of weightMap) {
    const f = files.get(shard);
    if (!f || !f.has(name))
      throw new Error(
        `lorakit: ${join(dir, shard)}: has no tensor ${quote(name)}, which ${INDEX_FILE} places there.`,
      );
    owner.set(name, f);
  }
  const index: unknown = JSON.parse(readFileSync(indexPath, 'utf8'));
  const metadata = isRecord(index) && isRecord(index.metadata) ? index.metadata : {};
  return new SafetensorsModel(dir, [...files.values()], owner, metadata);
}

/** weight_map of a model.safetensors.index.json: tensor name -> shard file (relative, inside the folder). */
export function readIndex(indexPath: string): Map<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch (e) {
    throw new Error(`lorakit: ${indexPath}: not valid JSON (${oneLine((e as Error).message)}).`);
  }
  if (!isRecord(json) || !isRecord(json.weight_map))
    throw new Error(`lorakit: ${indexPath}: has no weight_map object.`);
  const map = new Map<string, string>();
  for (const [name, shard] of Object.entries(json.weight_map)) {
    if (
      typeof shard !== 'string' ||
      shard === '' ||
      isAbsolute(shard) ||
      normalize(shard).split(/[\\/]/).includes('..')
    )
      throw new Error(
        `lorakit: ${indexPath}: weight_map entry ${quote(name)} names an invalid shard ${quoteValue(shard)}.`,
      );
    map.set(name, shard);
  }
  return map;
}

// ---- writing ----------------------------------------------------------------------------------------

const WRITE_DTYPE: Partial<Record<DType, SafetensorsDType>> = {
  f32: 'F32',
  bf16: 'BF16',
  f16: 'F16',
  i32: 'I32',
  u8: 'U8',
};

// The Rust writer lays tensors out by dtype, largest enum value first, then by name; its enum order:
const DTYPE_RANK: Record<SafetensorsDType, number> = {
  BOOL: 0,
  U8: 4,
  I8: 5,
  F16: 11,
  BF16: 12,
  I32: 13,
  F32: 15,
  F64: 17,
  I64: 18,
};

const encoder = new TextEncoder();
const utf8 = (s: string): Uint8Array => encoder.encode(s);

/** Byte-wise comparison of UTF-8 strings, as Rust orders Strings. */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/**
 * Writes tensors (f32→F32, bf16→BF16, f16→F16, i32→I32, u8→U8) in the layout of the Python
 * `safetensors` writer: tensors ordered by dtype then name, header padded with spaces to 8 bytes, so
 * that with at most one metadata entry the file is byte-identical to `save_file`'s (Python orders
 * several metadata keys randomly; we sort them). Written to `path.tmp`, then renamed over `path`.
 */
export function writeSafetensors(
  path: string,
  tensors: Record<string, Tensor>,
  metadata?: Record<string, string>,
): void {
  const entries = Object.entries(tensors).map(([name, t]) => {
    if (t.disposed) throw new Error(`lorakit: writeSafetensors: tensor '${name}' was disposed.`);
    const dtype = WRITE_DTYPE[t.dtype];
    if (!dtype)
      throw new Error(
        `lorakit: writeSafetensors: tensor '${name}' has dtype ${t.dtype}, which safetensors cannot hold.`,
      );
    return { name, t, dtype, key: utf8(name) };
  });
  entries.sort((a, b) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || compareBytes(a.key, b.key));
  const parts: string[] = [];
  if (metadata) {
    const keys = Object.keys(metadata).sort((a, b) => compareBytes(utf8(a), utf8(b)));
    for (const k of keys)
      if (typeof metadata[k] !== 'string')
        throw new Error(`lorakit: writeSafetensors: metadata '${k}' must be a string.`);
    parts.push(
      `"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(',')}}`,
    );
  }
  let offset = 0;
  for (const e of entries) {
    const bytes = e.t.size * RAW_BYTES[e.dtype];
    parts.push(
      `${JSON.stringify(e.name)}:{"dtype":"${e.dtype}","shape":[${e.t.shape.join(',')}],"data_offsets":[${offset},${offset + bytes}]}`,
    );
    offset += bytes;
  }
  const json = utf8(`{${parts.join(',')}}`);
  const header = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
  header.set(json);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(header.length), true);

  const tmp = `${path}.tmp`;
  let fd: number;
  try {
    fd = openSync(tmp, 'w');
  } catch (e) {
    throw new Error(`lorakit: ${path}: cannot write (${(e as Error).message}).`);
  }
  try {
    writeAll(fd, len);
    writeAll(fd, header);
    for (const e of entries) {
      // A device tensor is copied over one at a time, so the host never holds them all.
      const host = e.t.device === 'cpu' ? e.t : e.t.toDevice('cpu');
      writeAll(fd, bytesOf(host.data()));
      if (host !== e.t) host.dispose();
    }
    closeSync(fd);
    fd = -1;
    renameSync(tmp, path);
  } catch (e) {
    if (fd >= 0) closeSync(fd);
    rmSync(tmp, { force: true });
    throw new Error(`lorakit: ${path}: writing failed (${(e as Error).message}).`);
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) {
    done += writeSync(fd, bytes, done, Math.min(bytes.length - done, 1 << 30));
  }
}
