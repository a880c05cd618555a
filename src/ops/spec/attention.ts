// Causal attention with grouped-query heads (GQA), padding and packed sequences, flash-attention style.
import { cpuCall, cu, cudaCall, cudaSize, host, input, num, op, out, type OpGroup } from './dsl.js';

const cpuSizes = [
  host.num('B'),
  host.num('Tq'),
  host.num('Tk'),
  host.num('Hq'),
  host.num('Hkv'),
  host.num('D'),
] as const;
const cudaSizes = [
  cu.dim('B'),
  cu.dim('Tq'),
  cu.dim('Tk'),
  cu.dim('Hq'),
  cu.dim('Hkv'),
  cu.dim('D'),
] as const;

export const attention = {
  ops: {
    /**
     * out[B, Tq, Hq, D], lse[B, Hq, Tq] = causal attention of q[B, Tq, Hq, D] over k, v[B, Tk, Hkv, D]
     * with segments[B, Tk] (i32, 0 = padding); lse is each row's logsumexp (-inf for padded rows).
     */
    attentionForward: op(
      out('out', 'float'),
      out('lse', 'f32'),
      input('q', 'float'),
      input('k', 'float'),
      input('v', 'float'),
      input('segments', 'i32'),
      num('scale'),
    ),
    /** dq, dk, dv from dout and what attentionForward saw and produced (q, k, v, segments, out, lse). */
    attentionBackward: op(
      out('dq', 'float'),
      out('dk', 'float'),
      out('dv', 'float'),
      input('dout', 'float'),
      input('q', 'float'),
      input('k', 'float'),
      input('v', 'float'),
      input('segments', 'i32'),
      input('out', 'float'),
      input('lse', 'f32'),
      num('scale'),
    ),
  },
  cpu: {
    attentionForwardF32: cpuCall(
      host.f32('out'),
      host.f32('lse'),
      host.f32('q'),
      host.f32('k'),
      host.f32('v'),
      host.i32('segments'),
      ...cpuSizes,
      host.num('scale'),
    ),
    attentionBackwardF32: cpuCall(
      host.f32('dq'),
      host.f32('dk'),
      host.f32('dv'),
      host.f32('dout'),
      host.f32('q'),
      host.f32('k'),
      host.f32('v'),
      host.i32('segments'),
      host.f32('out'),
      host.f32('lse'),
      ...cpuSizes,
      host.num('scale'),
    ),
  },
  cuda: {
    /**
     * q, out [B, Tq, Hq, D] and k, v [B, Tk, Hkv, D] of dtype t; i32 segments [B, Tk]; f32 lse [B, Hq, Tq].
     * bf16 with D 64 or 128 runs on tensor cores; f32 (exact fp32 math) and other D on CUDA cores.
     */
    attentionForward: cudaCall('lkc::attention_forward', [
      cu.ptr('out'),
      cu.ptr('lse', 'float'),
      cu.ptr('q'),
      cu.ptr('k'),
      cu.ptr('v'),
      cu.floatType('t'),
      cu.ptr('segments', 'int32_t'),
      ...cudaSizes,
      cu.f32('scale'),
    ]),
    attentionBackwardWorkspace: cudaSize('lkc::attention_backward_workspace', cudaSizes),
    /** dq, dk, dv, dout, out, q, k, v of dtype t (as attentionForward); workspace of attentionBackwardWorkspace bytes. */
    attentionBackward: cudaCall('lkc::attention_backward', [
      cu.ptr('dq'),
      cu.ptr('dk'),
      cu.ptr('dv'),
      cu.ptr('dout'),
      cu.ptr('out'),
      cu.ptr('q'),
      cu.ptr('k'),
      cu.ptr('v'),
      cu.floatType('t'),
      cu.ptr('lse', 'float'),
      cu.ptr('segments', 'int32_t'),
      ...cudaSizes,
      cu.f32('scale'),
      cu.ptr('workspace'),
    ]),
  },
} as const satisfies OpGroup;
