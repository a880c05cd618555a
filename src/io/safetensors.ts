// safetensors files by path (Node): opening one file or a sharded model folder, and writing. The
// format itself (header validation, tensor reads) is io/safetensors-reader.ts, which a browser uses
// with files' bytes.
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
import type { Tensor } from '../tensor/tensor.js';
import type { DType } from '../tensor/dtype.js';
import { RAW_BYTES } from './convert.js';
import { bytesOf, fileSize, reopenChecked, withFile } from './file.js';
import { oneLine } from './quote.js';
import {
  INDEX_FILE,
  SafetensorsFile,
  SINGLE_FILE,
  shardedModel,
  singleFileModel,
  weightMapOf,
  type SafetensorsDType,
  type SafetensorsModel,
} from './safetensors-reader.js';

export * from './safetensors-reader.js';

/** Opens one .safetensors file, validating its header completely. */
export function openSafetensors(path: string): SafetensorsFile {
  return withFile(path, (fd) => {
    const size = fileSize(fd);
    return SafetensorsFile.fromSource(fd, size, path, reopenChecked(path, size));
  });
}

/**
 * A model folder's weights: `model.safetensors`, or `model.safetensors.index.json` and the shards
 * its weight_map names. `dir` may also be a .safetensors file. Every shard is opened (and its header
 * validated) up front, so a missing or corrupt shard fails before any weight is read.
 */
export function openSafetensorsModel(dir: string): SafetensorsModel {
  if (!existsSync(dir)) throw new Error(`lorakit: ${dir}: no such file or folder.`);
  if (statSync(dir).isFile()) {
    return singleFileModel(dir, openSafetensors(dir));
  }
  const single = join(dir, SINGLE_FILE);
  if (existsSync(single)) {
    return singleFileModel(dir, openSafetensors(single));
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
  const index: unknown = JSON.parse(readFileSync(indexPath, 'utf8'));
  return shardedModel(dir, weightMap, files, index, (shard) => join(dir, shard));
}

/** weight_map of a model.safetensors.index.json: tensor name -> shard file (relative, inside the folder). */
export function readIndex(indexPath: string): Map<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch (e) {
    throw new Error(`lorakit: ${indexPath}: not valid JSON (${oneLine((e as Error).message)}).`);
  }
  return weightMapOf(
    json,
    indexPath,
    (shard) => !isAbsolute(shard) && !normalize(shard).split(/[\\/]/).includes('..'),
  );
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
