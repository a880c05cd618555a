// Export: merged Hugging Face folders, GGUF models and GGUF LoRA adapters (see each module).
export { exportHF, hfDType, type HFDType, type HFExportOptions, type HFExportReport } from './hf.js';
export { exportGGUF, ggufQuant, type GGUFQuant, type GGUFExportOptions, type ExportReport } from './gguf.js';
export { exportGGUFLora, type GGUFLoraOptions, type GGUFLoraQuant } from './gguf-lora.js';
export { quantizeQ8_0, quantizeQ4_0, encodeF16 } from './quantize.js';
