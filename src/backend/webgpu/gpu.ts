/// <reference types="@webgpu/types" />
// The WebGPU device lorakit computes on: the page's navigator.gpu in a browser, Dawn through the
// `webgpu` npm package (an optional dependency) in Node. Getting an adapter and a device is
// asynchronous, so `prepareWebGpu()` runs once before the first webgpu tensor; everything after that
// (allocating, enqueuing kernels) is synchronous, and only reading values back waits.

/** The device and what was asked of it. */
export interface WebGpu {
  readonly device: GPUDevice;
  /** The adapter's vendor, architecture and description, for bench headers and `lorakit info`. */
  readonly adapter: string;
  /** Whether shaders may use f16 (the adapter has 'shader-f16'). */
  readonly f16: boolean;
}

let ready: WebGpu | null = null;
let preparing: Promise<WebGpu> | null = null;
let lostReason: string | null = null;

async function gpuApi(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  // Outside Node (a page, a worker) there is no npm package to fall back on.
  const node = (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;
  if (node === undefined)
    throw new Error(
      'lorakit: this browser has no WebGPU (navigator.gpu is missing): use one with WebGPU enabled, on a page served over https or from localhost.',
    );
  let mod: { create(options: string[]): GPU };
  try {
    mod = (await import('webgpu')) as unknown as { create(options: string[]): GPU };
  } catch {
    throw new Error(
      "lorakit: --device webgpu needs the 'webgpu' npm package in Node (npm install webgpu); it could not be loaded.",
    );
  }
  return mod.create([]);
}

/**
 * Opens the WebGPU device (once; later calls return the same one). Throws one sentence when there is
 * no adapter: in Node on Linux that means no Vulkan driver (a GPU's, or Mesa's software lavapipe).
 */
export function prepareWebGpu(): Promise<WebGpu> {
  if (ready) return Promise.resolve(ready);
  preparing ??= open().then(
    (g) => (ready = g),
    (e: unknown) => {
      preparing = null;
      throw e;
    },
  );
  return preparing;
}

// Dawn's instance must outlive its devices: dropping the GPU object lets the collector destroy the
// instance under a live device (memory corruption in Node), so it is held here for good.
let instance: GPU | null = null;

async function open(): Promise<WebGpu> {
  const gpu = (instance ??= await gpuApi());
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter)
    throw new Error(
      'lorakit: --device webgpu found no WebGPU adapter (on Linux: install a Vulkan driver, e.g. mesa-vulkan-drivers 24 or newer).',
    );
  const f16 = adapter.features.has('shader-f16');
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: f16 ? ['shader-f16'] : [],
    // The largest buffers and bindings the adapter allows: model weights are big.
    requiredLimits: {
      maxBufferSize: l.maxBufferSize,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
    },
  });
  void device.lost.then((info) => {
    lostReason = info.message || info.reason;
  });
  device.onuncapturederror = (ev) => {
    lostReason ??= ev.error.message;
  };
  const info = adapter.info;
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ');
  return { device, adapter: name || 'unknown adapter', f16 };
}

/** The prepared device; throws one sentence when prepareWebGpu() has not finished (or the device was lost). */
export function webGpu(): WebGpu {
  if (lostReason !== null) throw new Error(`lorakit: the WebGPU device failed: ${lostReason}.`);
  if (!ready)
    throw new Error(
      "lorakit: the WebGPU device is not open yet; await prepareDevice('webgpu') before making webgpu tensors.",
    );
  return ready;
}
