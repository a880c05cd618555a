// WebGPU kernels of the optimizer ops (src/ops/spec/optim.ts), in place over f32 state, in the CPU's
// order of operations (native/cpu/optim.cc, torch.optim's single-tensor path):
//
//   AdamW  p *= 1 − lr·wd;  m = m + (1 − β1)·(g − m);  v = β2·v + (1 − β2)·g²
//          p += −(lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
//   SGD    d = g + wd·p;  with momentum buf = momentum·buf + d, d = buf;  p += −lr·d
//
// with the scalars formed in double and rounded to f32 once, as the CPU forms them. sumSquares (the
// clipping norm) sums on the device (gradNormSquaredTensor) and reads the one value back
// asynchronously: a reduction's kernel may return a promise.
import { Tensor } from '../../tensor/tensor.js';
import type { AdamWOptions } from '../../ops/spec/optim.js';
import type { Kernels } from '../kernels.js';
import { groups256, INDEX } from './elementwise.js';
import { dispatch, expectF32, type KernelSpec, linearGroups } from './kernel.js';

const ADAM_UPDATE = /* wgsl */ `
// One element's update; returns the new p (m and v are written here).
fn adam(e: u32) -> f32 {
  let g = ld_grad(e);
  let mo = ld_m(e);
  let p = ld_param(e) * P.decay;
  let m = mo + P.w1 * (g - mo);
  let v = ld_v(e) * P.b2 + P.w2 * (g * g);
  let denom = sqrt(v) / P.bc2Sqrt + P.eps;
  let pn = p + P.negStep * (m / denom);
  st_param(e, pn);
  st_m(e, m);
  st_v(e, v);
  return pn;
}`;

const ADAM_PARAMS = [
  'n:u32',
  'decay:f32',
  'w1:f32',
  'b2:f32',
  'w2:f32',
  'bc2Sqrt:f32',
  'negStep:f32',
  'eps:f32',
] as const;

const ADAMW: KernelSpec = {
  name: 'adamwStep',
  inputs: ['grad'],
  outputs: ['param', 'm', 'v'],
  params: [...ADAM_PARAMS],
  source: `${ADAM_UPDATE}
${INDEX}
  if (i >= P.n) { return; }
  _ = adam(i);
}`,
};

// With the bf16 compute copy: one thread per word of the copy (element e of the copy is half
// (P.copy_off + e) & 1 of word (P.copy_off + e) >> 1), updating the one or two elements it holds and
// writing the word whole, rounded to nearest even as castToBf16 (elementwise.ts) rounds.
const ADAMW_COPY: KernelSpec = {
  name: 'adamwStepCopy',
  inputs: ['grad'],
  outputs: ['param', 'm', 'v', 'copy'],
  params: [...ADAM_PARAMS],
  source: `${ADAM_UPDATE}
fn bf16Bits(f: f32) -> u32 {
  let u = bitcast<u32>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) { return (u >> 16u) | 0x40u; }
  return (u + 0x7fffu + ((u >> 16u) & 1u)) >> 16u;
}
${INDEX}
  let w = (P.copy_off >> 1u) + i;
  let first = w * 2u;
  if (first >= P.copy_off + P.n) { return; }
  var bits = ldw_copy(w);
  for (var h = 0u; h < 2u; h++) {
    let j = first + h;
    if (j >= P.copy_off && j < P.copy_off + P.n) {
      let pn = adam(j - P.copy_off);
      bits = (bits & ~(0xffffu << (h * 16u))) | (bf16Bits(pn) << (h * 16u));
    }
  }
  stw_copy(w, bits);
}`,
};

const SGD: KernelSpec = {
  name: 'sgdStep',
  inputs: ['grad'],
  outputs: ['param'],
  params: ['n:u32', 'negLr:f32', 'wd:f32'],
  source: `${INDEX}
  if (i >= P.n) { return; }
  let p = ld_param(i);
  var d = ld_grad(i);
  if (DECAYS) { d = d + P.wd * p; }
  st_param(i, p + P.negLr * d);
}`,
};

const SGD_MOMENTUM: KernelSpec = {
  name: 'sgdStepMomentum',
  inputs: ['grad'],
  outputs: ['param', 'buf'],
  params: ['n:u32', 'negLr:f32', 'wd:f32', 'momentum:f32'],
  source: `${INDEX}
  if (i >= P.n) { return; }
  let p = ld_param(i);
  var d = ld_grad(i);
  if (DECAYS) { d = d + P.wd * p; }
  d = ld_buf(i) * P.momentum + d;
  st_buf(i, d);
  st_param(i, p + P.negLr * d);
}`,
};

/** Elements one workgroup of SUM_SQUARES_PART sums (256 threads, 16 each). */
const PART_ELEMENTS = 4096;

// parts[P.parts_base + w] = Σ x² over elements [w·4096, (w + 1)·4096) of x: each thread a strided
// partial sum, then a tree in shared memory; fixed order, so the result is the same every run.
const SUM_SQUARES_PART: KernelSpec = {
  name: 'sumSquaresPart',
  inputs: ['x'],
  outputs: ['parts'],
  params: ['n:u32', 'base:u32', 'groups:u32'],
  source: `
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= P.groups) { return; }
  let lo = w * ${PART_ELEMENTS}u;
  let hi = min(P.n, lo + ${PART_ELEMENTS}u);
  var s = 0.0;
  for (var e = lo + li; e < hi; e += 256u) { let x = ld_x(e); s += x * x; }
  part[li] = s;
  workgroupBarrier();
  for (var k = 128u; k > 0u; k >>= 1u) {
    if (li < k) { part[li] += part[li + k]; }
    workgroupBarrier();
  }
  if (li == 0u) { st_parts(P.base + w, part[0]); }
}`,
};

// out[0] = Σ parts[0, n): one workgroup, strided partial sums, then a tree.
const SUM_PARTS: KernelSpec = {
  name: 'sumParts',
  inputs: ['parts'],
  outputs: ['out'],
  params: ['n:u32'],
  source: `
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  for (var e = li; e < P.n; e += 256u) { s += ld_parts(e); }
  part[li] = s;
  workgroupBarrier();
  for (var k = 128u; k > 0u; k >>= 1u) {
    if (li < k) { part[li] += part[li + k]; }
    workgroupBarrier();
  }
  if (li == 0u) { st_out(0u, part[0]); }
}`,
};

function adamScalars(o: AdamWOptions): Record<string, number> {
  // Formed in double and rounded to f32 once, as native/cpu/optim.cc forms them.
  const f = Math.fround;
  return {
    decay: o.weightDecay !== 0 ? f(1 - o.lr * o.weightDecay) : 1,
    w1: f(1 - o.beta1),
    b2: f(o.beta2),
    w2: f(1 - o.beta2),
    bc2Sqrt: f(Math.sqrt(1 - Math.pow(o.beta2, o.step))),
    negStep: f(-(o.lr / (1 - Math.pow(o.beta1, o.step)))),
    eps: f(o.eps),
  };
}

/**
 * Σ x² over all the tensors (f32), as a new f32 webgpu tensor of shape [] that stays on the device:
 * each tensor's 4096-element pieces summed into a scratch of partial sums, then those summed in one
 * workgroup, in a fixed order (no atomics). An empty list, or empty tensors, give 0.
 */
export function gradNormSquaredTensor(xs: readonly Tensor[]): Tensor {
  expectF32('gradNormSquared', ...xs);
  for (const x of xs)
    if (x.device !== 'webgpu')
      throw new Error(`lorakit: gradNormSquaredTensor takes webgpu tensors, got one on ${x.device}.`);
  const counts = xs.map((x) => Math.ceil(x.size / PART_ELEMENTS));
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return Tensor.zeros([], 'f32', 'webgpu');
  const out = Tensor.empty([], 'f32', 'webgpu');
  const parts = Tensor.empty([total], 'f32', 'webgpu');
  try {
    let base = 0;
    xs.forEach((x, k) => {
      if (counts[k] === 0) return;
      dispatch(
        SUM_SQUARES_PART,
        { x, parts },
        { n: x.size, base, groups: counts[k] },
        linearGroups(counts[k]),
      );
      base += counts[k];
    });
    dispatch(SUM_PARTS, { parts, out }, { n: total }, [1]);
  } finally {
    parts.dispose(); // its buffer is reused only by work recorded after these dispatches
  }
  return out;
}

export const optimKernels = {
  adamwStep: (slots, o) => {
    const scalars = adamScalars(o);
    for (const { param, m, v, grad, copy } of slots) {
      expectF32('adamwStep', param, m, v, grad);
      const n = param.size;
      if (n === 0) continue;
      if (!copy) {
        dispatch(ADAMW, { param, m, v, grad }, { n, ...scalars }, groups256(n));
        continue;
      }
      if (copy.dtype !== 'bf16')
        throw new Error(
          `lorakit: the WebGPU adamwStep kernel writes bf16 compute copies, got ${copy.dtype}.`,
        );
      dispatch(ADAMW_COPY, { param, m, v, grad, copy }, { n, ...scalars }, groups256(Math.ceil(n / 2) + 1));
    }
  },
  sgdStep: (param, buf, grad, lr, weightDecay, momentum) => {
    expectF32('sgdStep', param, buf, grad);
    const n = param.size;
    if (n === 0) return;
    const common = { n, negLr: Math.fround(-lr), wd: Math.fround(weightDecay) };
    const constants = { DECAYS: weightDecay !== 0 };
    if (buf) dispatch(SGD_MOMENTUM, { param, buf, grad }, { ...common, momentum }, groups256(n), constants);
    else dispatch(SGD, { param, grad }, common, groups256(n), constants);
  },
  sumSquares: async (xs) => {
    const total = gradNormSquaredTensor(xs);
    try {
      return (await total.toFloat32Async())[0];
    } finally {
      total.dispose();
    }
  },
} satisfies Kernels;
