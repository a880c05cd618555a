// The browser bundle's addon.ts: a page has no CUDA addon, so the CUDA device reports itself
// unavailable in one sentence. scripts/build-browser.mjs puts this file in addon.ts's place.
import type * as NodeAddon from './addon.js';
import type { CudaAddon } from './addon.js';

export type { CudaAddon, CudaDType, CudaKernelEntries } from './addon.js';

/** Element types as the CUDA addon numbers them (native/cuda/lorakit_cuda.h, lkc::DType). */
export const CUDA_DTYPE = { f32: 0, bf16: 1, i32: 2, u8: 3 } as const;

export function cudaAddon(): CudaAddon | null {
  return null;
}

export function cudaUnavailableReason(): string {
  return "CUDA needs lorakit's native addon in Node (in a browser use the 'webgpu' device)";
}

// The twin must export what addon.ts does, with the same types.
({ CUDA_DTYPE, cudaAddon, cudaUnavailableReason }) satisfies typeof NodeAddon;
