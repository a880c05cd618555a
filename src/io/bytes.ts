// Reading byte ranges from a ByteSource, shared by the safetensors and GGUF readers in Node and in a
// browser: a whole file already in memory here; an open file descriptor through the positional read
// that io/file.ts (Node only) installs, since a descriptor can only come from there.
import { quote } from './quote.js';

/** Where bytes come from: an open file descriptor (Node, io/file.ts), or a whole file already read into memory. */
export type ByteSource = number | Uint8Array;

/**
 * How a parsed file gives its bytes back for each tensor read: the bytes themselves, or (Node) the
 * file reopened and checked to be unchanged (io/file.ts reopenChecked).
 */
export type Reopen = <T>(use: (src: ByteSource) => T) => T;

/** Reads up to `length` bytes of file `fd` at `position` into `into` from `offset`; returns the count (fs.readSync). */
export type PositionalRead = (
  fd: number,
  into: Uint8Array,
  offset: number,
  length: number,
  position: number,
) => number;

let readFd: PositionalRead | null = null;

/** Called by io/file.ts, which opens the descriptors: reads from them go through `read`. */
export function installFileReader(read: PositionalRead): void {
  readFd = read;
}

/** Node refuses single reads of 2 GiB or more; larger ranges are read in pieces of this size. */
const MAX_READ = 1 << 30;

/** Fills `into` with the bytes at [position, position + into.length) of src; short files throw. */
export function readExact(src: ByteSource, into: Uint8Array, position: number, path: string): void {
  if (typeof src !== 'number') {
    if (position + into.length > src.length)
      throw new Error(`lorakit: ${path}: file ends early (wanted bytes up to ${position + into.length}).`);
    into.set(src.subarray(position, position + into.length));
    return;
  }
  if (!readFd) throw new Error(`lorakit: ${path}: reading a file descriptor needs Node's file system.`);
  let done = 0;
  while (done < into.length) {
    const want = Math.min(MAX_READ, into.length - done);
    const got = readFd(src, into, done, want, position + done);
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

/**
 * Throws one sentence naming `path` when two tensors' byte ranges [begin, end) in a weight file's data
 * section overlap (a crafted or corrupt file); sorts `ranges` in place.
 */
export function checkTensorRanges(path: string, ranges: [number, number, string][]): void {
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++)
    if (ranges[i][0] < ranges[i - 1][1])
      throw new Error(
        `lorakit: ${path}: tensors ${quote(ranges[i - 1][2], 60)} and ${quote(ranges[i][2], 60)} overlap in the data section.`,
      );
}
