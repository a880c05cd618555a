// The bytes of a safetensors file, as the Python `safetensors` writer lays them out. Nothing here
// writes a file: safetensors.ts streams them to a path (Node), safetensorsBytes gives them whole (a
// browser's download).
import { DTYPE_BYTES, type DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { bytesOf } from './bytes.js';
import type { SafetensorsDType } from './safetensors-reader.js';

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

/** A safetensors file before its tensors' bytes: the header and the tensors in the order they follow it. */
export interface SafetensorsLayout {
  /** The 8-byte little-endian header length, then the JSON header padded with spaces to 8 bytes. */
  header: Uint8Array;
  tensors: Tensor[];
  /** The whole file's size. */
  byteLength: number;
}

/**
 * The layout of tensors (f32→F32, bf16→BF16, f16→F16, i32→I32, u8→U8) as the Python `safetensors`
 * writer makes it: ordered by dtype then name, header padded with spaces to 8 bytes, so that with at
 * most one metadata entry the file is byte-identical to `save_file`'s (Python orders several metadata
 * keys randomly; we sort them).
 */
export function safetensorsLayout(
  tensors: Readonly<Record<string, Tensor>>,
  metadata?: Readonly<Record<string, string>>,
): SafetensorsLayout {
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
    const bytes = e.t.size * DTYPE_BYTES[e.t.dtype];
    parts.push(
      `${JSON.stringify(e.name)}:{"dtype":"${e.dtype}","shape":[${e.t.shape.join(',')}],"data_offsets":[${offset},${offset + bytes}]}`,
    );
    offset += bytes;
  }
  const json = utf8(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.length / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  return { header, tensors: entries.map((e) => e.t), byteLength: header.length + offset };
}

/**
 * The file's bytes in order: the header, then each tensor's elements. A device tensor is copied to
 * the host one at a time (so the host never holds them all), and each chunk is valid only until the
 * next is asked for. On a device whose reads cannot block (WebGPU), pass host copies (hostCopies).
 */
export function* safetensorsChunks(layout: SafetensorsLayout): Generator<Uint8Array, void, undefined> {
  yield layout.header;
  for (const t of layout.tensors) {
    const host = t.device === 'cpu' ? t : t.toDevice('cpu');
    try {
      yield bytesOf(host.data());
    } finally {
      if (host !== t) host.dispose();
    }
  }
}

/** The whole safetensors file of these tensors, in memory (see safetensorsLayout and safetensorsChunks). */
export function safetensorsBytes(
  tensors: Readonly<Record<string, Tensor>>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const layout = safetensorsLayout(tensors, metadata);
  const out = new Uint8Array(layout.byteLength);
  let at = 0;
  for (const chunk of safetensorsChunks(layout)) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}
