// Low-level file reading (Node) shared by the safetensors and GGUF readers: opening files by path
// with clear errors, and exact positional reads into caller-owned memory through io/bytes.ts, which a
// browser uses alone (its files are bytes in memory).
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { installFileReader, type Reopen } from './bytes.js';

export { bytesOf, CHUNK_BYTES, readExact, scratchBytes, type ByteSource, type Reopen } from './bytes.js';

installFileReader(readSync);

/** Opens path for reading, turning ENOENT and friends into one clear sentence. */
export function openForRead(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`lorakit: ${path}: no such file.`);
    if (code === 'EISDIR') throw new Error(`lorakit: ${path}: is a folder, not a file.`);
    throw new Error(`lorakit: ${path}: cannot open (${(err as Error).message}).`);
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new Error(`lorakit: ${path}: is a folder, not a file.`);
  }
  return fd;
}

export function fileSize(fd: number): number {
  return fstatSync(fd).size;
}

/** Runs fn with path open for reading and closes it afterwards, even on error. */
export function withFile<T>(path: string, fn: (fd: number) => T): T {
  const fd = openForRead(path);
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * How a parsed file's tensors are read later: the file reopened for each read and checked to have the
 * size it had when parsed (the readers' `reopen`).
 */
export function reopenChecked(path: string, size: number): Reopen {
  return (use) =>
    withFile(path, (fd) => {
      if (fileSize(fd) !== size)
        throw new Error(`lorakit: ${path}: the file changed size since it was opened.`);
      return use(fd);
    });
}
