// lorakit generation (decoding) speed on one GPU, next to transformers (+ bitsandbytes) measured by
// bench/gpu/generate_torch.py in the same session (its JSON lines are read from --baselines). Random
// weights with the real shapes of Llama-3.2-1B and Llama-3.1-8B, bf16 or NF4 + double quantization
// (block 64, bf16 compute; the head stays bf16), batch 1, greedy, a KV cache: a prompt of --prompt
// random ids, then --tokens new ones. Decoding tokens/s excludes the prompt: (tokens − 1) / (time of
// the whole run − time of a run that makes one token). "weights GB/s" is the bytes of every linear
// weight (the head included) a decoding step reads, times the steps per second.
//   node --import tsx bench/gpu/generate-gpu.ts [--shapes llama-3.2-1b,llama-3.1-8b] [--modes bf16,nf4]
//        [--prompt 32] [--tokens 128] [--baselines file.jsonl]
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { cudaAddon } from '../../src/backend/cuda/addon.js';
import { useDevice } from '../../src/backend/device.js';
import { generateIds } from '../../src/infer/generate.js';
import { GREEDY, Sampler } from '../../src/infer/sampling.js';
import { parseModelConfig } from '../../src/models/config.js';
import type { CausalLM } from '../../src/models/llama.js';
import { QuantizedWeight } from '../../src/quant/weight.js';
import { freeRandomSources, randomModel, SHAPES } from './random-model.js';

const { values: args } = parseArgs({
  options: {
    shapes: { type: 'string', default: 'llama-3.2-1b,llama-3.1-8b' },
    modes: { type: 'string', default: 'bf16,nf4' },
    prompt: { type: 'string', default: '32' },
    tokens: { type: 'string', default: '128' },
    baselines: { type: 'string' },
  },
});

/** Bytes of every linear weight (head included) as stored: what one decoding step reads. */
function weightBytes(model: CausalLM): number {
  let bytes = 0;
  for (const l of [...model.layers.flatMap((layer) => layer.linears()), model.lmHead]) {
    const w = l.weight;
    if (w instanceof QuantizedWeight) {
      bytes += w.data.byteLength + (w.absmax?.byteLength ?? 0);
      if (w.nested) bytes += w.nested.qabsmax.byteLength + w.nested.absmax2.byteLength;
    } else bytes += w.byteLength;
  }
  return bytes;
}

function runOne(shape: string, mode: string): Record<string, unknown> {
  const config = parseModelConfig(SHAPES[shape], shape);
  const model = randomModel(config, mode === 'nf4');
  freeRandomSources();
  const promptLen = Number(args.prompt);
  const tokens = Number(args.tokens);
  let s = 7;
  const prompt = Array.from({ length: promptLen }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s % config.vocabSize;
  });
  const run = (n: number): number => {
    const t0 = performance.now();
    const { tokenIds } = generateIds(model, prompt, {
      maxNewTokens: n,
      sampler: new Sampler(GREEDY),
      eos: new Set(),
    });
    cudaAddon()!.synchronize();
    if (tokenIds.length !== n) throw new Error(`made ${tokenIds.length} tokens, not ${n}`);
    return performance.now() - t0;
  };
  try {
    run(8); // warm-up: kernels loaded, allocator primed
    const first = Math.min(run(1), run(1));
    const all = Math.min(run(tokens), run(tokens));
    const perToken = (all - first) / (tokens - 1);
    const bytes = weightBytes(model);
    return {
      impl: 'lorakit',
      shape,
      mode,
      prompt: promptLen,
      tokens,
      decode_tokens_per_s: 1000 / perToken,
      first_token_ms: first,
      weight_gib: bytes / 2 ** 30,
      weights_gb_s: bytes / 1e9 / (perToken / 1000),
      device: cudaAddon()!.deviceName(),
    };
  } finally {
    model.dispose();
  }
}

function table(rows: Record<string, unknown>[]): void {
  const num = (v: unknown, d = 0) => (typeof v === 'number' ? v.toFixed(d) : '-');
  console.log(
    '\n| shape | mode | impl | decode tokens/s | first token ms | weights GiB | weights GB/s | lorakit ÷ this |',
  );
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const ours = rows.find((o) => o.impl === 'lorakit' && o.shape === r.shape && o.mode === r.mode);
    const ratio =
      typeof ours?.decode_tokens_per_s === 'number' && typeof r.decode_tokens_per_s === 'number'
        ? `${(ours.decode_tokens_per_s / r.decode_tokens_per_s).toFixed(2)}×`
        : '-';
    console.log(
      `| ${String(r.shape)} | ${String(r.mode)} | ${String(r.impl)} | ${r.error ? `error: ${String(r.error).slice(0, 80)}` : num(r.decode_tokens_per_s, 1)} | ${num(r.first_token_ms, 1)} | ${num(r.weight_gib, 2)} | ${num(r.weights_gb_s)} | ${ratio} |`,
    );
  }
}

useDevice('cuda');
const rows: Record<string, unknown>[] = [];
for (const shape of args.shapes!.split(','))
  for (const mode of args.modes!.split(',')) {
    let row: Record<string, unknown>;
    try {
      row = runOne(shape, mode);
    } catch (e) {
      row = { impl: 'lorakit', shape, mode, error: (e as Error).message };
      process.exitCode = 1;
    }
    console.log(JSON.stringify(row));
    rows.push(row);
  }
if (args.baselines && existsSync(args.baselines))
  for (const l of readFileSync(args.baselines, 'utf8').split('\n'))
    if (l.trim().startsWith('{')) rows.push(JSON.parse(l) as Record<string, unknown>);
table(rows);
