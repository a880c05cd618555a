// Export: Q8_0/Q4_0/F16 bytes equal gguf-py's quantize; GGUF files that load back here and in gguf-py
// with the adapter merged; GGUF LoRA files laid out as llama.cpp's converter does (rsLoRA folded into
// alpha, DoRA refused); and llama.cpp itself (node-llama-cpp) generating the same greedy tokens as
// lorakit from our GGUF exports and GGUF LoRA adapters (stories260K from ../shared/data, SmolLM2 from
// .cache/models via scripts/fetch-smollm2.sh).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { UsageError } from '../src/cli/args.js';
import { run as runExport } from '../src/cli/export.js';
import { exportGGUF, permuteRows } from '../src/export/gguf.js';
import { exportGGUFLora } from '../src/export/gguf-lora.js';
import { encodeF16, quantizeQ4_0, quantizeQ8_0 } from '../src/export/quantize.js';
import {
  ggufTokenizerFromHF,
  hfTokenizerFromGGUF,
  metadataOf,
  sameEncoding,
  TOKENIZER_CHECK_TEXT,
} from '../src/tokenizer/gguf-meta.js';
import { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { generate } from '../src/infer/generate.js';
import { readGGUF, type GGUFFile } from '../src/io/gguf.js';
import type { CausalLM } from '../src/models/llama.js';
import { loadModel, type LoadedModel } from '../src/models/load.js';
import { addAdapter, adapterParameters, loadAdapter } from '../src/peft/adapters.js';
import { LORA_DEFAULTS, loraScale } from '../src/peft/config.js';
import { assertClose, fixture, projectRoot, relError, sharedData } from './helpers.js';
import { rowLogits } from './model-helpers.js';

const work = mkdtempSync(join(tmpdir(), 'lorakit-export-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const python = join(projectRoot, '.venv-ref', 'bin', 'python');
const SKIP = 'reference fixtures are absent: run scripts/reference/make-all.sh';

function cli(args: string[]) {
  return spawnSync(
    process.execPath,
    ['--import', 'tsx', join(projectRoot, 'test', 'lorakit-cli.mts'), ...args],
    { encoding: 'utf8', cwd: projectRoot },
  );
}

const IDS = [
  [5, 17, 33, 60, 2, 91, 44, 7, 12, 80, 31],
  [9, 96, 3, 50, 50, 21, 1, 66, 70, 8, 40],
];

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

test('Q8_0, Q4_0 and F16 bytes equal gguf-py quantize(), edge cases included', (t) => {
  const dir = fixture('merge', 'quants');
  if (!dir) return t.skip(SKIP);
  const raw = readFileSync(join(dir, 'input.f32'));
  const x = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  for (const [file, bytes] of [
    ['q8_0.bin', quantizeQ8_0(x)],
    ['q4_0.bin', quantizeQ4_0(x)],
    ['f16.bin', encodeF16(x)],
  ] as const) {
    const want: Uint8Array = new Uint8Array(readFileSync(join(dir, file)));
    assert.equal(firstDiff(bytes, want), -1, `${file}: first differing byte`);
  }
  assert.throws(
    () => quantizeQ8_0(new Float32Array(33)),
    /lorakit: Q8_0 needs a multiple of 32 values, got 33\./,
  );
  assert.throws(
    () => quantizeQ4_0(new Float32Array(7)),
    /lorakit: Q4_0 needs a multiple of 32 values, got 7\./,
  );
});

/** Dequantized values of every tensor as lorakit reads them: name -> [sum, sum of |x|] in float64. */
function sums(f: GGUFFile): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const name of f.tensors.keys()) {
    const v = f.read(name, 'f32');
    let s = 0;
    let a = 0;
    for (const x of v.as('f32')) {
      s += x;
      a += Math.abs(x);
    }
    v.dispose();
    out.set(name, [s, a]);
  }
  return out;
}

interface PyGGUF {
  metadata: Record<string, unknown>;
  tensors: { name: string; type: string; dims: number[]; sum: number; abs_sum: number }[];
}

function pyGGUF(path: string): PyGGUF {
  const p = spawnSync(python, [join(projectRoot, 'scripts/reference/merge_ref.py'), 'gguf', path], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  assert.equal(p.status, 0, p.stderr);
  return JSON.parse(p.stdout.trim().split('\n').at(-1)!) as PyGGUF;
}

test('GGUF export of tiny models: loads back with the adapter merged; gguf-py reads the same values', async (t) => {
  const cases: [string, string][] = [
    ['llama', 'llama-lora'],
    ['mistral', 'mistral-qv'],
    ['qwen3', 'qwen3-lora'],
  ];
  if (cases.some(([m, a]) => !fixture('models', m) || !fixture('peft', a, 'adapter'))) return t.skip(SKIP);
  const files: string[] = [];
  for (const [m, a] of cases) {
    const { model, tokenizer, path } = await loadModel(fixture('models', m)!);
    try {
      loadAdapter(model, fixture('peft', a, 'adapter')!, 'a');
      const ours = rowLogits(model, IDS);
      const out = join(work, `${m}.gguf`);
      const r = await exportGGUF(model, tokenizer, path, out, { adapter: 'a', quant: 'f32' });
      assert.ok(
        r.warnings.some((w) => w.includes('llama.cpp will not load this file')),
        'the fixture vocabulary has no newline token',
      );
      const back = await loadModel(out);
      try {
        assertClose(rowLogits(back.model, IDS), ours, 1e-5, `${m}: logits of the GGUF export`);
        // GGUF's sentencepiece format prepends a space where tokenizer.json's Metaspace does not and
        // fuses unknown characters, so only plain text splits alike here (stories260K below checks more).
        const plain = 'the cat sat on the mat, and she said: hello to him.';
        assert.deepEqual(
          back.tokenizer.encode(plain),
          tokenizer.encode(plain),
          `${m}: the GGUF tokenizer splits text as tokenizer.json`,
        );
        assert.equal(back.tokenizer.chatTemplate, tokenizer.chatTemplate);
        assert.deepEqual(back.tokenizer.eosIds, tokenizer.eosIds);
      } finally {
        back.model.dispose();
      }
      const f = await readGGUF(out);
      assert.equal(f.get('general.architecture'), m === 'mistral' ? 'llama' : m);
      assert.equal(f.get('general.file_type'), 0);
      if (m === 'qwen3') assert.equal(f.get('qwen3.attention.key_length'), 24);
      files.push(out);
    } finally {
      model.dispose();
    }
  }
  // f16 / q8_0 / q4_0: block types where rows fill whole blocks, 1-D tensors F32, values close.
  const { model, tokenizer, path } = await loadModel(fixture('models', 'llama')!);
  try {
    const ours = rowLogits(model, IDS);
    for (const [quant, tol] of [
      ['f16', 1e-3],
      ['q8_0', 3e-2],
      ['q4_0', 0.3],
    ] as const) {
      const out = join(work, `llama-${quant}.gguf`);
      await exportGGUF(model, tokenizer, path, out, { quant });
      const f = await readGGUF(out);
      const type = (n: string) => f.info(n).typeName;
      assert.equal(type('blk.0.attn_norm.weight'), 'F32');
      assert.equal(type('blk.0.ffn_down.weight'), quant === 'f16' ? 'F16' : quant.toUpperCase());
      assert.equal(type('token_embd.weight'), quant === 'f16' ? 'F16' : 'Q8_0');
      assert.equal(f.get('general.file_type'), { f16: 1, q8_0: 7, q4_0: 2 }[quant]);
      const back = await loadModel(out);
      try {
        const err = relError(rowLogits(back.model, IDS), ours);
        assert.ok(err < tol, `${quant}: logits relative error ${err}`);
      } finally {
        back.model.dispose();
      }
      files.push(out);
    }
  } finally {
    model.dispose();
  }
  // Rope variants llama.cpp has (linear, yarn, llama3's rope_freqs) are written, though lorakit's reader refuses them.
  for (const [m, check] of [
    [
      'llama-linear',
      (f: GGUFFile) =>
        f.get('llama.rope.scaling.type') === 'linear' && f.get('llama.rope.scaling.factor') === 2,
    ],
    [
      'qwen2',
      (f: GGUFFile) =>
        f.get('qwen2.rope.scaling.type') === 'yarn' &&
        f.get('qwen2.rope.scaling.original_context_length') === 32,
    ],
    ['llama3-tied', (f: GGUFFile) => f.has('rope_freqs.weight') && !f.has('output.weight')],
  ] as const) {
    const l = await loadModel(fixture('models', m)!);
    try {
      const out = join(work, `${m}.gguf`);
      await exportGGUF(l.model, l.tokenizer, l.path, out);
      assert.ok(check(await readGGUF(out)), `${m}: rope metadata`);
    } finally {
      l.model.dispose();
    }
  }
  if (!existsSync(python)) return t.skip('the reference venv is absent: run scripts/reference/make-all.sh');
  for (const file of files) {
    const py = pyGGUF(file);
    const f = await readGGUF(file);
    const ours = sums(f);
    assert.equal(py.tensors.length, f.tensors.size);
    for (const pt of py.tensors) {
      const info = f.info(pt.name);
      assert.equal(pt.type, info.typeName, `${file} ${pt.name}`);
      const [s, a] = ours.get(pt.name)!;
      assert.ok(
        Math.abs(pt.abs_sum - a) <= 1e-9 * a && Math.abs(pt.sum - s) <= 1e-9 * a,
        `${file} ${pt.name}: gguf-py reads other values`,
      );
    }
    assert.equal(py.metadata['general.architecture'], f.get('general.architecture'));
    assert.equal(
      (py.metadata['tokenizer.ggml.tokens'] as { len: number }).len,
      f.get('llama.vocab_size') ?? f.get('qwen3.vocab_size'),
    );
  }
});

test('GGUF LoRA: llama.cpp names and layout, B rows permuted for q/k, rsLoRA folded into alpha; DoRA refused', async (t) => {
  for (const c of ['llama-lora', 'llama-rslora', 'llama-dora'])
    if (!fixture('peft', c, 'adapter')) return t.skip(SKIP);
  const { model, tokenizer, path } = await loadModel(fixture('models', 'llama')!);
  try {
    const base = join(work, 'lora-base.gguf');
    await exportGGUF(model, tokenizer, path, base, { quant: 'f32' });
    const baseFile = await readGGUF(base);
    for (const c of ['llama-lora', 'llama-rslora']) {
      const config = loadAdapter(model, fixture('peft', c, 'adapter')!, c);
      const out = join(work, `${c}.gguf`);
      const r = exportGGUFLora(model, c, out);
      const merged = join(work, `${c}-merged.gguf`);
      await exportGGUF(model, tokenizer, path, merged, { adapter: c, quant: 'f32' });
      const f = await readGGUF(out);
      const m = await readGGUF(merged);
      assert.equal(f.get('general.type'), 'adapter');
      assert.equal(f.get('adapter.type'), 'lora');
      assert.equal(f.get('general.architecture'), 'llama');
      const alpha = f.get('adapter.lora.alpha');
      assert.ok(
        typeof alpha === 'number' && Math.abs(alpha - loraScale(config) * config.r) < 1e-6,
        `${c}: alpha ${String(alpha)}`,
      );
      assert.equal(r.tensors, 2 * 14);
      const a = f.info('blk.0.attn_q.weight.lora_a');
      const b = f.info('blk.0.attn_q.weight.lora_b');
      assert.deepEqual([a.dims, b.dims, a.typeName], [[64, config.r], [config.r, 64], 'F32']);
      const params = new Map(adapterParameters(model, c));
      const B = params.get('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight')!;
      const gotB = f.read('blk.0.attn_q.weight.lora_b');
      assert.deepEqual(gotB.as('f32'), permuteRows(B.as('f32'), 4, config.r));
      gotB.dispose();
      // What llama.cpp computes, W + (alpha / r)·B·A in GGUF layout, is the merged export's weight.
      for (const name of [...f.tensors.keys()].filter((n) => n.endsWith('.lora_a'))) {
        const w = name.slice(0, -'.lora_a'.length);
        const [A, Bt, W, M] = [f.read(name), f.read(`${w}.lora_b`), baseFile.read(w), m.read(w)];
        const [out_, inF] = W.shape;
        const r_ = A.shape[0];
        const s = (alpha as number) / r_;
        const av = A.as('f32');
        const bv = Bt.as('f32');
        const wv = Float32Array.from(W.as('f32'));
        for (let o = 0; o < out_; o++)
          for (let k = 0; k < r_; k++)
            for (let i = 0; i < inF; i++) wv[o * inF + i] += s * bv[o * r_ + k] * av[k * inF + i];
        assertClose(wv, M.as('f32'), 1e-5, `${c} ${w}`);
        for (const x of [A, Bt, W, M]) x.dispose();
      }
    }
    loadAdapter(model, fixture('peft', 'llama-dora', 'adapter')!, 'dora');
    assert.throws(
      () => exportGGUFLora(model, 'dora', join(work, 'dora.gguf')),
      /lorakit: a DoRA adapter cannot be written as a GGUF LoRA/,
    );
    assert.throws(
      () => exportGGUFLora(model, 'nope', join(work, 'x.gguf')),
      /lorakit: no adapter named 'nope'/,
    );
    assert.equal(existsSync(join(work, 'dora.gguf')), false);
  } finally {
    model.dispose();
  }
  const tied = await loadModel(fixture('models', 'llama3-tied')!);
  try {
    addAdapter(tied.model, 'h', { ...LORA_DEFAULTS, r: 2, targetModules: ['lm_head'] });
    assert.throws(
      () => exportGGUFLora(tied.model, 'h', join(work, 'h.gguf')),
      /lorakit: the adapter targets lm_head, which this model ties to its embeddings/,
    );
  } finally {
    tied.model.dispose();
  }
});

// ---- llama.cpp (node-llama-cpp) ---------------------------------------------------------------------

type LlamaModule = typeof import('node-llama-cpp');
async function nodeLlama(): Promise<LlamaModule | null> {
  try {
    return await import('node-llama-cpp');
  } catch {
    return null;
  }
}

let llamaInstance: Promise<Awaited<ReturnType<LlamaModule['getLlama']>>> | null = null;
/** One llama.cpp instance for the file: the prebuilt CPU binary, never a build or download. */
function getLlama(mod: LlamaModule) {
  llamaInstance ??= mod.getLlama({
    gpu: false,
    build: 'never',
    progressLogs: false,
    logLevel: mod.LlamaLogLevel.error,
  });
  return llamaInstance;
}

/** Greedy tokens llama.cpp generates from `ids` with a GGUF model (and a GGUF LoRA). */
async function llamaGreedy(
  mod: LlamaModule,
  file: string,
  ids: number[],
  n: number,
  lora?: string,
): Promise<number[]> {
  const llama = await getLlama(mod);
  const model = await llama.loadModel({ modelPath: file });
  try {
    // One thread: llama.cpp's spinning thread barrier crawls when the cores are shared (CI, parallel runs).
    const ctx = await model.createContext({
      contextSize: 256,
      batchSize: 64,
      threads: 1,
      ...(lora ? { lora: { adapters: [{ filePath: lora }] } } : {}),
    });
    const out: number[] = [];
    for await (const tok of ctx.getSequence().evaluate(
      ids.map((i) => i as never),
      { temperature: 0 },
    )) {
      out.push(Number(tok));
      if (out.length >= n) break;
    }
    await ctx.dispose();
    return out;
  } finally {
    await model.dispose();
  }
}

/** A deterministic LoRA on every linear but the head, strong enough to change the greedy tokens. */
function randomAdapter(model: CausalLM, name: string, r: number, amp: number, rslora: boolean): void {
  addAdapter(model, name, { ...LORA_DEFAULTS, r, alpha: 2 * r, dropout: 0, useRslora: rslora }, 3);
  let k = 0;
  for (const [key, p] of adapterParameters(model, name))
    if (key.includes('lora_B')) {
      const v = p.as('f32');
      for (let i = 0; i < v.length; i++) v[i] = amp * Math.sin(i * 0.37 + k);
      k++;
    }
}

/** lorakit's greedy tokens from `ids` (the adapter active on the model, if any). */
function greedy(m: LoadedModel, ids: number[], n: number): number[] {
  return generate(m.model, m.tokenizer, { inputIds: ids, maxNewTokens: n, temperature: 0 }).tokenIds;
}

test('llama.cpp: stories260K GGUF exports (f16, q8_0) and a GGUF LoRA generate lorakit’s greedy tokens', async (t) => {
  const mod = await nodeLlama();
  if (!mod) return t.skip('node-llama-cpp is not installed (npm install)');
  const dir = sharedData('models', 'stories260K-hf');
  if (!dir) return t.skip('../shared/data is absent');
  const { model, tokenizer, path } = await loadModel(dir);
  try {
    const ids = tokenizer.encode('Once upon a time, there was a little');
    const f16 = join(work, 'stories-f16.gguf');
    const r = await exportGGUF(model, tokenizer, path, f16, { quant: 'f16' });
    assert.deepEqual(r.warnings, []);
    const back = await loadModel(f16);
    try {
      assert.ok(sameEncoding(back.tokenizer, tokenizer));
      const want = greedy(back, ids, 24);
      assert.deepEqual(await llamaGreedy(mod, f16, ids, 24), want, 'f16 export in llama.cpp');
      const q8 = join(work, 'stories-q8_0.gguf');
      await exportGGUF(model, tokenizer, path, q8, { quant: 'q8_0' });
      const got = await llamaGreedy(mod, q8, ids, 24);
      t.diagnostic(
        `stories260K q8_0: llama.cpp agrees with lorakit (f16 weights) on ${got.filter((x, i) => x === want[i]).length}/24 greedy tokens`,
      );
      // The same adapter, in lorakit on the f16 base and in llama.cpp as a GGUF LoRA on that file.
      randomAdapter(back.model, 'a', 4, 0.2, true);
      const adapted = greedy(back, ids, 24);
      assert.notDeepEqual(adapted, want, 'the adapter changes the output');
      const lora = join(work, 'stories-lora.gguf');
      exportGGUFLora(back.model, 'a', lora);
      assert.deepEqual(await llamaGreedy(mod, f16, ids, 24, lora), adapted, 'GGUF LoRA in llama.cpp');
    } finally {
      back.model.dispose();
    }
  } finally {
    model.dispose();
  }
});

test('llama.cpp: SmolLM2 f16 export gives identical greedy tokens; q8_0 agreement; a GGUF LoRA identical', async (t) => {
  const mod = await nodeLlama();
  if (!mod) return t.skip('node-llama-cpp is not installed (npm install)');
  const cache = join(projectRoot, '.cache', 'models');
  const src = existsSync(cache) ? readdirSync(cache).find((f) => /smollm2.*\.gguf$/i.test(f)) : undefined;
  if (!src) return t.skip('SmolLM2 is absent: run scripts/fetch-smollm2.sh');
  const { model, tokenizer, path } = await loadModel(join(cache, src));
  const f16 = join(work, 'smollm2-f16.gguf');
  const q8 = join(work, 'smollm2-q8_0.gguf');
  try {
    await exportGGUF(model, tokenizer, path, f16, { quant: 'f16' });
    await exportGGUF(model, tokenizer, path, q8, { quant: 'q8_0' });
  } finally {
    model.dispose();
  }
  const back = await loadModel(f16);
  try {
    const prompt = 'The capital of France is';
    const ids = back.tokenizer.encode(prompt);
    const lm = await (await getLlama(mod)).loadModel({ modelPath: f16 });
    assert.deepEqual(
      [...lm.tokenize(TOKENIZER_CHECK_TEXT)],
      back.tokenizer.encode(TOKENIZER_CHECK_TEXT, { addSpecialTokens: false }),
      'llama.cpp tokenizes as lorakit',
    );
    await lm.dispose();
    const want = greedy(back, ids, 16);
    assert.deepEqual(await llamaGreedy(mod, f16, ids, 16), want, 'f16 export in llama.cpp');
    const got = await llamaGreedy(mod, q8, ids, 16);
    t.diagnostic(
      `SmolLM2 q8_0: llama.cpp agrees with lorakit (f16 weights) on ${got.filter((x, i) => x === want[i]).length}/16 greedy tokens`,
    );
    // (rsLoRA is checked on stories260K above; one plain LoRA here keeps the test short.)
    randomAdapter(back.model, 'lora', 8, 0.1, false);
    const adapted = greedy(back, ids, 16);
    assert.notDeepEqual(adapted, want, 'the adapter changes the output');
    const lora = join(work, 'smollm2-lora.gguf');
    exportGGUFLora(back.model, 'lora', lora);
    assert.deepEqual(await llamaGreedy(mod, f16, ids, 16, lora), adapted, 'GGUF LoRA in llama.cpp');
  } finally {
    back.model.dispose();
  }
});

test('lorakit export: formats from the command line, and clear errors', async (t) => {
  const dir = fixture('models', 'llama');
  const lora = fixture('peft', 'llama-lora', 'adapter');
  const dora = fixture('peft', 'llama-dora', 'adapter');
  if (!dir || !lora || !dora) return t.skip(SKIP);
  const out = join(work, 'cli');
  mkdirSync(out);
  let r = cli([
    'export',
    '--model',
    dir,
    '--adapter',
    lora,
    '--format',
    'gguf',
    '--out',
    join(out, 'm.gguf'),
    '--quant',
    'q8_0',
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /GGUF q8_0/);
  r = cli([
    'export',
    '--model',
    dir,
    '--adapter',
    lora,
    '--format',
    'gguf-lora',
    '--out',
    join(out, 'sub', 'a.gguf'),
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(existsSync(join(out, 'sub', 'a.gguf')));
  r = cli(['export', '--model', dir, '--adapter', lora, '--format', 'safetensors', '--out', join(out, 'hf')]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(existsSync(join(out, 'hf', 'model.safetensors')));
  // Usage errors, checked in-process (exit code 2 in the CLI): nothing is loaded or written.
  const usage: [string[], RegExp][] = [
    [['--format', 'gguf'], /^lorakit export: --out is required\.$/],
    [['--out', join(out, 'x.gguf')], /^lorakit export: --format is required/],
    [['--format', 'ggml', '--out', 'x'], /--format must be one of safetensors, gguf, gguf-lora, got 'ggml'/],
    [
      ['--format', 'gguf-lora', '--out', join(out, 'x.gguf')],
      /^lorakit export: --format gguf-lora needs --adapter DIR\.$/,
    ],
    [
      ['--format', 'safetensors', '--quant', 'q8_0', '--out', join(out, 'y')],
      /--quant applies to gguf and gguf-lora; use --dtype/,
    ],
    [
      ['--format', 'gguf', '--dtype', 'float16', '--out', join(out, 'y.gguf')],
      /--dtype applies to safetensors; use --quant for gguf/,
    ],
    [
      ['--format', 'gguf-lora', '--adapter', lora, '--quant', 'q4_0', '--out', join(out, 'y.gguf')],
      /a GGUF LoRA is written as f32, f16 or q8_0, not q4_0/,
    ],
    [['--format', 'gguf', '--out', out], /is a folder; give the path of the \.gguf file to write/],
    [
      ['--format', 'safetensors', '--out', out],
      /--out .* already exists and is not empty; choose a new folder/,
    ],
  ];
  for (const [args, re] of usage)
    await assert.rejects(
      runExport(['--model', dir, ...args]),
      (e: unknown) => e instanceof UsageError && re.test(e.message),
      args.join(' '),
    );
  // Errors met while exporting: exit code 1, one sentence, no file left behind.
  for (const [args, re] of [
    [
      ['--format', 'gguf-lora', '--adapter', dora, '--out', join(out, 'd.gguf')],
      /^lorakit: a DoRA adapter cannot be written as a GGUF LoRA .*\n$/,
    ],
  ] as const) {
    r = cli(['export', '--model', dir, ...args]);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
  }
  assert.equal(existsSync(join(out, 'd.gguf')), false);
  assert.deepEqual(
    readdirSync(out).filter((f) => f.includes('tmp')),
    [],
  );
  writeFileSync(join(out, 'done'), '');
});

test('tokenizer metadata: a byte-level BPE tokenizer.json becomes gpt2 + the llama.cpp pre-tokenizer that splits alike', async (t) => {
  const cache = join(projectRoot, '.cache', 'models');
  const src = existsSync(cache) ? readdirSync(cache).find((f) => /smollm2.*\.gguf$/i.test(f)) : undefined;
  if (!src) return t.skip('SmolLM2 is absent: run scripts/fetch-smollm2.sh');
  const f = await readGGUF(join(cache, src));
  const tok = Tokenizer.fromGGUF(f.metadata);
  const { tokenizer, config } = hfTokenizerFromGGUF(f.metadata, tok);
  const vocab = Number(f.get('llama.vocab_size'));
  // As synthesized (Split regexes), and as SmolLM2's own tokenizer.json has it (Digits + ByteLevel).
  const variants: [string, unknown][] = [
    ['split', tokenizer.pre_tokenizer],
    [
      'digits',
      {
        type: 'Sequence',
        pretokenizers: [
          { type: 'Digits', individual_digits: true },
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
        ],
      },
    ],
  ];
  for (const [name, pre] of variants) {
    const dir = join(work, `tok-${name}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({ ...tokenizer, pre_tokenizer: pre }));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    const hf = Tokenizer.fromFile(join(dir, 'tokenizer.json'));
    assert.ok(sameEncoding(hf, tok), `${name}: the synthesized tokenizer.json splits as the GGUF tokenizer`);
    const meta = ggufTokenizerFromHF(dir, hf, vocab);
    assert.deepEqual(meta.warnings, []);
    const got = metadataOf(meta.kvs);
    assert.equal(got['tokenizer.ggml.model'], 'gpt2');
    assert.equal(got['tokenizer.ggml.pre'], 'smollm');
    for (const key of ['tokens', 'merges', 'token_type', 'bos_token_id', 'eos_token_id', 'add_bos_token'])
      assert.deepEqual(
        got[`tokenizer.ggml.${key}`],
        f.get(`tokenizer.ggml.${key}`),
        `${name}: tokenizer.ggml.${key}`,
      );
    assert.equal(got['tokenizer.chat_template'], f.get('tokenizer.chat_template'));
  }
});
