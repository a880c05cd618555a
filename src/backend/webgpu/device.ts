/// <reference types="@webgpu/types" />
// The webgpu device for tensors: memory (storage.ts), host writes, asynchronous reads, clears and
// copies. WebGPU copies and clears take 4-byte aligned ranges; bf16 and u8 tensors start and end
// anywhere, so other ranges go through a kernel that rewrites whole 32-bit words.
import { registerDeviceBackend, Tensor, type Storage } from '../../tensor/tensor.js';
import { dispatch, linearGroups, type KernelSpec } from './kernel.js';
import { queue } from './queue.js';
import { allocate, GpuStorage, memoryStats } from './storage.js';

// dst bytes [dstByte, dstByte + n) = src bytes [srcByte, srcByte + n); one thread per destination word,
// keeping the word's bytes outside the range.
const COPY_BYTES: KernelSpec = {
  name: 'copyBytes',
  inputs: ['src'],
  outputs: ['dst'],
  params: ['dstByte:u32', 'srcByte:u32', 'n:u32'],
  source: /* wgsl */ `
fn srcByteAt(b: u32) -> u32 { return (ldw_src(b >> 2u) >> ((b & 3u) * 8u)) & 0xffu; }
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let w = (P.dstByte >> 2u) + (wid.x + wid.y * nwg.x) * 64u + li;
  let lo = w * 4u;
  if (lo >= P.dstByte + P.n) { return; }
  var v = ldw_dst(w);
  for (var k = 0u; k < 4u; k++) {
    let b = lo + k;
    if (b >= P.dstByte && b < P.dstByte + P.n) {
      let s = srcByteAt(P.srcByte + (b - P.dstByte));
      v = (v & ~(0xffu << (k * 8u))) | (s << (k * 8u));
    }
  }
  stw_dst(w, v);
}`,
};

// A tensor over a storage for one kernel call: holds its own reference, so disposing it frees nothing.
function wrap(s: Storage): Tensor {
  s.refs++;
  return new Tensor([s.bytes], 'u8', s);
}

function copyBytes(dst: Storage, dstByte: number, src: Storage, srcByte: number, n: number): void {
  if (n === 0) return;
  const d = wrap(dst);
  const s = wrap(src);
  try {
    const words = Math.ceil((dstByte + n) / 4) - Math.floor(dstByte / 4);
    dispatch(COPY_BYTES, { src: s, dst: d }, { dstByte, srcByte, n }, linearGroups(Math.ceil(words / 64)));
  } finally {
    d.dispose();
    s.dispose();
  }
}

const aligned = (...xs: number[]): boolean => xs.every((x) => x % 4 === 0);
const buf = (s: Storage): GPUBuffer => (s as GpuStorage).gpu;

function write(dst: Storage, off: number, src: Uint8Array): void {
  if (src.length === 0) return;
  if (aligned(off, src.length)) return queue.write(buf(dst), off, src);
  // Staged at the same alignment in a scratch buffer, then moved by the word kernel.
  const lead = off % 4;
  const padded = new Uint8Array(Math.ceil((lead + src.length) / 4) * 4);
  padded.set(src, lead);
  const scratch = allocate(padded.length);
  try {
    queue.write(scratch.gpu, 0, padded);
    copyBytes(dst, off, scratch, lead, src.length);
  } finally {
    scratch.free();
  }
}

async function readAsync(dst: Uint8Array, src: Storage, off: number): Promise<void> {
  const lo = Math.floor(off / 4) * 4;
  const hi = Math.ceil((off + dst.length) / 4) * 4;
  const bytes = await queue.read(buf(src), lo, hi - lo);
  dst.set(bytes.subarray(off - lo, off - lo + dst.length));
}

function copy(dst: Storage, dstOff: number, src: Storage, srcOff: number, bytes: number): void {
  if (bytes === 0) return;
  const same = buf(dst) === buf(src);
  const overlap = same && dstOff < srcOff + bytes && srcOff < dstOff + bytes;
  if (overlap) {
    const tmp = allocate(bytes);
    try {
      copy(tmp, 0, src, srcOff, bytes);
      copy(dst, dstOff, tmp, 0, bytes);
    } finally {
      tmp.free();
    }
    return;
  }
  if (!same && aligned(dstOff, srcOff, bytes))
    queue.commands().copyBufferToBuffer(buf(src), srcOff, buf(dst), dstOff, bytes);
  else copyBytes(dst, dstOff, src, srcOff, bytes);
}

function zero(dst: Storage, off: number, bytes: number): void {
  if (bytes === 0) return;
  if (aligned(off, bytes)) queue.commands().clearBuffer(buf(dst), off, bytes);
  else write(dst, off, new Uint8Array(bytes));
}

let registered = false;

/** Registers webgpu tensors (after prepareWebGpu()). */
export function registerWebGpuTensors(): void {
  if (registered) return;
  registerDeviceBackend('webgpu', {
    allocate,
    write,
    read: () => {
      throw new Error(
        'lorakit: WebGPU cannot wait for the GPU; read webgpu tensors with await tensor.toFloat32Async().',
      );
    },
    readAsync,
    zero,
    copy,
    memoryStats,
  });
  registered = true;
}
