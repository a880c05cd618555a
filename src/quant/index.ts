// QLoRA storage: NF4/FP4 (bitsandbytes-exact) and int8 base weights, and bitsandbytes checkpoint
// reading and writing (the quantized linear op is ops/quant-linear.ts).
export { NF4_CODE, FP4_CODE, DYNAMIC_MAP, torchMeanF32, type Quant4Type } from './codes.js';
export { quantizeBlockwise8, dequantizeBlockwise8 } from './blockwise8.js';
export {
  QuantizedWeight,
  quantizeWeight,
  dequantizeWeight,
  dequantizeRows,
  weightToFloat32,
  weightBytes,
  quantizeModel,
  baseWeightBytes,
  nestAbsmax,
  QUANT_TYPES,
  BLOCKSIZES,
  type QuantType,
  type QuantizeOptions,
  type NestedAbsmax,
} from './weight.js';
export {
  readPrequantized,
  isPrequantized,
  bnbTensors,
  bnbQuantizationConfig,
  saveQuantizedModel,
} from './bnb.js';
