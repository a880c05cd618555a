import { keep, setViewHook, tidy, Tensor } from '../tensor/tensor.js';
import { addInto, filled, sumOf } from './gradients.js';

/**
 * A tape autograd. Each differentiable op that runs while recording, on inputs of which at least one
 * requires grad, appends an entry: its inputs, outputs, the tensors its backward needs (retained until
 * the tape is cleared) and a backward function written in terms of ops. backward() walks the tape in
 * reverse. Leaves (trainable parameters) accumulate into `.grad`, so several backward() calls before an
 * optimizer step accumulate gradients. Frozen tensors (requiresGrad false) never get grad buffers.
 */
export type BackwardFn = (gradOutputs: Tensor[], needsGrad: boolean[]) => (Tensor | null)[];

interface Entry {
  inputs: Tensor[];
  outputs: Tensor[];
  saved: Tensor[];
  backward: BackwardFn;
}

class Tape {
  entries: Entry[] = [];
  clear(): void {
    for (const e of this.entries) for (const s of e.saved) s.dispose();
    this.entries = [];
  }
}

const tapes: Tape[] = [new Tape()];
let gradEnabled = true;

/** Runs fn without recording: nothing it computes will get gradients. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Inside a checkpoint's recompute (see checkpoint). */
let recomputing = false;
/** The values the running code computes are never read: a checkpoint's recompute, outside computeValues. */
let unread = false;
/** Ops may record without computing their output (see checkpointOutput). */
let graphOnly = false;

/** Whether the code running is a checkpoint's recompute (its result's values are never read). */
export function isRecomputing(): boolean {
  return recomputing;
}

/**
 * Runs fn, which computes a checkpointed block's output (its last ops: a projection and the residual
 * sum). In the block's recompute nobody reads those values, backward needs only the graph that made
 * them: the ops that can record without computing (linear, quantizedLinear, loraLinear(s), add) then
 * only record. Anywhere else, and inside computeValues, fn runs as usual.
 */
export function checkpointOutput<T>(fn: () => T): T {
  return scoped(unread, unread, fn);
}

/**
 * Runs fn with every value computed, even in a recompute: for code whose results are read after it
 * (the first half of a checkpointed layer; DoRA, which reads its base output).
 */
export function computeValues<T>(fn: () => T): T {
  return scoped(false, false, fn);
}

/** Whether an op may record its output without computing it (see checkpointOutput). */
export function isGraphOnly(): boolean {
  return graphOnly;
}

function scoped<T>(unreadIn: boolean, graphOnlyIn: boolean, fn: () => T): T {
  const prev = [unread, graphOnly] as const;
  [unread, graphOnly] = [unreadIn, graphOnlyIn];
  try {
    return fn();
  } finally {
    [unread, graphOnly] = prev;
  }
}

/** Whether an op on these inputs must be recorded. */
export function needsRecord(inputs: readonly (Tensor | null | undefined)[]): boolean {
  return gradEnabled && inputs.some((t) => t?.requiresGrad === true);
}

/**
 * Records one op. Backward returns one gradient (or null) per input, each a tensor the tape then
 * owns: a fresh one, or a gradient the op was given, retained, for any number of inputs (a view of it
 * only when no one else holds it: the tape's reshape). The tape accumulates in place only into a
 * gradient no one else holds (Tensor.shared), so passing one on costs nothing. `inputs` may hold
 * nulls for absent optional inputs. Outputs become requiresGrad.
 */
export function record(
  inputs: readonly (Tensor | null | undefined)[],
  outputs: readonly Tensor[],
  saved: readonly Tensor[],
  backward: BackwardFn,
): void {
  const present = inputs.map((t) => t ?? null);
  for (const o of outputs) o.requiresGrad = true;
  tapes[tapes.length - 1].entries.push({
    inputs: present.filter((t): t is Tensor => t !== null),
    outputs: [...outputs],
    saved: saved.map((t) => t.retain()),
    backward: (g, needs) => {
      // Map back from the compacted input list to the op's own input positions.
      const full = backward(g, mapNeeds(present, needs));
      return full.filter((_, i) => present[i] !== null);
    },
  });
}

function mapNeeds(present: (Tensor | null)[], needs: boolean[]): boolean[] {
  let k = 0;
  return present.map((t) => (t === null ? false : needs[k++]));
}

/** A fresh copy of t (a plain memory copy: no op needed). */
function copyOf(t: Tensor): Tensor {
  const c = Tensor.empty(t.shape, t.dtype, t.device);
  Tensor.copyElements(c, 0, t, 0, t.size);
  return c;
}

function accumulate(grads: Map<number, Tensor>, t: Tensor, g: Tensor): void {
  const prev = grads.get(t.id);
  if (!prev) grads.set(t.id, g);
  else if (prev.shared) {
    // Another input's gradient too (an op passed its own on): sum into a new tensor.
    grads.set(t.id, sumOf(prev, g));
    prev.dispose();
    g.dispose();
  } else {
    addInto(prev, g);
    g.dispose();
  }
}

/**
 * Backpropagates from `root` (a scalar loss unless `gradRoot` is given) through the current tape, then
 * clears the tape. Gradients of leaves are added to their `.grad`. The tape works on a copy of
 * `gradRoot`, since gradients are accumulated in place, unless `donate` hands it over (the caller
 * keeps no use for it; checkpoint does so).
 */
export function backward(root: Tensor, gradRoot?: Tensor, donate = false): void {
  const tape = tapes[tapes.length - 1];
  try {
    tidy(() => {
      const grads = new Map<number, Tensor>();
      const produced = new Set<number>();
      const inputsById = new Map<number, Tensor>([[root.id, root]]);
      for (const e of tape.entries) {
        for (const o of e.outputs) produced.add(o.id);
        for (const t of e.inputs) inputsById.set(t.id, t);
      }
      grads.set(root.id, gradRoot ? (donate ? gradRoot : copyOf(gradRoot)) : filled(root, 1));
      noGrad(() => {
        for (let i = tape.entries.length - 1; i >= 0; i--) {
          const e = tape.entries[i];
          if (!e.outputs.some((o) => grads.has(o.id))) continue;
          const gOut = e.outputs.map((o) => grads.get(o.id) ?? filled(o, 0));
          for (const o of e.outputs) grads.delete(o.id);
          const needs = e.inputs.map((t) => t.requiresGrad);
          const gIn = e.backward(gOut, needs);
          e.inputs.forEach((t, k) => {
            const g = gIn[k];
            if (g && needs[k]) accumulate(grads, t, g);
          });
          for (const g of gOut) g.dispose();
          // As torch does: what this op saved is released as soon as its backward has run, so memory
          // falls while backward walks the tape instead of peaking until it ends.
          for (const s of e.saved) s.dispose();
          e.saved = [];
        }
      });
      // What is left belongs to leaves: parameters and checkpoint inputs.
      for (const [id, g] of grads) {
        const leaf = inputsById.get(id);
        if (!leaf || produced.has(id)) continue;
        if (leaf.grad) addInto(leaf.grad, g);
        else if (g.shared) {
          leaf.grad = keep(copyOf(g)); // another leaf's gradient too: each gets its own
          g.dispose();
        } else leaf.grad = keep(g);
      }
    });
  } finally {
    tape.clear();
  }
}

// A reshape of a recorded tensor is recorded too: its gradient is the view's gradient, reshaped (a
// view of it, unless another holder may accumulate into it: then a copy).
setViewHook((source, view) => {
  if (needsRecord([source]))
    record([source], [view], [], ([g]) => {
      if (!g.shared) return [g.reshape(source.shape)];
      const c = copyOf(g);
      const v = c.reshape(source.shape);
      c.dispose();
      return [v];
    });
});

/** Drops everything recorded so far (e.g. after an evaluation that ran with grad on by mistake). */
export function clearTape(): void {
  tapes[tapes.length - 1].clear();
}

/**
 * Activation checkpointing: runs fn without keeping its intermediates; backward recomputes it on
 * fresh copies of the inputs with its own tape, so memory holds one block's activations at a time.
 * Parameters that fn closes over receive their gradients as usual.
 *
 * fn's second argument, like isRecomputing(), is true when it runs for that recompute. Its output's
 * values are then never read, so fn may wrap the ops that make the output in checkpointOutput: e.g.
 * a decoder block skips its last projection's product and the residual sum.
 */
export function checkpoint(
  fn: (inputs: Tensor[], recompute: boolean) => Tensor,
  inputs: Tensor[],
  /** Called when backward reaches this block, before it recomputes (e.g. to prefetch the block before). */
  onBackward?: () => void,
  /**
   * Intermediates the recompute reuses instead of computing again: fn's first run pushes them here,
   * retained (e.g. attention's output and logsumexp), and its recompute reads them. From then on the
   * tape holds them, until backward has passed the block.
   */
  kept: Tensor[] = [],
): Tensor {
  // Records whenever grad mode is on, even if no input requires grad: the parameters fn closes over
  // (a block's LoRA weights, fed by frozen embeddings) still need their gradients.
  if (!gradEnabled) {
    const out = fn(inputs, false);
    for (const t of kept.splice(0)) t.dispose(); // no recompute will come
    return out;
  }
  // Forward keeps only the block's output (and what it kept): its other intermediates are freed as
  // soon as it returns.
  const out = noGrad(() => tidy(() => fn(inputs, false)));
  record(inputs, [out], [...inputs, ...kept], (gOut) =>
    // The recomputed intermediates live only while this block's backward runs.
    tidy(() => {
      onBackward?.();
      const tape = new Tape();
      tapes.push(tape);
      let gradsIn: (Tensor | null)[] = [];
      try {
        // Fresh leaves over the same memory, made while not recording so they are leaves of this tape.
        const fresh = inputs.map((t) => {
          const v = t.reshape(t.shape);
          v.requiresGrad = t.requiresGrad;
          return v;
        });
        gradEnabled = true;
        // Intermediates the tape did not save are freed right after the recompute; the saved ones
        // are released op by op as backward reaches them.
        const recomputed = tidy(() => recomputation(() => fn(fresh, true)));
        backward(recomputed, gOut[0].retain(), true);
        gradsIn = fresh.map((v) => {
          const g = v.grad;
          v.grad = null;
          return g;
        });
      } finally {
        gradEnabled = false;
        tape.clear();
        tapes.pop();
      }
      return gradsIn;
    }),
  );
  for (const t of kept) t.dispose(); // the tape's now (it retained them)
  return out;
}

function recomputation<T>(fn: () => T): T {
  const prev = recomputing;
  recomputing = true;
  try {
    return scoped(true, false, fn);
  } finally {
    recomputing = prev;
  }
}
