// The example page: pick a model and a JSONL file, train a LoRA adapter on WebGPU with a live loss
// plot, generate with it, and download it as PEFT files. Bundled with the library (src/browser.ts)
// by `npm run build:example` into dist/main.js; everything runs in the page, nothing is uploaded.
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  LORA_DEFAULTS,
  Optimizer,
  accumulateGradients,
  adapterFiles,
  adapterParameters,
  addAdapter,
  clearTape,
  deleteAdapter,
  evaluate,
  fetchModelFiles,
  generateAsync,
  learningRate,
  loadDataFromText,
  loadModelFromBytes,
  padBatch,
  prepareDevice,
  readModelFiles,
  targetCount,
  updateWeights,
  type AdapterFiles,
  type Example,
  type GenerateOptions,
  type LoadedModel,
  type ModelFiles,
} from '../../src/browser.js';
import { LossPlot } from './loss-plot.js';

const ADAPTER = 'default';
const SEED = 42;

function element<T extends HTMLElement>(id: string, type: { new (): T; prototype: T }): T {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`the page has no <${type.name}> #${id}.`);
  return el;
}

const ui = {
  status: element('status', HTMLParagraphElement),
  modelFiles: element('model-files', HTMLInputElement),
  modelUrl: element('model-url', HTMLInputElement),
  modelFetch: element('model-fetch', HTMLButtonElement),
  dataFile: element('data-file', HTMLInputElement),
  rank: element('rank', HTMLInputElement),
  alpha: element('alpha', HTMLInputElement),
  lr: element('lr', HTMLInputElement),
  steps: element('steps', HTMLInputElement),
  batchSize: element('batch-size', HTMLInputElement),
  maxSeqLen: element('max-seq-len', HTMLInputElement),
  completionOnly: element('completion-only', HTMLInputElement),
  train: element('train', HTMLButtonElement),
  stop: element('stop', HTMLButtonElement),
  plot: element('plot', HTMLDivElement),
  stepsLog: element('steps-log', HTMLTableSectionElement),
  evalLoss: element('eval-loss', HTMLOutputElement),
  prompt: element('prompt', HTMLTextAreaElement),
  maxNewTokens: element('max-new-tokens', HTMLInputElement),
  temperature: element('temperature', HTMLInputElement),
  asChat: element('as-chat', HTMLInputElement),
  generate: element('generate', HTMLButtonElement),
  output: element('output', HTMLPreElement),
  downloadWeights: element('download-weights', HTMLButtonElement),
  downloadConfig: element('download-config', HTMLButtonElement),
};

/** idle: waiting for the user; busy: loading, training or generating; error: the last action failed. */
type State = 'idle' | 'busy' | 'error';

let loaded: LoadedModel | null = null;
let trained = false;
let stopRequested = false;
const plot = new LossPlot(ui.plot);

function show(message: string, state: State): void {
  ui.status.textContent = message;
  ui.status.dataset.state = state;
  ui.status.classList.toggle('error', state === 'error');
  enableButtons(state === 'busy');
}

/** Buttons work when nothing is running and what they need is there. */
function enableButtons(busy: boolean): void {
  for (const b of [ui.modelFetch, ui.modelFiles, ui.dataFile]) b.disabled = busy;
  ui.train.disabled = busy || !loaded || !ui.dataFile.files?.length;
  ui.generate.disabled = busy || !loaded;
  ui.downloadWeights.disabled = ui.downloadConfig.disabled = busy || !trained;
}

/** Runs one user action, showing its failure (one sentence) in the status line. */
async function action(work: () => Promise<string>): Promise<void> {
  try {
    show(await work(), 'idle');
  } catch (e) {
    show((e instanceof Error ? e.message : String(e)).replace(/^lorakit: /, ''), 'error');
  }
}

/** A setting's number, refused in one sentence naming the field when it is not one. */
function setting(input: HTMLInputElement, name: string, kind: 'integer' | 'number'): number {
  const v = Number(input.value);
  const ok =
    kind === 'integer' ? Number.isInteger(v) && v >= Number(input.min) : Number.isFinite(v) && v >= 0;
  if (input.value.trim() === '' || !ok)
    throw new Error(
      `${name} must be ${kind === 'integer' ? `a whole number of at least ${input.min}` : 'a number of at least 0'}, not '${input.value}'.`,
    );
  return v;
}

async function useModel(files: ModelFiles): Promise<string> {
  show('Loading the model…', 'busy');
  loaded?.model.dispose();
  loaded = null;
  trained = false;
  loaded = await loadModelFromBytes(files, { device: 'webgpu', dtype: 'float32' });
  const c = loaded.model.config;
  ui.asChat.checked = loaded.tokenizer.chatTemplate !== null;
  return `Model loaded: ${loaded.path} (${c.numLayers} layers, hidden ${c.hiddenSize}, vocabulary ${c.vocabSize}).`;
}

/** The batch of optimizer step `step`: the file's rows in order, round and round. */
function batchAt(examples: readonly Example[], step: number, size: number): Example[] {
  const n = Math.min(size, examples.length);
  return Array.from({ length: n }, (_, i) => examples[(step * n + i) % examples.length]);
}

/** A row of the steps table; data-loss keeps the loss unrounded. */
function logStep(step: number, loss: number, lr: number, gradNorm: number, seconds: number): void {
  const row = ui.stepsLog.insertRow();
  row.dataset.loss = String(loss);
  for (const v of [
    String(step),
    loss.toFixed(4),
    lr.toExponential(2),
    gradNorm.toFixed(3),
    seconds.toFixed(2),
  ])
    row.insertCell().textContent = v;
}

async function train(): Promise<string> {
  const m = loaded;
  const file = ui.dataFile.files?.[0];
  if (!m || !file) throw new Error('choose a model and a data file first.');
  const r = setting(ui.rank, 'rank', 'integer');
  const alpha = setting(ui.alpha, 'alpha', 'number');
  const lr = setting(ui.lr, 'learning rate', 'number');
  const steps = setting(ui.steps, 'steps', 'integer');
  const batchSize = setting(ui.batchSize, 'batch size', 'integer');
  const maxSeqLen = setting(ui.maxSeqLen, 'max seq len', 'integer');
  show(`Reading ${file.name}…`, 'busy');
  const data = await loadDataFromText(await file.text(), file.name, m.tokenizer, {
    completionOnly: ui.completionOnly.checked,
    maxSeqLen,
    vocabSize: m.model.config.vocabSize,
  });
  const { model } = m;
  if (model.adapterConfigs.has(ADAPTER)) deleteAdapter(model, ADAPTER);
  trained = false;
  addAdapter(model, ADAPTER, { ...LORA_DEFAULTS, r, alpha, baseModel: m.path }, SEED);
  const params = adapterParameters(model, ADAPTER);
  const optimizer = new Optimizer(params, { name: 'adamw', weightDecay: 0 });
  const schedule = { name: 'linear' as const, baseLr: lr, warmupSteps: 0, totalSteps: steps };
  plot.clear();
  ui.stepsLog.replaceChildren();
  ui.evalLoss.textContent = '–';
  delete ui.evalLoss.dataset.value;
  stopRequested = false;
  ui.stop.disabled = false;
  let done = 0;
  try {
    for (let step = 0; step < steps && !stopRequested; step++) {
      const start = performance.now();
      const micro = [padBatch(batchAt(data.examples, step, batchSize))];
      const count = targetCount(micro);
      const ctx = { adapter: ADAPTER, seed: SEED, step, checkpointing: false, offloadCheckpoints: false };
      const sum = await accumulateGradients(model, micro, ctx, count);
      const rate = learningRate(schedule, step);
      const gradNorm = await updateWeights(
        optimizer,
        params.map(([, t]) => t),
        rate,
        1.0,
      );
      done = step + 1;
      const loss = sum / count;
      plot.add(done, loss);
      logStep(done, loss, rate, gradNorm, (performance.now() - start) / 1000);
      show(`Training: step ${done} of ${steps}, loss ${loss.toFixed(4)}.`, 'busy');
    }
  } finally {
    ui.stop.disabled = true;
    clearTape();
    optimizer.zeroGrad();
    optimizer.dispose();
  }
  show('Evaluating…', 'busy');
  const ev = await evaluate(model, data.examples, batchSize);
  ui.evalLoss.textContent = `${ev.loss.toFixed(4)} over ${ev.tokens} tokens`;
  ui.evalLoss.dataset.value = String(ev.loss);
  trained = true;
  const cut = data.truncated > 0 ? ` ${data.truncated} rows longer than ${maxSeqLen} tokens were cut.` : '';
  return `Trained ${done} steps on ${data.examples.length} rows of ${file.name} (${data.format}); eval loss ${ev.loss.toFixed(4)}.${cut}`;
}

async function generate(): Promise<string> {
  const m = loaded;
  if (!m) throw new Error('choose a model first.');
  const maxNewTokens = setting(ui.maxNewTokens, 'max new tokens', 'integer');
  const temperature = setting(ui.temperature, 'temperature', 'number');
  const text = ui.prompt.value;
  const input: GenerateOptions = ui.asChat.checked
    ? { messages: [{ role: 'user', content: text }] }
    : { prompt: text };
  show('Generating…', 'busy');
  ui.output.textContent = '';
  const r = await generateAsync(m.model, m.tokenizer, {
    ...input,
    maxNewTokens,
    temperature,
    seed: SEED,
    onToken: (piece) => ui.output.append(piece),
  });
  const using = m.model.activeAdapter ? 'with the adapter' : 'with the base model';
  return `Generated ${r.tokenIds.length} tokens ${using} (${r.finishReason === 'stop' ? 'it ended the reply' : 'the length limit'}).`;
}

async function download(name: keyof AdapterFiles): Promise<string> {
  if (!loaded || !trained) throw new Error('train an adapter first.');
  const files = await adapterFiles(loaded.model, ADAPTER);
  const content = files[name];
  const blob = new Blob([typeof content === 'string' ? content : content.slice()], {
    type: name === ADAPTER_CONFIG ? 'application/json' : 'application/octet-stream',
  });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  // Some browsers read the blob after click() returns: free it a while later.
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
  return `Downloaded ${name}.`;
}

ui.modelFiles.addEventListener('change', () => {
  const files = ui.modelFiles.files;
  if (files?.length) void action(async () => useModel(await readModelFiles(files)));
});
ui.modelFetch.addEventListener('click', () => {
  const url = ui.modelUrl.value.trim();
  void action(async () => {
    if (!url) throw new Error('enter a model URL first.');
    show(`Fetching ${url}…`, 'busy');
    return useModel(await fetchModelFiles(url));
  });
});
ui.dataFile.addEventListener('change', () => enableButtons(ui.status.dataset.state === 'busy'));
ui.train.addEventListener('click', () => void action(train));
ui.stop.addEventListener('click', () => {
  stopRequested = true;
  ui.stop.disabled = true;
});
ui.generate.addEventListener('click', () => void action(generate));
ui.downloadWeights.addEventListener('click', () => void action(() => download(ADAPTER_WEIGHTS)));
ui.downloadConfig.addEventListener('click', () => void action(() => download(ADAPTER_CONFIG)));

void action(async () => {
  show('Opening WebGPU…', 'busy');
  await prepareDevice('webgpu');
  return 'WebGPU is ready: choose a model.';
});
