// lorakit in a web page: the library API that works without Node, bundled by `npm run build:browser`
// into dist/browser/lorakit.js. Models and tokenizers come from files' bytes (fetchModelFiles,
// readModelFiles, loadModelFromBytes), tensors compute on the 'webgpu' device (the page's
// navigator.gpu; await prepareDevice('webgpu') first), and host memory is plain ArrayBuffers.
// Training data comes from a JSONL file's text (loadDataFromText), adapters leave and return as PEFT
// files in memory (adapterFiles, adapterFromFiles), and generation reads back without blocking
// (generateAsync). Only browser-safe modules are imported from here: what reads or writes files by
// path stays with the Node entry (src/index.ts), and scripts/build-browser.ts fails the build if a
// Node module is reached.
export { Tensor, tidy, keep, memoryStats, type Device } from './tensor/tensor.js';
export type { DType } from './tensor/dtype.js';
export { backward, noGrad, checkpoint, clearTape } from './autograd/tape.js';
export { prepareDevice, useDevice, activationDType, floatDTypes } from './backend/device.js';
export {
  fetchModelFiles,
  loadModelFromBytes,
  loadModelFromBytesOptionalTokenizer,
  readModelFiles,
  type BytesLoadOptions,
  type LoadedModel,
  type LoadOptions,
  type ModelFiles,
  type NamedBlob,
} from './models/load-bytes.js';
export { CausalLM, type Batch } from './models/llama.js';
export { modelConfigFromJSON, parseModelConfig, type ModelConfig } from './models/config.js';
export { Tokenizer, type TokenizerFiles } from './tokenizer/tokenizer.js';
export { renderChat } from './tokenizer/chat-template.js';
export { LORA_DEFAULTS, loraScale, peftConfigFromJSON, type LoraConfig } from './peft/lora-config.js';
export { addAdapter, deleteAdapter, setActiveAdapter, adapterParameters } from './peft/inject.js';
export {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  adapterFiles,
  adapterFromFiles,
  type AdapterFileContents,
  type AdapterFiles,
} from './peft/peft-files.js';
export { IGNORE, type Example } from './train/example.js';
export {
  loadDataFromText,
  type ChatMessage,
  type ColumnMap,
  type DataOptions,
  type LoadedData,
  type RowFormat,
} from './train/data-rows.js';
export { padBatch, packBatches, toDevice, type HostBatch } from './train/batching.js';
export { lossSum } from './train/loss.js';
export { evaluate, type EvalResult } from './train/evaluate.js';
export {
  accumulateGradients,
  updateWeights,
  targetCount,
  tokenCount,
  type StepContext,
} from './train/step.js';
export { Optimizer, clipGradNorm } from './train/optimizer.js';
export { learningRate, type Schedule, type SchedulerName } from './train/schedule.js';
export {
  generateAsync,
  generateIdsAsync,
  type GenerateIdsOptions,
  type GenerateOptions,
  type GenerateResult,
} from './infer/generate.js';
export { Sampler, GREEDY, type SamplingOptions } from './infer/sampling.js';
export { embedding } from './ops/embedding.js';
export { rmsnorm } from './ops/rmsnorm.js';
export { add, mul, scale, sum } from './ops/elementwise.js';
export { GGUFFile } from './io/gguf-reader.js';
export { SafetensorsFile, safetensorsModelFromBytes } from './io/safetensors-reader.js';
export { safetensorsBytes } from './io/safetensors-writer.js';
