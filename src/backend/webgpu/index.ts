// The WebGPU backend: WGSL compute shaders behind the op table, in a browser (navigator.gpu) or in
// Node through Dawn (the `webgpu` package). The device opens asynchronously: prepareDevice('webgpu')
// first; then kernels enqueue synchronously, and values come back with toFloat32Async().
import type { Backend } from '../kernels.js';
import { registerWebGpuTensors } from './device.js';
import { dropoutKernels } from './dropout.js';
import { argmaxKernels } from './argmax.js';
import { attentionKernels } from './attention.js';
import { crossEntropyKernels } from './cross-entropy.js';
import { doraKernels } from './dora.js';
import { elementwiseKernels } from './elementwise.js';
import { embeddingKernels } from './embedding.js';
import { webGpu } from './gpu.js';
import { loraSegmentsKernels } from './lora-segments.js';
import { normKernels } from './norms.js';
import { optimKernels } from './optim.js';
import { quantLinearKernels } from './quant-linear.js';
import { matmulKernels } from './matmul.js';

export const webGpuBackend: Backend = {
  label: 'WebGPU device',
  floatDTypes: ['f32'],
  activationDType: 'f32',
  kernels: () => {
    webGpu(); // throws one sentence until prepareWebGpu() has finished
    registerWebGpuTensors();
    return {
      ...argmaxKernels,
      ...elementwiseKernels,
      ...normKernels,
      ...embeddingKernels,
      ...dropoutKernels,
      ...optimKernels,
      ...quantLinearKernels,
      ...loraSegmentsKernels,
      ...matmulKernels,
      ...attentionKernels,
      ...crossEntropyKernels,
      ...doraKernels,
    };
  },
};
