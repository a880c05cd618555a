// Autoregressive generation with a KV cache: prefill the prompt once, then one token per forward.
// generate() reads each step's logits synchronously (the CPU, CUDA); generateAsync() reads them as
// WebGPU must, without blocking. Both run one decoding loop (decodeSteps), which yields what it needs
// read back and is resumed with the values.
import { noGrad } from '../autograd/tape.js';
import { DecodeStep } from '../models/decode-step.js';
import { KVCache } from '../models/kv-cache.js';
import type { CausalLM } from '../models/llama.js';
import { argmaxRows } from '../ops/argmax.js';
import { renderChat } from '../tokenizer/chat-template.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { Tensor, tidy } from '../tensor/tensor.js';
import { GREEDY, Sampler, type SamplingOptions } from './sampling.js';
import { TextStream } from '../serve/text.js';
import type { ChatMessage } from '../train/data.js';

export interface GenerateOptions extends Partial<SamplingOptions> {
  prompt?: string;
  messages?: ChatMessage[];
  inputIds?: number[];
  maxNewTokens?: number;
  /** The reply ends before the first of these (which is left out), as OpenAI's stop. */
  stop?: string[];
  /** Called with each new piece of text once it is final (streaming); the pieces add up to `text`. */
  onToken?: (text: string, id: number) => void;
  /** Checked between tokens; true stops generation (e.g. Ctrl-C in chat). */
  shouldStop?: () => boolean;
}

export interface GenerateResult {
  text: string;
  tokenIds: number[];
  finishReason: 'stop' | 'length';
}

/** A chat rendered with the tokenizer's template, up to the reply (encode it without special tokens). */
export function chatPromptText(tokenizer: Tokenizer, messages: ChatMessage[]): string {
  if (!tokenizer.chatTemplate)
    throw new Error(
      'lorakit: --messages needs a model with a chat template; this tokenizer has none (use --prompt).',
    );
  return renderChat(tokenizer.chatTemplate, messages, {
    addGenerationPrompt: true,
    bosToken: tokenizer.bosToken ?? undefined,
    eosToken: tokenizer.eosToken ?? undefined,
  });
}

/** The prompt ids a GenerateOptions describes: raw text with special tokens, or a chat. */
export function promptIds(tokenizer: Tokenizer, o: GenerateOptions): number[] {
  if (o.inputIds) return o.inputIds;
  if (o.messages) return tokenizer.encode(chatPromptText(tokenizer, o.messages), { addSpecialTokens: false });
  if (o.prompt !== undefined) return tokenizer.encode(o.prompt);
  throw new Error('lorakit: generate needs a prompt, messages or input ids.');
}

/** A generation's prompt ids, the loop's options and how its ids become a GenerateResult. */
interface Decoding {
  ids: number[];
  options: GenerateIdsOptions;
  finish(r: GeneratedIds): GenerateResult;
}

function decoding(tokenizer: Tokenizer, o: GenerateOptions): Decoding {
  const ids = promptIds(tokenizer, o);
  if (ids.length === 0) throw new Error('lorakit: the prompt encodes to no tokens.');
  const sampler = new Sampler({
    ...GREEDY,
    ...Object.fromEntries(Object.entries(o).filter(([k, v]) => v !== undefined && k in GREEDY)),
  });
  const text = new TextStream(tokenizer, o.stop ?? [], ids);
  const options: GenerateIdsOptions = {
    maxNewTokens: o.maxNewTokens ?? 128,
    sampler,
    eos: new Set(tokenizer.eosIds),
    onNext: (_, next) => {
      const stopped = text.push(next);
      const piece = text.take();
      if (piece) o.onToken?.(piece, next);
      return stopped || (o.shouldStop?.() ?? false);
    },
  };
  const finish = ({ tokenIds, finishReason }: GeneratedIds): GenerateResult => {
    const rest = text.take(true);
    if (rest) o.onToken?.(rest, tokenIds[tokenIds.length - 1]);
    return { text: text.text, tokenIds, finishReason: text.stopped ? 'stop' : finishReason };
  };
  return { ids, options, finish };
}

/** Generates a reply, reading each step's values synchronously (the CPU and CUDA; not WebGPU). */
export function generate(model: CausalLM, tokenizer: Tokenizer, o: GenerateOptions): GenerateResult {
  const d = decoding(tokenizer, o);
  return d.finish(generateIds(model, d.ids, d.options));
}

/** generate() for every device, WebGPU included: each step's values are read back without blocking. */
export async function generateAsync(
  model: CausalLM,
  tokenizer: Tokenizer,
  o: GenerateOptions,
): Promise<GenerateResult> {
  const d = decoding(tokenizer, o);
  return d.finish(await generateIdsAsync(model, d.ids, d.options));
}

export interface GenerateIdsOptions {
  maxNewTokens: number;
  sampler: Sampler;
  /** Ids that end generation (not included in the result). */
  eos: ReadonlySet<number>;
  /** Called with the ids so far after each new one; true stops generation there. */
  onNext?: (ids: number[], next: number) => boolean;
  /**
   * One-token steps through DecodeStep's native fast path where it applies (true by default); false
   * runs every step op by op (tests and benchmarks compare the two).
   */
  fastDecode?: boolean;
}

export interface GeneratedIds {
  tokenIds: number[];
  finishReason: GenerateResult['finishReason'];
}

/**
 * What one decoding step needs read back: host logits already there (DecodeStep's), or a device
 * tensor (the logits [1, V], or the greedy pick [1] made on the device) that the driver reads and
 * disposes.
 */
type StepValues = Float32Array | Tensor;

type DecodeSteps = Generator<StepValues, GeneratedIds, Float32Array>;

/** The decoding loop, reading each step's values synchronously. */
export function generateIds(model: CausalLM, ids: readonly number[], o: GenerateIdsOptions): GeneratedIds {
  const steps = decodeSteps(model, ids, o);
  try {
    let r = steps.next();
    while (!r.done) r = steps.next(r.value instanceof Float32Array ? r.value : readAndDispose(r.value));
    return r.value;
  } finally {
    steps.return(STOPPED); // frees the KV cache when a read failed (nothing where the loop ended)
  }
}

/** The decoding loop, reading each step's values without blocking (WebGPU cannot block). */
export async function generateIdsAsync(
  model: CausalLM,
  ids: readonly number[],
  o: GenerateIdsOptions,
): Promise<GeneratedIds> {
  const steps = decodeSteps(model, ids, o);
  try {
    let r = steps.next();
    while (!r.done)
      r = steps.next(r.value instanceof Float32Array ? r.value : await readAndDisposeAsync(r.value));
    return r.value;
  } finally {
    steps.return(STOPPED);
  }
}

const STOPPED: GeneratedIds = { tokenIds: [], finishReason: 'length' };

function readAndDispose(t: Tensor): Float32Array {
  try {
    return t.toFloat32();
  } finally {
    t.dispose();
  }
}

async function readAndDisposeAsync(t: Tensor): Promise<Float32Array> {
  try {
    return await t.toFloat32Async();
  } finally {
    t.dispose();
  }
}

/**
 * Prefills `ids` into a fresh KV cache, then makes one token per forward until maxNewTokens, an eos
 * id, or onNext says stop; finishReason is 'stop' for eos only. Each step yields what it needs read
 * back and is resumed with it as host floats.
 */
function* decodeSteps(model: CausalLM, ids: readonly number[], o: GenerateIdsOptions): DecodeSteps {
  const c = model.config;
  const cache = new KVCache(
    1,
    ids.length + o.maxNewTokens,
    c.numLayers,
    c.numKvHeads,
    c.headDim,
    model.device,
    model.activationDType,
  );
  const fast = o.fastDecode === false ? null : DecodeStep.for(model);
  // Off the CPU the greedy pick is made on the device, so one id comes back instead of the vocabulary.
  const pickOnDevice = o.sampler.greedy && model.device !== 'cpu';
  const out: number[] = [];
  let finishReason: GenerateResult['finishReason'] = 'length';
  try {
    let input = [...ids];
    for (let step = 0; step < o.maxNewTokens; step++) {
      const start = cache.length;
      const values: Float32Array =
        fast && input.length === 1
          ? fast.logits(input[0], start, cache)
          : yield forwardLogits(model, input, cache, pickOnDevice);
      const next = pickOnDevice ? values[0] : o.sampler.next(values);
      if (o.eos.has(next)) {
        finishReason = 'stop';
        break;
      }
      out.push(next);
      if (o.onNext?.(out, next)) break;
      input = [next];
    }
  } finally {
    cache.dispose();
  }
  return { tokenIds: out, finishReason };
}

// Next-token logits [1, V] after `input` (appended to the cache at its length), op by op; with
// `pick`, the greedy choice [1] instead.
function forwardLogits(model: CausalLM, input: readonly number[], cache: KVCache, pick: boolean): Tensor {
  const c = model.config;
  const start = cache.length;
  return noGrad(() =>
    tidy(() => {
      const T = input.length;
      const batch = {
        ids: Tensor.from([...input], [1, T], 'i32'),
        positions: Tensor.from(
          Array.from({ length: T }, (_, i) => start + i),
          [1, T],
          'i32',
        ),
        segments: Tensor.from(new Array<number>(T).fill(1), [1, T], 'i32'),
      };
      const hidden = model.hidden(batch, { cache });
      const last = hidden.reshape([T, c.hiddenSize]).sliceRows(T - 1, T);
      const logits = model.lmHead.forward(last, { adapter: model.activeAdapter, training: false, seed: 0 });
      return pick ? argmaxRows(logits) : logits;
    }),
  );
}
