// lorakit's library API: load a model, attach adapters, train, evaluate, generate.
export { Tensor, tidy, keep, memoryStats } from './tensor/tensor.js';
export type { DType } from './tensor/dtype.js';
export { backward, noGrad, checkpoint } from './autograd/tape.js';
export {
  loadModel,
  loadModelOptionalTokenizer,
  readModelConfig,
  type LoadOptions,
  type LoadedModel,
} from './models/load.js';
export {
  fetchModelFiles,
  loadModelFromBytes,
  loadModelFromBytesOptionalTokenizer,
  readModelFiles,
  type BytesLoadOptions,
  type ModelFiles,
} from './models/load-bytes.js';
export { CausalLM, type Batch } from './models/llama.js';
export { type ModelConfig } from './models/config.js';
export { LORA_DEFAULTS, loraScale, readPeftConfig, type LoraConfig } from './peft/config.js';
export {
  addAdapter,
  deleteAdapter,
  loadAdapter,
  saveAdapter,
  setActiveAdapter,
  adapterParameters,
  adapterFiles,
  adapterFromFiles,
  type AdapterFiles,
} from './peft/adapters.js';
export { Tokenizer } from './tokenizer/tokenizer.js';
export { renderChat } from './tokenizer/chat-template.js';
export { train, type TrainOptions, type TrainResult, type StepMetrics } from './train/trainer.js';
export { evaluate, type EvalResult } from './train/evaluate.js';
export {
  accumulateGradients,
  updateWeights,
  targetCount,
  tokenCount,
  type StepContext,
} from './train/step.js';
export { saveCheckpoint, checkCheckpoint, restoreCheckpoint, type TrainerState } from './train/checkpoint.js';
export { Optimizer, clipGradNorm } from './train/optimizer.js';
export { loadData, loadDataFromText, type Example, type ChatMessage, type ColumnMap } from './train/data.js';
export { generate, generateAsync, type GenerateOptions, type GenerateResult } from './infer/generate.js';
export {
  openSafetensors,
  openSafetensorsModel,
  writeSafetensors,
  safetensorsBytes,
} from './io/safetensors.js';
export { readGGUF } from './io/gguf.js';
export { mergeAdapter, unmergeAdapter, mergedAdapters, isMerged } from './peft/merge.js';
export { exportHF, exportGGUF, exportGGUFLora } from './export/index.js';
export { startDashboard } from './dashboard/server.js';
export { writeReport } from './dashboard/report.js';
export {
  quantizeWeight,
  dequantizeWeight,
  quantizeModel,
  baseWeightBytes,
  QuantizedWeight,
} from './quant/index.js';
export { BatchEngine } from './serve/engine.js';
export { LorakitServer, startServer } from './serve/server.js';
export { AdapterRegistry } from './serve/adapters.js';
