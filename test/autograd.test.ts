// Composed gradients: central finite differences of a real decoder's loss against the tape's
// gradients (LoRA weights of every kind of layer, through attention, RoPE, norms, SwiGLU, the fused
// head + cross-entropy, with and without activation checkpointing, whole layers or halves); and the
// fused head against the plain head + cross-entropy.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backward, clearTape, noGrad } from '../src/autograd/tape.js';
import { kernel, registerKernel, type KernelName } from '../src/backend/kernels.js';
import { loadModel } from '../src/models/load.js';
import type { ForwardOptions } from '../src/models/llama.js';
import { crossEntropy } from '../src/ops/cross-entropy.js';
import { linearCrossEntropy } from '../src/ops/linear-cross-entropy.js';
import { linear } from '../src/ops/matmul.js';
import { add, cast, scale } from '../src/ops/elementwise.js';
import { adapterParameters, addAdapter } from '../src/peft/adapters.js';
import { LORA_DEFAULTS, type LoraConfig } from '../src/peft/config.js';
import { padBatch, toDevice } from '../src/train/batching.js';
import { lossSum } from '../src/train/loss.js';
import { memoryStats, Tensor, tidy } from '../src/tensor/tensor.js';
import { assertClose, fixture, randn } from './helpers.js';

/** How many times the CPU kernel `name` runs while fn runs. */
function countCalls(name: KernelName, fn: () => void): number {
  const impl = kernel('cpu', name);
  let calls = 0;
  registerKernel('cpu', name, ((...args: unknown[]) => {
    calls++;
    return (impl as (...a: unknown[]) => void)(...args);
  }) as never);
  try {
    fn();
  } finally {
    registerKernel('cpu', name, impl as never);
  }
  return calls;
}

test('finite differences agree with backward through a whole decoder', async (t) => {
  const dir = fixture('models', 'qwen2');
  if (!dir) return t.skip('fixture missing: run scripts/reference/make-all.sh');
  const { model } = await loadModel(dir);
  try {
    addAdapter(model, 'default', { ...LORA_DEFAULTS, r: 3, alpha: 6, dropout: 0 }, 9);
    const params = adapterParameters(model, 'default');
    for (const [, p] of params) p.as('f32').set(Float32Array.from(randn(p.size, p.size, 0.05)));
    const ids = [5, 17, 33, 2, 80, 41, 9, 60, 11, 70, 3];
    const hb = padBatch([
      { ids, labels: ids },
      { ids: ids.slice(0, 6).reverse(), labels: [-100, -100, ...ids.slice(2, 6)] },
    ]);
    // Checkpointing recomputes each layer (or, with offloading, each half layer) without the last
    // projection's product: the gradients must not change.
    const modes: [string, ForwardOptions][] = [
      ['no checkpointing', {}],
      ['checkpointed layers', { checkpointing: true }],
      ['checkpointed halves', { checkpointing: true, offloadCheckpoints: true }],
    ];
    const lossOf = (opts: ForwardOptions, grad: boolean): number =>
      tidy(() => {
        const { batch, targets } = toDevice(hb);
        const l = lossSum(model, batch, targets, opts);
        const v = l.item();
        if (grad) backward(l);
        return v;
      });
    // Attention's forward runs once per layer, again in each layer's recompute, but not in a half
    // layer's recompute (it reuses the output it kept).
    const forwardsPerLayer: Record<string, number> = {
      'no checkpointing': 1,
      'checkpointed layers': 2,
      'checkpointed halves': 1,
    };
    let first: Float32Array[] | null = null;
    for (const [mode, opts] of modes) {
      const forwards = countCalls('attentionForward', () => lossOf(opts, true));
      assert.equal(forwards, forwardsPerLayer[mode] * model.layers.length, `${mode}: attention forwards`);
      const grads = params.map(([, p]) => p.grad!.toFloat32());
      first ??= grads;
      grads.forEach((g, k) => assertClose(g, first![k], 1e-5, `${mode}: ${params[k][0]}`));
      const eps = 1e-2;
      let checked = 0;
      for (const [k, [key, p]] of params.entries()) {
        if (!/layers\.1\.(self_attn\.(q|v|o)|mlp\.(gate|down))_proj\.lora_[AB]/.test(key)) continue;
        const w = p.as('f32');
        const g = grads[k];
        for (const i of [0, Math.floor(p.size / 2), p.size - 1]) {
          const orig = w[i];
          w[i] = orig + eps;
          const up = noGrad(() => lossOf(opts, false));
          w[i] = orig - eps;
          const down = noGrad(() => lossOf(opts, false));
          w[i] = orig;
          const fd = (up - down) / (2 * eps);
          assert.ok(
            Math.abs(fd - g[i]) < 2e-3 + 2e-2 * Math.abs(fd),
            `${key}[${i}] ${mode}: fd ${fd} vs ${g[i]}`,
          );
          checked++;
        }
      }
      assert.ok(checked >= 24);
      for (const [, p] of params) {
        p.grad?.dispose();
        p.grad = null;
      }
    }
  } finally {
    model.dispose();
  }
});

test('checkpointed layers and halves give the gradients of no checkpointing: plain, LoRA and NF4 layers', async (t) => {
  const dir = fixture('models', 'qwen2');
  if (!dir) return t.skip('fixture missing: run scripts/reference/make-all.sh');
  // q/v only: o and down are plain (or NF4) layers, whose products the recompute skips too.
  for (const quantize of [undefined, 'nf4'] as const)
    for (const targetModules of [
      'all-linear',
      ['q_proj', 'v_proj'],
    ] satisfies LoraConfig['targetModules'][]) {
      const { model } = await loadModel(dir, { quantize });
      try {
        addAdapter(model, 'default', { ...LORA_DEFAULTS, r: 3, alpha: 6, dropout: 0, targetModules }, 4);
        const params = adapterParameters(model, 'default');
        for (const [, p] of params) p.as('f32').set(Float32Array.from(randn(p.size, p.size + 1, 0.05)));
        const ids = [5, 17, 33, 2, 80, 41, 9, 60, 11, 70, 3];
        const hb = padBatch([{ ids, labels: ids }]);
        const grads = (opts: ForwardOptions): Float32Array[] => {
          tidy(() => {
            const { batch, targets } = toDevice(hb);
            backward(lossSum(model, batch, targets, opts));
          });
          return params.map(([, p]) => {
            const g = p.grad!.toFloat32();
            p.grad!.dispose();
            p.grad = null;
            return g;
          });
        };
        const plain = grads({});
        for (const opts of [{ checkpointing: true }, { checkpointing: true, offloadCheckpoints: true }])
          grads(opts).forEach((g, k) =>
            assertClose(
              g,
              plain[k],
              1e-5,
              `${quantize ?? 'f32'} ${String(targetModules)} ${JSON.stringify(opts)}: ${params[k][0]}`,
            ),
          );
      } finally {
        model.dispose();
      }
    }
});

test('fused head + cross-entropy equals head then cross-entropy (f32 and bf16 weights, ignored rows)', () => {
  const [N, D, V] = [37, 33, 513];
  const targets = Array.from({ length: N }, (_, i) => (i % 4 === 1 ? -100 : (i * 97) % V));
  for (const dtype of ['f32', 'bf16'] as const) {
    tidy(() => {
      const h1 = Tensor.from(randn(N * D, 1), [N, D]);
      const h2 = Tensor.from(randn(N * D, 1), [N, D]);
      h1.requiresGrad = h2.requiresGrad = true;
      const w32 = Tensor.from(randn(V * D, 2, 0.2), [V, D]);
      const w = dtype === 'bf16' ? cast(w32, 'bf16') : w32;
      const t = Tensor.from(targets, [N], 'i32');
      // One backward per tape: each clears what was recorded.
      const fused = linearCrossEntropy(h1, w, t);
      backward(fused);
      const plain = crossEntropy(linear(h2, w), t);
      backward(plain);
      assertClose([fused.item()], [plain.item()], 1e-5, `${dtype} loss`);
      assertClose(h1.grad!.toFloat32(), h2.grad!.toFloat32(), 1e-5, `${dtype} dh`);
      h1.dispose();
      h2.dispose();
    });
  }
});

test('add passes its output gradient on to both inputs; nothing shared is written in place', () => {
  tidy(() => {
    const x = Tensor.from(randn(29, 5), [29]);
    x.requiresGrad = true;
    const g = randn(29, 6);
    const gradRoot = Tensor.from(g, [29]);
    // x's first gradient is add's own output gradient, which scale's input also holds; scale's
    // gradient arrives second and is summed into it.
    backward(add(x, scale(x, 2)), gradRoot);
    assert.deepEqual(gradRoot.toFloat32(), Float32Array.from(g), "the caller's gradRoot is unchanged");
    assertClose(
      x.grad!.toFloat32(),
      Float32Array.from(g, (v) => 3 * v),
      1e-6,
      'dx',
    );
    // Two leaves given the same gradient get one each: a second backward adds into each once.
    const y = Tensor.from(randn(29, 7), [29]);
    y.requiresGrad = true;
    x.grad!.dispose();
    x.grad = null;
    for (let i = 0; i < 2; i++) backward(add(x, y), Tensor.from(g, [29]));
    assert.notEqual(x.grad, y.grad);
    for (const t of [x, y])
      assertClose(
        t.grad!.toFloat32(),
        Float32Array.from(g, (v) => 2 * v),
        1e-6,
        'two steps',
      );
  });
});

test('what checkpointed halves keep for their recompute is freed: after backward, without grad, and by clearTape', async (t) => {
  const dir = fixture('models', 'qwen2');
  if (!dir) return t.skip('fixture missing: run scripts/reference/make-all.sh');
  const { model } = await loadModel(dir);
  try {
    addAdapter(model, 'default', { ...LORA_DEFAULTS, r: 3, alpha: 6, dropout: 0 }, 5);
    const params = adapterParameters(model, 'default');
    const ids = [5, 17, 33, 2, 80, 41, 9];
    const hb = padBatch([{ ids, labels: ids }]);
    const opts: ForwardOptions = { checkpointing: true, offloadCheckpoints: true };
    const loss = (): Tensor => {
      const { batch, targets } = toDevice(hb);
      return lossSum(model, batch, targets, opts);
    };
    const runs = {
      'a step with backward': () =>
        tidy(() => {
          backward(loss());
          for (const [, p] of params) {
            p.grad?.dispose();
            p.grad = null;
          }
        }),
      'a forward without grad': () => noGrad(() => tidy(() => void loss())),
      'a recorded forward dropped by clearTape': () =>
        tidy(() => {
          void loss();
          clearTape();
        }),
    };
    for (const [what, run] of Object.entries(runs)) {
      run();
      const before = memoryStats().liveBytes;
      for (let i = 0; i < 3; i++) run();
      assert.equal(memoryStats().liveBytes, before, what);
    }
  } finally {
    model.dispose();
  }
});
