// The WebGPU backend against the CPU backend: the same op on the same inputs on both devices, outputs
// and gradients compared. WebGPU reads are asynchronous, so results are copied out of the tidy scope
// and read after it. Runs where a WebGPU adapter exists (in Node: the `webgpu` package over Vulkan,
// Mesa's lavapipe in CI); elsewhere the tests skip, naming why.
import { backward } from '../src/autograd/tape.js';
import { prepareDevice } from '../src/backend/device.js';
import { copy, mul, sum } from '../src/ops/elementwise.js';
import { keep, Tensor, tidy, type Device } from '../src/tensor/tensor.js';
import { assertClose, randn } from './helpers.js';

/**
 * Why WebGPU tests skip here, or false when a device opened. With LORAKIT_REQUIRE_WEBGPU=1 (CI) a
 * missing adapter fails instead of skipping.
 */
export const WEBGPU_SKIP: string | false = await prepareDevice('webgpu').then(
  () => false,
  (e: unknown) => {
    if (process.env.LORAKIT_REQUIRE_WEBGPU === '1') throw e;
    return e instanceof Error ? e.message : String(e);
  },
);

/** A random f32 CPU tensor. */
export function input(shape: number[], seed: number, std = 1): Tensor {
  return Tensor.from(
    randn(
      shape.reduce((a, b) => a * b, 1),
      seed,
      std,
    ),
    shape,
  );
}

/** Random i32 ids in [0, below) as a CPU tensor. */
export function ids(shape: number[], below: number, seed: number): Tensor {
  const r = randn(
    shape.reduce((a, b) => a * b, 1),
    seed,
  );
  return Tensor.from(
    Array.from(r, (v) => Math.floor(Math.abs(v * 1000)) % below),
    shape,
    'i32',
  );
}

export interface Input {
  t: Tensor;
  trainable?: boolean;
  /** Stored as bf16 on both devices (frozen weights). */
  bf16?: boolean;
}

function on(device: Device, i: Input): Tensor {
  let out: Tensor;
  if (i.bf16) {
    const host = Tensor.from(i.t.toFloat32(), i.t.shape, 'bf16');
    out = device === 'cpu' ? host : host.toDevice(device);
    if (out !== host) host.dispose();
  } else out = i.t.toDevice(device);
  out.requiresGrad = i.trainable === true;
  return out;
}

async function read(t: Tensor | null): Promise<Float32Array | null> {
  if (!t) return null;
  try {
    return await t.toFloat32Async();
  } finally {
    t.dispose();
  }
}

/**
 * Runs build on the CPU and on WebGPU with the same inputs, backpropagates Σ out·r from both (when any
 * input is trainable), and compares the outputs and every gradient.
 */
export async function compareWebGpu(
  what: string,
  inputs: Input[],
  build: (xs: Tensor[]) => Tensor,
  tol = 2e-5,
): Promise<void> {
  const run = async (device: Device): Promise<{ y: Float32Array; grads: (Float32Array | null)[] }> => {
    const kept = tidy(() => {
      const xs = inputs.map((i) => on(device, i));
      const y = build(xs);
      if (xs.some((x) => x.requiresGrad)) {
        const r = input(y.shape as number[], 99).toDevice(device);
        backward(sum(mul(y, r)));
      }
      return {
        y: keep(copy(y)),
        grads: xs.map((x) => (x.requiresGrad && x.grad ? keep(copy(x.grad)) : null)),
      };
    });
    return { y: (await read(kept.y))!, grads: await Promise.all(kept.grads.map(read)) };
  };
  const cpu = await run('cpu');
  const gpu = await run('webgpu');
  assertClose(gpu.y, cpu.y, tol, `${what}: output`);
  cpu.grads.forEach((g, i) => {
    if (g) assertClose(gpu.grads[i]!, g, tol, `${what}: gradient of input ${i}`);
  });
}
