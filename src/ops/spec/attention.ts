// Causal attention with grouped-query heads (GQA), padding and packed sequences, flash-attention style.
import { cuda, cudaSize, host, op, type OpGroup } from './dsl.js';

const sizes = 'B Tq Tk Hq Hkv D';
const dims = 'B:dim Tq:dim Tk:dim Hq:dim Hkv:dim D:dim';
const grads =
  'dq:ptr dk:ptr dv:ptr dout:ptr out:ptr q:ptr k:ptr v:ptr t:floatType lse:float* segments:int32_t*';

export const attention = {
  ops: {
    /**
     * out[B, Tq, Hq, D], lse[B, Hq, Tq] = causal attention of q[B, Tq, Hq, D] over k, v[B, Tk, Hkv, D]
     * with segments[B, Tk] (i32, 0 = padding); lse is each row's logsumexp (-inf for padded rows).
     */
    attentionForward: op('out:float lse:f32 = q:float k:float v:float segments:i32 scale'),
    /** dq, dk, dv from dout and what attentionForward saw and produced (q, k, v, segments, out, lse). */
    attentionBackward: op(
      'dq:float dk:float dv:float = dout:float q:float k:float v:float segments:i32 out:float lse:f32 scale',
    ),
  },
  cpu: {
    attentionForwardF32: host(`out:f32 lse:f32 q:f32 k:f32 v:f32 segments:i32 ${sizes} scale`),
    attentionBackwardF32: host(
      `dq:f32 dk:f32 dv:f32 dout:f32 q:f32 k:f32 v:f32 segments:i32 out:f32 lse:f32 ${sizes} scale`,
    ),
  },
  cuda: {
    /**
     * q, out [B, Tq, Hq, D] and k, v [B, Tk, Hkv, D] of dtype t; i32 segments [B, Tk]; f32 lse [B, Hq, Tq].
     * bf16 with D 64 or 128 runs on tensor cores; f32 (exact fp32 math) and other D on CUDA cores.
     */
    attentionForward: cuda(
      'lkc::attention_forward',
      `out:ptr lse:float* q:ptr k:ptr v:ptr t:floatType segments:int32_t* ${dims} scale:f32`,
    ),
    attentionBackwardWorkspace: cudaSize('lkc::attention_backward_workspace', dims),
    /** dq, dk, dv, dout, out, q, k, v of dtype t (as attentionForward); workspace of attentionBackwardWorkspace bytes. */
    attentionBackward: cuda('lkc::attention_backward', `${grads} ${dims} scale:f32 workspace:ptr`),
  },
} as const satisfies OpGroup;
