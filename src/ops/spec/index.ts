// Every op lorakit's backends implement, one declaration each (see dsl.ts); one file per op group,
// as src/backend/<device>/ has one kernel file per group.
export { parameters, hostArity } from './dsl.js';
import { argmax } from './argmax.js';
import { attention } from './attention.js';
import { crossEntropy } from './cross-entropy.js';
import { decode } from './decode.js';
import { dora } from './dora.js';
import { dropout } from './dropout.js';
import { elementwise } from './elementwise.js';
import { embedding } from './embedding.js';
import { matmul } from './matmul.js';
import { optim } from './optim.js';
import { paged } from './paged-attention.js';
import { quantLinear } from './quant-linear.js';
import { rmsnorm } from './rmsnorm.js';
import { rope } from './rope.js';
import { swiglu } from './swiglu.js';
import { loraSegments } from './lora-segments.js';

/** Every op's declaration, by name. */
export const OPS = {
  ...argmax.ops,
  ...attention.ops,
  ...crossEntropy.ops,
  ...dora.ops,
  ...dropout.ops,
  ...elementwise.ops,
  ...embedding.ops,
  ...matmul.ops,
  ...optim.ops,
  ...paged.ops,
  ...quantLinear.ops,
  ...rmsnorm.ops,
  ...rope.ops,
  ...swiglu.ops,
  ...loraSegments.ops,
};

/** Every CPU addon entry point the CPU kernels call, by name. */
export const CPU_BINDINGS = {
  ...attention.cpu,
  ...crossEntropy.cpu,
  ...decode.cpu,
  ...dropout.cpu,
  ...elementwise.cpu,
  ...embedding.cpu,
  ...matmul.cpu,
  ...optim.cpu,
  ...paged.cpu,
  ...quantLinear.cpu,
  ...rmsnorm.cpu,
  ...rope.cpu,
  ...swiglu.cpu,
};

/** Every CUDA addon entry point the CUDA kernels call, by name (scripts/gen-bindings.mjs writes their wrappers). */
export const CUDA_BINDINGS = {
  ...argmax.cuda,
  ...attention.cuda,
  ...crossEntropy.cuda,
  ...dora.cuda,
  ...dropout.cuda,
  ...elementwise.cuda,
  ...embedding.cuda,
  ...matmul.cuda,
  ...optim.cuda,
  ...paged.cuda,
  ...quantLinear.cuda,
  ...rmsnorm.cuda,
  ...rope.cuda,
  ...swiglu.cuda,
  ...loraSegments.cuda,
};

export type Ops = typeof OPS;
export type CpuBindings = typeof CPU_BINDINGS;
export type CudaBindings = typeof CUDA_BINDINGS;
