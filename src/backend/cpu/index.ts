// The CPU backend: the C++ addon's kernels (native/cpu) behind the op table, always available in Node
// (in a browser there is no addon, and kernels() says so).
import type { Backend, KernelTable } from '../kernels.js';
import { CPU_ADDON_MISSING } from './addon.js';
import { argmaxKernels } from './argmax.js';
import { attentionKernels } from './attention.js';
import { crossEntropyKernels } from './cross-entropy.js';
import { doraKernels } from './dora.js';
import { dropoutKernels } from './dropout.js';
import { elementwiseKernels } from './elementwise.js';
import { embeddingKernels } from './embedding.js';
import { matmulKernels } from './matmul.js';
import { optimKernels } from './optim.js';
import { pagedAttentionKernels } from './paged-attention.js';
import { quantLinearKernels } from './quant-linear.js';
import { rmsnormKernels } from './rmsnorm.js';
import { ropeKernels } from './rope.js';
import { swigluKernels } from './swiglu.js';
import { loraSegmentsKernels } from './lora-segments.js';

// Every op has a CPU kernel: the CPU is the reference the other backends are tested against.
const kernels: KernelTable = {
  ...argmaxKernels,
  ...attentionKernels,
  ...crossEntropyKernels,
  ...doraKernels,
  ...dropoutKernels,
  ...elementwiseKernels,
  ...embeddingKernels,
  ...matmulKernels,
  ...optimKernels,
  ...pagedAttentionKernels,
  ...quantLinearKernels,
  ...rmsnormKernels,
  ...ropeKernels,
  ...swigluKernels,
  ...loraSegmentsKernels,
};

export const cpuBackend: Backend = {
  label: 'CPU',
  floatDTypes: ['f32'],
  activationDType: 'f32',
  kernels: () => {
    if (CPU_ADDON_MISSING !== null) throw new Error(CPU_ADDON_MISSING);
    return kernels;
  },
};
