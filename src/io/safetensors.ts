// safetensors files by path (Node): opening one file or a sharded model folder, and writing. The
// format itself (header validation, tensor reads; the bytes written) is io/safetensors-reader.ts and
// io/safetensors-writer.ts, which a browser uses with files' bytes.
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
import { fileSize, reopenChecked, withFile } from './file.js';
import { oneLine } from './quote.js';
import {
  INDEX_FILE,
  SafetensorsFile,
  SINGLE_FILE,
  shardedModel,
  singleFileModel,
  weightMapOf,
  type SafetensorsModel,
} from './safetensors-reader.js';
import { safetensorsChunks, safetensorsLayout } from './safetensors-writer.js';

export * from './safetensors-reader.js';
export * from './safetensors-writer.js';

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

/**
 * Writes tensors as safetensors-writer.ts lays them out (byte-identical to Python's `save_file` with at
 * most one metadata entry), streaming one tensor at a time. Written to `path.tmp`, then renamed over
 * `path`.
 */
export function writeSafetensors(
  path: string,
  tensors: Record<string, Tensor>,
  metadata?: Record<string, string>,
): void {
  const layout = safetensorsLayout(tensors, metadata);
  const tmp = `${path}.tmp`;
  let fd: number;
  try {
    fd = openSync(tmp, 'w');
  } catch (e) {
    throw new Error(`lorakit: ${path}: cannot write (${(e as Error).message}).`);
  }
  try {
    for (const chunk of safetensorsChunks(layout)) writeAll(fd, chunk);
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
