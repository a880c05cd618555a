// Every device lorakit computes on, by name: the one place that lists them (the next one, WebGPU or a
// second GPU, is one more entry here and one folder beside src/backend/cpu and src/backend/cuda).
import type { Device } from '../tensor/tensor.js';
import { cpuBackend } from './cpu/index.js';
import { cudaBackend } from './cuda/index.js';
import type { Backend } from './kernels.js';
import { webGpuBackend } from './webgpu/index.js';

export const BACKENDS: Record<Device, Backend> = {
  cpu: cpuBackend,
  cuda: cudaBackend,
  webgpu: webGpuBackend,
};
