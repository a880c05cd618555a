// Merging a LoRA/DoRA adapter into the base weights (W' = W + ΔW, as PEFT's merge) and undoing it.
//
// A merged adapter stays attached to its layers as a MergedLora stand-in: forward passes no longer add
// its path (the weight already holds it), its tensors can still be saved, and unmergeAdapter puts the
// LoRA path back. Weights stored in f32 or bf16 are updated in place (bf16 rounds, as PEFT does on a
// bf16 model); any other storage (f16 today, quantized weights with QLoRA) is replaced by a bf16
// dequantized copy that holds the merge, and the original is kept to be restored exactly on unmerge —
// a quantized weight is never silently re-quantized.
import { noGrad } from '../autograd/tape.js';
import { axpyInPlace, cast, scale } from '../ops/elementwise.js';
import { matmul } from '../ops/matmul.js';
import type { CausalLM } from '../models/llama.js';
import type { ForwardContext, Linear, LinearAdapter } from '../nn/linear.js';
import { dequantizeWeight, QuantizedWeight } from '../quant/weight.js';
import { keep, Tensor, tidy } from '../tensor/tensor.js';
import { loraScale } from './config.js';
import { LoraLinear } from './lora.js';

/** What unmerging one layer needs besides the adapter's own tensors. */
interface MergeRecord {
  /** The weight the merge replaced (quantized or other storage, or a tied output head), restored on unmerge. */
  original: Tensor | QuantizedWeight | null;
  /** `original` is shared with another module (the embedding of a tied head): never disposed here. */
  shared: boolean;
  /** DoRA: the per-row factor m/‖W + sBA‖ at merge time (PEFT caches the norm the same way). */
  rowFactor: Float32Array | null;
}

/** Stands in for a LoRA adapter whose ΔW has been added into its layer's weight. */
export class MergedLora implements LinearAdapter {
  constructor(
    readonly lora: LoraLinear,
    readonly record: MergeRecord,
  ) {}

  // The weight already carries the adapter: the base output is the adapted output.
  forward(_x: Tensor, baseOut: Tensor, base: Linear, ctx: ForwardContext): Tensor {
    if (ctx.training)
      throw new Error(
        `lorakit: an adapter of ${base.path} is merged into the weights; unmerge it before training.`,
      );
    return baseOut;
  }

  parameters(): [string, Tensor][] {
    return this.lora.parameters();
  }

  dispose(): void {
    this.lora.dispose();
    if (this.record.original && !this.record.shared) this.record.original.dispose();
  }
}

/** Adapters merged into each model, in merge order (unmerging goes in reverse). */
const mergeOrder = new WeakMap<CausalLM, string[]>();

/** Whether any base weight is stored quantized, or was before an adapter was merged into a copy of it. */
export function hasQuantizedBase(model: CausalLM): boolean {
  return model
    .linears()
    .some(
      (l) =>
        l.weight instanceof QuantizedWeight ||
        [...l.adapters.values()].some(
          (a) => a instanceof MergedLora && a.record.original instanceof QuantizedWeight,
        ),
    );
}

/** Names of the adapters merged into the model's weights, oldest first. */
export function mergedAdapters(model: CausalLM): string[] {
  // An adapter deleted (or deleted and added again) since its merge is no longer merged.
  const linears = model.linears();
  return (mergeOrder.get(model) ?? []).filter((n) =>
    linears.some((l) => l.adapters.get(n) instanceof MergedLora),
  );
}

export function isMerged(model: CausalLM, name: string): boolean {
  return mergedAdapters(model).includes(name);
}

function adaptedLinears(model: CausalLM, name: string): Linear[] {
  if (!model.adapterConfigs.has(name))
    throw new Error(
      `lorakit: no adapter named '${name}' (have: ${[...model.adapterConfigs.keys()].join(', ') || 'none'}).`,
    );
  return model.linears().filter((l) => l.adapters.has(name));
}

/** The weight as f32 values (a fresh tensor the caller owns), dequantized when stored quantized. */
function denseF32(w: Tensor | QuantizedWeight): Tensor {
  if (w instanceof QuantizedWeight) return dequantizeWeight(w);
  if (w.dtype === 'f32') return Tensor.from(w.as('f32'), w.shape);
  if (w.dtype === 'bf16') return cast(w, 'f32');
  return Tensor.from(w.toFloat32(), w.shape);
}

/** Writes f32 values into w, rounding to w's storage (f32 or bf16). */
function storeInto(w: Tensor, values: Tensor): void {
  if (w.dtype === 'f32') w.as('f32').set(values.as('f32'));
  else {
    const b = cast(values, 'bf16');
    w.as('bf16').set(b.as('bf16'));
    b.dispose();
  }
}

/**
 * W + ΔW of one layer for an adapter (or W alone for null), as a fresh f32 tensor; the model is not
 * changed. For a layer whose adapter is merged already, its weight is returned as it stands.
 */
export function mergedWeight(linear: Linear, adapter: string | null): Tensor {
  return noGrad(() =>
    tidy(() => {
      const w = denseF32(linear.weight);
      const a = adapter === null ? undefined : linear.adapters.get(adapter);
      if (a instanceof LoraLinear) {
        const delta = a.delta(linear);
        axpyInPlace(w, delta, 1);
      } else if (a !== undefined && !(a instanceof MergedLora))
        throw new Error(
          `lorakit: the adapter '${adapter}' of ${linear.path} is not a LoRA adapter and cannot be merged.`,
        );
      return w;
    }),
  );
}

/**
 * Adds the adapter's ΔW (s·B·A, or DoRA's m/‖W+sBA‖ ⊙ (W+sBA) − W) into the weights of every layer it
 * targets, as PEFT's merge_and_unload does. Forward passes then run at base-model cost and give the
 * adapted output whichever adapter is active; merging the same adapter twice is refused.
 */
export function mergeAdapter(model: CausalLM, name: string): void {
  if (model.embedCopies.has(name))
    throw new Error(
      `lorakit: adapter '${name}' trains its own embeddings (modules_to_save) and cannot be merged.`,
    );
  const layers = adaptedLinears(model, name);
  if (isMerged(model, name)) throw new Error(`lorakit: adapter '${name}' is already merged.`);
  for (const l of layers)
    if (!(l.adapters.get(name) instanceof LoraLinear))
      throw new Error(
        `lorakit: the adapter '${name}' of ${l.path} is not a LoRA adapter and cannot be merged.`,
      );
  noGrad(() => {
    for (const l of layers) {
      const lora = l.adapters.get(name);
      if (!(lora instanceof LoraLinear)) continue; // checked above
      const record: MergeRecord = { original: null, shared: false, rowFactor: lora.mergeRowFactor(l) };
      const merged = mergedWeight(l, name);
      const w = l.weight;
      const tiedHead = l === model.lmHead && w === model.embedTokens;
      if (w instanceof Tensor && !tiedHead && (w.dtype === 'f32' || w.dtype === 'bf16')) {
        storeInto(w, merged);
        merged.dispose();
      } else {
        // A tied head gets a weight of its own (the embedding must not change); a quantized (or other)
        // weight gets a dequantized bf16 copy holding the merge. The original is kept to restore.
        record.original = w;
        record.shared = tiedHead;
        const own =
          tiedHead && w instanceof Tensor && w.dtype === 'f32' ? merged : keep(cast(merged, 'bf16'));
        if (own !== merged) merged.dispose();
        l.weight = keep(own);
      }
      l.adapters.set(name, new MergedLora(lora, record));
    }
  });
  mergeOrder.set(model, [...mergedAdapters(model).filter((n) => n !== name), name]);
}

/**
 * Takes a merged adapter back out of the weights (to float rounding of the weight's storage; exactly
 * for a replaced weight) and makes its LoRA path live again. Adapters are unmerged in the reverse of
 * the order they were merged, since a DoRA merge depends on the weight it was merged into.
 */
export function unmergeAdapter(model: CausalLM, name: string): void {
  const layers = adaptedLinears(model, name);
  const order = mergedAdapters(model);
  if (!order.includes(name)) throw new Error(`lorakit: adapter '${name}' is not merged.`);
  if (order.at(-1) !== name)
    throw new Error(
      `lorakit: unmerge '${order.at(-1)}' first: adapters are unmerged in the reverse order they were merged.`,
    );
  noGrad(() => {
    for (const l of layers) {
      const m = l.adapters.get(name);
      if (!(m instanceof MergedLora)) continue;
      const { lora, record } = m;
      if (record.original) {
        l.weight.dispose();
        l.weight = record.original;
      } else
        tidy(() => {
          const stored = l.weight;
          if (!(stored instanceof Tensor))
            throw new Error(`lorakit: ${l.path}: a merged weight is quantized.`);
          const w = denseF32(stored);
          const sba = scale(matmul(lora.B, lora.A), loraScale(lora.config)); // [out, in]
          const f = record.rowFactor;
          if (f) {
            // DoRA: W' = f ⊙ (W + sBA) per row, so W = W'/f − sBA.
            const wv = w.as('f32');
            const inF = w.shape[1];
            for (let o = 0; o < f.length; o++) {
              const inv = 1 / f[o];
              for (let i = o * inF; i < (o + 1) * inF; i++) wv[i] *= inv;
            }
          }
          axpyInPlace(w, sba, -1);
          storeInto(stored, w);
        });
      l.adapters.set(name, lora);
    }
  });
  mergeOrder.set(
    model,
    order.filter((n) => n !== name),
  );
}
