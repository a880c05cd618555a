// Where one serving step's time goes on the GPU: the batch forward (src/serve/batch-forward.ts) over
// R decoding sequences of C cached positions each, rows spread over A adapters, without HTTP. Per row
// count it prints the wall time of a step, the GPU's busy time inside it (CUDA events around every
// kernel call), the kernel calls a step issues, and the host time spent picking tokens from what the
// step returned (greedy: ids picked on the device); wall ≫ GPU means the host is the bottleneck.
//   node --import tsx bench/gpu/serve-step.ts [--shape llama-3.2-1b] [--rows 1,16,64] [--adapters 1,64]
//        [--context 128] [--steps 10] [--nf4]
import { parseArgs } from 'node:util';
import { profileCuda } from '../../src/backend/cuda/profile.js';
import { useDevice } from '../../src/backend/device.js';
import { Sampler, GREEDY } from '../../src/infer/sampling.js';
import { parseModelConfig } from '../../src/models/config.js';
import { PagedKVCache, PagedSequence } from '../../src/models/paged-kv-cache.js';
import { addAdapter } from '../../src/peft/adapters.js';
import { LORA_DEFAULTS } from '../../src/peft/config.js';
import { BatchForward, type Span, type StepOutput } from '../../src/serve/batch-forward.js';
import { freeRandomSources, randomModel, SHAPES } from './random-model.js';

const { values: a } = parseArgs({
  options: {
    shape: { type: 'string', default: 'llama-3.2-1b' },
    rows: { type: 'string', default: '1,16,64' },
    adapters: { type: 'string', default: '1,64' },
    context: { type: 'string', default: '128' },
    steps: { type: 'string', default: '10' },
    nf4: { type: 'boolean', default: false },
  },
});

useDevice('cuda');
const config = parseModelConfig(SHAPES[a.shape!], a.shape!);
const model = randomModel(config, a.nf4 === true);
freeRandomSources();
const adapterCounts = a.adapters!.split(',').map(Number);
const RANKS = [8, 16, 32, 64];
for (let i = 0; i < Math.max(...adapterCounts); i++)
  addAdapter(model, `a${i}`, { ...LORA_DEFAULTS, r: RANKS[i % 4], alpha: 2 * RANKS[i % 4], dropout: 0 }, i);
model.activeAdapter = null;

const context = Number(a.context);
const steps = Number(a.steps);
const blockSize = 16;
const maxRows = Math.max(...a.rows!.split(',').map(Number));
const cache = new PagedKVCache(
  config,
  maxRows * Math.ceil((context + steps + 8) / blockSize),
  blockSize,
  'cuda',
  model.activationDType,
);
const forward = new BatchForward(model, cache);
const sampler = new Sampler(GREEDY);
// Greedy spans come back as ids picked on the device; a row of logits only where a span samples.
const pick = (o: StepOutput): number => (typeof o === 'number' ? o : sampler.next(o));
let s = 99;
const rand = (): number => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) % config.vocabSize;

console.log(
  `${a.shape} ${a.nf4 ? 'nf4' : 'bf16'}, context ${context}, ${steps} decode steps per row count; ms per step`,
);
console.log(
  '| rows | adapters | wall | GPU busy | GPU span | kernel calls | sampling (host) | top ops (GPU ms) |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const A of adapterCounts)
  for (const R of a.rows!.split(',').map(Number)) {
    const seqs = Array.from({ length: R }, () => new PagedSequence());
    const adapterOf = (i: number): string => `a${i % A}`;
    // Prefill every sequence in one step (its whole prompt), as the engine's first step would.
    for (const q of seqs) cache.reserve(q, context + steps + 2);
    const prefill: Span[] = seqs.map((seq, i) => ({
      seq,
      tokens: Array.from({ length: context }, rand),
      adapter: adapterOf(i),
      wantLogits: true,
      greedy: true,
    }));
    let next = forward.run(prefill).map(pick);
    const decode = (): Span[] =>
      seqs.map((seq, i) => ({
        seq,
        tokens: [next[i]],
        adapter: adapterOf(i),
        wantLogits: true,
        greedy: true,
      }));
    for (let w = 0; w < 2; w++) next = forward.run(decode()).map(pick);
    let wall = 0;
    let sampleMs = 0;
    const t0 = performance.now();
    for (let t = 0; t < steps; t++) {
      const logits = forward.run(decode());
      const ts = performance.now();
      next = logits.map(pick);
      sampleMs += performance.now() - ts;
    }
    wall = performance.now() - t0;
    const prof = profileCuda(() => forward.run(decode()));
    const busy = prof.ops.reduce((x, o) => x + o.ms, 0);
    const calls = prof.ops.reduce((x, o) => x + o.calls, 0);
    const top = prof.ops
      .slice(0, 5)
      .map((o) => `${o.op} ${o.ms.toFixed(2)}`)
      .join(', ');
    console.log(
      `| ${R} | ${A} | ${(wall / steps).toFixed(2)} | ${busy.toFixed(2)} | ${prof.spanMs.toFixed(2)} | ${calls} | ${(sampleMs / steps).toFixed(2)} | ${top} |`,
    );
    for (const q of seqs) cache.release(q);
  }
forward.dispose();
cache.dispose();
