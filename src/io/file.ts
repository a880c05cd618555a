// Low-level file reading shared by the safetensors and GGUF readers: exact positional reads into
// caller-owned memory (a tensor's native buffer, or a small scratch buffer), with clear errors.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/** Node refuses single reads of 2 GiB or more; larger ranges are read in pieces of this size. */
const MAX_READ = 1 << 30;

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

/** Where bytes come from: an open file descriptor, or a whole file already read into memory. */
export type ByteSource = number | Uint8Array;

/** Fills `into` with the bytes at [position, position + into.length) of src; short files throw. */
export function readExact(src: ByteSource, into: Uint8Array, position: number, path: string): void {
  if (typeof src !== 'number') {
    if (position + into.length > src.length)
      throw new Error(`lorakit: ${path}: file ends early (wanted bytes up to ${position + into.length}).`);
    into.set(src.subarray(position, position + into.length));
    return;
  }
  const fd = src;
  let done = 0;
  while (done < into.length) {
    const want = Math.min(MAX_READ, into.length - done);
    const got = readSync(fd, into, done, want, position + done);
    if (got === 0)
      throw new Error(`lorakit: ${path}: file ends early (wanted bytes up to ${position + into.length}).`);
    done += got;
  }
}

/** A Uint8Array over a typed array's bytes (a tensor's native memory), without copying. */
export function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/**
 * Scratch memory for chunked conversions, reused between reads (8-byte aligned, so Float64Array and
 * BigInt64Array views of any prefix are valid).
 */
let scratch = new ArrayBuffer(0);
export function scratchBytes(n: number): ArrayBuffer {
  if (scratch.byteLength < n) scratch = new ArrayBuffer(Math.max(n, 1 << 16));
  return scratch;
}

/** Bytes a chunked conversion reads at a time: large enough for full read speed, small beside a model. */
export const CHUNK_BYTES = 4 << 20;
