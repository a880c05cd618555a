// The CUDA backend: native/cuda through its addon, registered on the first use of the device (the
// addon loads only when a GPU is asked for).
import type { Backend } from '../kernels.js';
import { argmaxKernels } from './argmax.js';
import { attentionKernels } from './attention.js';
import { crossEntropyKernels } from './cross-entropy.js';
import { offloadToHost, prefetchToDevice, useCuda } from './device.js';
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

export const cudaBackend: Backend = {
  label: 'GPU',
  floatDTypes: ['f32', 'bf16'],
  activationDType: 'bf16',
  kernels: () => {
    const cu = useCuda();
    return {
      ...argmaxKernels(cu),
      ...attentionKernels(cu),
      ...crossEntropyKernels(cu),
      ...doraKernels(cu),
      ...dropoutKernels(cu),
      ...elementwiseKernels(cu),
      ...embeddingKernels(cu),
      ...matmulKernels(cu),
      ...optimKernels(cu),
      ...pagedAttentionKernels(cu),
      ...quantLinearKernels(cu),
      ...rmsnormKernels(cu),
      ...ropeKernels(cu),
      ...swigluKernels(cu),
      ...loraSegmentsKernels(cu),
    };
  },
  offload: offloadToHost,
  prefetch: prefetchToDevice,
};
