// QLoRA on SmolLM2-135M-Instruct (its Q4_1 GGUF dequantized to fp32 is the "unquantized" base):
//  1. bits per quantized parameter at NF4 + double quantization (and NF4, FP4, int8);
//  2. perplexity the base loses at NF4 / FP4 / int8 on TinyStories validation text (../shared/data);
//  3. peak native memory of QLoRA (NF4+DQ) vs LoRA training, same model, data and batch;
//  4. final eval loss of QLoRA vs LoRA after the same short run (Alpaca subset, same seed and settings).
// Usage: node --import tsx bench/qlora.ts [--ppl-rows 48] [--steps 30] [--batch-size 4] [--seq-len 128] [--eval-rows 48]
//        [--lr 2e-4] [--device cpu|cuda] [--skip-ppl]
// On cuda the "unquantized" base is stored in bf16 (the GPU's activation dtype). LORAKIT_SHARED_DATA
// points at ../shared/data elsewhere (a GPU machine).
import { describeCpuPath } from '../src/backend/cpu/addon.js';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseDevice } from '../src/backend/device.js';
import { loadModel, type LoadOptions } from '../src/models/load.js';
import { addAdapter } from '../src/peft/adapters.js';
import { LORA_DEFAULTS } from '../src/peft/config.js';
import { baseWeightBytes } from '../src/quant/weight.js';
import { memoryStats } from '../src/tensor/tensor.js';
import { loadData, type Example } from '../src/train/data.js';
import { evaluate } from '../src/train/evaluate.js';
import { train } from '../src/train/trainer.js';

const { values } = parseArgs({
  options: {
    'ppl-rows': { type: 'string', default: '48' },
    steps: { type: 'string', default: '30' },
    'batch-size': { type: 'string', default: '4' },
    'seq-len': { type: 'string', default: '128' },
    'eval-rows': { type: 'string', default: '48' },
    lr: { type: 'string', default: '2e-4' },
    device: { type: 'string', default: 'cpu' },
    'skip-ppl': { type: 'boolean', default: false },
  },
});
const root = new URL('..', import.meta.url).pathname;
const shared = join(process.env.LORAKIT_SHARED_DATA ?? join(root, '..', 'shared', 'data'), 'datasets');
const device = parseDevice(values.device!, '--device');
const gguf = execFileSync('bash', [join(root, 'scripts/fetch-smollm2.sh')], { encoding: 'utf8' }).trim();
const work = mkdtempSync(join(tmpdir(), 'lorakit-bench-qlora-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const T = Number(values['seq-len']);
const mib = (b: number) => (b / 2 ** 20).toFixed(1);
const log = (s: string) => process.stderr.write(`${s}\n`);

// Real text: TinyStories validation paragraphs (perplexity), Alpaca subset (training / eval).
const paras = readFileSync(join(shared, 'tinystories', 'tinystories_val.txt'), 'utf8')
  .split('\n\n')
  .map((p) => p.trim())
  .filter((p) => p.length > 200);
const pplFile = join(work, 'ppl.jsonl');
writeFileSync(
  pplFile,
  paras
    .slice(0, Number(values['ppl-rows']))
    .map((text) => JSON.stringify({ text }))
    .join('\n') + '\n',
);
const alpaca = JSON.parse(
  readFileSync(join(shared, 'alpaca_subset', 'alpaca_5000.json'), 'utf8'),
) as unknown[];
const trainFile = join(work, 'train.json');
const evalFile = join(work, 'eval.json');
const steps = Number(values.steps);
const B = Number(values['batch-size']);
// Rows 4000+ are held out for evaluation; longer runs take more epochs over the first 4000.
writeFileSync(trainFile, JSON.stringify(alpaca.slice(0, Math.min(steps * B, 4000))));
writeFileSync(evalFile, JSON.stringify(alpaca.slice(4000, 4000 + Number(values['eval-rows']))));

const variants: [string, LoadOptions][] = [
  ['fp32 (unquantized)', {}],
  ['int8', { quantize: 'int8' }],
  ['NF4', { quantize: 'nf4' }],
  ['NF4 + DQ', { quantize: 'nf4', doubleQuant: true }],
  ['FP4', { quantize: 'fp4' }],
  ['FP4 + DQ', { quantize: 'fp4', doubleQuant: true }],
];

const rows: string[] = [];
let basePpl = 0;
for (const [name, opts] of values['skip-ppl'] ? [] : variants) {
  const t0 = performance.now();
  const { model, tokenizer } = await loadModel(gguf, { ...opts, device });
  try {
    const w = baseWeightBytes(model);
    const data = (await loadData(pplFile, tokenizer, { completionOnly: false, maxSeqLen: 512 })).examples;
    const r = await evaluate(model, data, 8);
    if (!opts.quantize) basePpl = r.perplexity;
    const bits = w.quantizedParams ? ((w.quantizedBytes * 8) / w.quantizedParams).toFixed(3) : '32';
    rows.push(
      `| ${name} | ${bits} | ${mib(w.quantizedParams ? w.quantizedBytes : w.bytes - model.embedTokens.size * 4 - (model.lmHead.weight === model.embedTokens ? 0 : model.lmHead.weight.size * 4))} | ${mib(w.bytes)} | ${r.loss.toFixed(4)} | ${r.perplexity.toFixed(3)} | ${opts.quantize ? `+${(((r.perplexity - basePpl) / basePpl) * 100).toFixed(2)}%` : '—'} | ${r.tokens} |`,
    );
    log(
      `${name}: ${bits} bits, ppl ${r.perplexity.toFixed(3)} (${((performance.now() - t0) / 1000).toFixed(0)} s)`,
    );
  } finally {
    model.dispose();
  }
}

async function finetune(
  name: string,
  opts: LoadOptions,
): Promise<{ peak: number; evalLoss: number; before: number; seconds: number; baseBytes: number }> {
  const { model, tokenizer } = await loadModel(gguf, { ...opts, device });
  try {
    addAdapter(
      model,
      'default',
      { ...LORA_DEFAULTS, r: 16, alpha: 32, dropout: 0.05, targetModules: 'all-linear' },
      7,
    );
    const evalSet: Example[] = (await loadData(evalFile, tokenizer, { completionOnly: true, maxSeqLen: T }))
      .examples;
    const before = (await evaluate(model, evalSet, 8)).loss;
    memoryStats(true, device);
    const t0 = performance.now();
    const r = await train(model, tokenizer, {
      data: trainFile,
      maxSteps: steps,
      batchSize: B,
      lr: Number(values.lr),
      maxSeqLen: T,
      completionOnly: true,
      seed: 1,
      scheduler: 'linear',
      warmupSteps: 2,
      gradCheckpointing: true,
    });
    const seconds = (performance.now() - t0) / 1000;
    const peak = memoryStats(false, device).peakBytes;
    const evalLoss = (await evaluate(model, evalSet, 8)).loss;
    log(
      `${name}: eval loss ${before.toFixed(4)} -> ${evalLoss.toFixed(4)}, peak ${mib(peak)} MiB, ${seconds.toFixed(0)} s, ${r.steps} steps`,
    );
    return { peak, evalLoss, before, seconds, baseBytes: baseWeightBytes(model).bytes };
  } finally {
    model.dispose();
  }
}

const lora = await finetune(device === 'cpu' ? 'LoRA (fp32 base)' : 'LoRA (bf16 base)', {});
const qlora = await finetune('QLoRA (NF4 + DQ)', { quantize: 'nf4', doubleQuant: true });

const cpu = describeCpuPath();
console.log(
  `machine: ${cpu}, ${availableParallelism()} threads; model ${gguf.split('/').pop()} (dequantized to fp32 as the unquantized base)\n`,
);
console.log(
  '| base weights | bits / quantized param | decoder linears MiB | all base weights MiB | TinyStories loss | perplexity | vs fp32 | tokens |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) console.log(r);
console.log(
  `\nFine-tuning on ${device}: Alpaca subset, ${steps} steps × batch ${B}, max ${T} tokens, completion-only loss, r 16, alpha 32, dropout 0.05, all-linear, AdamW lr ${values.lr} (linear, 2 warm-up), activation checkpointing, seed 1; eval on ${values['eval-rows']} held-out rows.\n`,
);
console.log(
  '| run | base weights MiB | peak native memory in training MiB | eval loss before | eval loss after | time s |',
);
console.log('| --- | --- | --- | --- | --- | --- |');
for (const [name, r] of [
  [device === 'cpu' ? 'LoRA (fp32 base)' : 'LoRA (bf16 base)', lora],
  ['QLoRA (NF4 + DQ)', qlora],
] as const)
  console.log(
    `| ${name} | ${mib(r.baseBytes)} | ${mib(r.peak)} | ${r.before.toFixed(4)} | ${r.evalLoss.toFixed(4)} | ${r.seconds.toFixed(0)} |`,
  );
console.log(
  `\nQLoRA eval loss vs LoRA: ${(((qlora.evalLoss - lora.evalLoss) / lora.evalLoss) * 100).toFixed(2)}%; peak memory ratio ${(qlora.peak / lora.peak).toFixed(3)}.`,
);
