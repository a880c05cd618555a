// Writing large files one tensor at a time: a file whose layout (header, offsets) is known before any
// tensor is computed, filled in order, written under a temporary name and renamed when complete.
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { cast } from '../ops/elementwise.js';
import type { Tensor } from '../tensor/tensor.js';
import { encodeF16 } from './quantize.js';

/** An open output file: sequential writes, then commit() renames it into place or abort() removes it. */
export class OutFile {
  private fd: number;
  private readonly tmp: string;
  written = 0;

  constructor(readonly path: string) {
    this.tmp = `${path}.tmp-${process.pid}`;
    try {
      this.fd = openSync(this.tmp, 'w');
    } catch (e) {
      throw new Error(`lorakit: ${path}: cannot write (${(e as Error).message}).`);
    }
  }

  write(bytes: Uint8Array): void {
    for (let done = 0; done < bytes.length;)
      done += writeSync(this.fd, bytes, done, Math.min(bytes.length - done, 1 << 30));
    this.written += bytes.length;
  }

  /** Zero bytes up to the next multiple of `alignment`. */
  pad(alignment: number): void {
    const n = (alignment - (this.written % alignment)) % alignment;
    if (n > 0) this.write(new Uint8Array(n));
  }

  commit(): void {
    closeSync(this.fd);
    this.fd = -1;
    renameSync(this.tmp, this.path);
  }

  abort(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    rmSync(this.tmp, { force: true });
  }
}

/** Runs fn on a new OutFile and commits it; on any error the partial file is removed. */
export function writeFileAtomically(path: string, fn: (f: OutFile) => void): void {
  const f = new OutFile(path);
  try {
    fn(f);
    f.commit();
  } catch (e) {
    f.abort();
    throw e;
  }
}

export type FloatOut = 'F32' | 'BF16' | 'F16';

export const FLOAT_BYTES: Record<FloatOut, number> = { F32: 4, BF16: 2, F16: 2 };

/** The little-endian bytes of an f32 tensor's values in the given float type (round to nearest even); F32 is a view. */
export function floatBytes(t: Tensor, type: FloatOut): Uint8Array {
  const v = t.as('f32');
  if (type === 'F32') return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (type === 'BF16') {
    const b = cast(t, 'bf16');
    const bits = b.as('bf16');
    const out = new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength).slice();
    b.dispose();
    return out;
  }
  return encodeF16(v);
}
