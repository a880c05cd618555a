// Fuzzing the file readers: real headers (a safetensors file from our writer, a GGUF from our exporter,
// a PEFT adapter folder from saveAdapter) corrupted by bit flips, truncation, length fields set to
// huge or negative values, wrong dtypes and types, overlapping offsets and binary names, then fed to
// the real readers and, for a handful, to `lorakit inspect`. Every failure must be a plain Error whose
// message is one line under 300 characters starting with "lorakit": no RangeError or TypeError, no
// abort, no allocation beyond what the file holds. Seeded and bounded: the same few hundred cases
// every run.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { exportGGUF } from '../src/export/gguf.js';
import { readGGUF } from '../src/io/gguf.js';
import { openSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { parseModelConfig } from '../src/models/config.js';
import { configFromGGUF } from '../src/models/gguf-model.js';
import type { CausalLM } from '../src/models/llama.js';
import { loadModel } from '../src/models/load.js';
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  addAdapter,
  deleteAdapter,
  loadAdapter,
  saveAdapter,
} from '../src/peft/adapters.js';
import { LORA_DEFAULTS, readPeftConfig } from '../src/peft/config.js';
import { memoryStats, Tensor } from '../src/tensor/tensor.js';
import { projectRoot, rng, sharedData } from './helpers.js';

const CLI = join(projectRoot, 'test', 'lorakit-cli.mts');
const MODEL = sharedData('models', 'stories260K-hf');
const SKIP = 'stories260K-hf is absent from ../shared/data';
const work = mkdtempSync(join(tmpdir(), 'lorakit-fuzz-'));
after(() => rmSync(work, { recursive: true, force: true }));

type Rand = () => number;
const int = (r: Rand, n: number): number => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)];

// ---- checking one case -------------------------------------------------------------------------------

/** What went wrong in the current test's cases, for one assertion at its end that lists them. */
const problems: string[] = [];
function assertNoProblems(): void {
  const n = problems.length;
  const some = problems.splice(0).slice(0, 8);
  assert.deepEqual(some, [], `${n} problems, e.g.:\n${some.join('\n')}`);
}
const tally = { cases: 0, refused: 0, accepted: 0 };

/** Runs fn; an error is fine if it is a plain lorakit Error with a short one-line message. */
function check(what: string, fn: () => void): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    if (!(e instanceof Error) || e.constructor !== Error) {
      const name = e instanceof Error ? e.constructor.name : typeof e;
      problems.push(`${what}: ${name} escaped: ${String(e).slice(0, 200)}`);
    } else if (!e.message.startsWith('lorakit'))
      problems.push(`${what}: message does not start with lorakit: ${e.message.slice(0, 200)}`);
    else if (/[\n\r]/.test(e.message))
      problems.push(`${what}: message spans lines: ${e.message.slice(0, 200)}`);
    else if (e.message.length >= 300)
      problems.push(`${what}: message of ${e.message.length} characters: ${e.message.slice(0, 200)}…`);
    return false;
  }
}

/** One case: the readers on a file, no native memory left behind. */
function runCase(what: string, fn: () => boolean): void {
  tally.cases++;
  const live = memoryStats().liveBytes;
  let ok = false;
  ok =
    check(what, () => {
      ok = fn();
    }) && ok;
  if (ok) tally.accepted++;
  else tally.refused++;
  const leaked = memoryStats().liveBytes - live;
  if (leaked > 0) problems.push(`${what}: ${leaked} bytes of native memory left allocated`);
}

// ---- mutations of raw bytes -------------------------------------------------------------------------

function flipBits(r: Rand, b: Uint8Array, from: number, to: number): Uint8Array {
  const out = b.slice();
  const n = 1 + int(r, 4);
  for (let i = 0; i < n; i++) out[from + int(r, to - from)] ^= 1 << int(r, 8);
  return out;
}

/** Truncated: mostly inside the header, where a cut breaks a field. */
function truncate(r: Rand, b: Uint8Array, headerEnd: number): Uint8Array {
  return b.slice(0, r() < 0.7 ? int(r, headerEnd) : headerEnd + int(r, b.length - headerEnd));
}

function u64Values(size: number): bigint[] {
  return [
    0n,
    1n,
    7n,
    BigInt(size - 1),
    BigInt(size),
    BigInt(size + 1),
    2n ** 31n,
    2n ** 32n - 1n,
    2n ** 32n,
    2n ** 53n + 1n,
    2n ** 63n, // negative as an int64
    2n ** 64n - 1n, // -1 as an int64
    2n ** 62n,
  ];
}
const U32_VALUES = [0, 1, 2, 5, 9, 12, 13, 31, 0x7fffffff, 0x80000000, 0xffffffff];

// ---- GGUF ---------------------------------------------------------------------------------------------

interface Field {
  at: number;
  size: 4 | 8;
  kind: 'count' | 'length' | 'valueType' | 'ndims' | 'dim' | 'ggmlType' | 'offset';
}

/** Positions of a GGUF header's fields (walked as the format lays them out) and where the header ends. */
function ggufFields(b: Uint8Array): { fields: Field[]; headerEnd: number; keys: [number, number][] } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const fields: Field[] = [
    { at: 8, size: 8, kind: 'count' },
    { at: 16, size: 8, kind: 'count' },
  ];
  const keys: [number, number][] = [];
  let p = 24;
  const str = (): [number, number] => {
    fields.push({ at: p, size: 8, kind: 'length' });
    const n = Number(v.getBigUint64(p, true));
    const span: [number, number] = [p + 8, p + 8 + n];
    p += 8 + n;
    return span;
  };
  const SIZE = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8];
  const value = (type: number): void => {
    if (type === 8) str();
    else if (type === 9) {
      fields.push({ at: p, size: 4, kind: 'valueType' });
      const elem = v.getUint32(p, true);
      fields.push({ at: p + 4, size: 8, kind: 'count' });
      const n = Number(v.getBigUint64(p + 4, true));
      p += 12;
      // Long arrays (the vocabulary): their first few elements' fields are enough to mutate.
      for (let i = 0; i < n; i++) {
        const before = fields.length;
        value(elem);
        if (i >= 4) fields.length = before;
      }
    } else p += SIZE[type];
  };
  const nTensors = Number(v.getBigUint64(8, true));
  const nKv = Number(v.getBigUint64(16, true));
  for (let i = 0; i < nKv; i++) {
    keys.push(str());
    fields.push({ at: p, size: 4, kind: 'valueType' });
    const type = v.getUint32(p, true);
    p += 4;
    value(type);
  }
  for (let i = 0; i < nTensors; i++) {
    keys.push(str());
    fields.push({ at: p, size: 4, kind: 'ndims' });
    const nd = v.getUint32(p, true);
    p += 4;
    for (let d = 0; d < nd; d++) {
      fields.push({ at: p, size: 8, kind: 'dim' });
      p += 8;
    }
    fields.push({ at: p, size: 4, kind: 'ggmlType' });
    fields.push({ at: p + 4, size: 8, kind: 'offset' });
    p += 12;
  }
  return { fields, headerEnd: p, keys };
}

function mutateGGUF(r: Rand, b: Uint8Array): { bytes: Uint8Array; how: string } {
  const { fields, headerEnd, keys } = ggufFields(b);
  const out = b.slice();
  const v = new DataView(out.buffer);
  const kind = int(r, 7);
  switch (kind) {
    case 0:
      return { bytes: flipBits(r, b, 0, headerEnd), how: 'bit flips in the header' };
    case 1:
      return { bytes: truncate(r, b, headerEnd), how: 'truncated' };
    case 2: {
      const f = pick(
        r,
        fields.filter((x) => x.size === 8),
      );
      const val = pick(r, u64Values(b.length));
      v.setBigUint64(f.at, val, true);
      return { bytes: out, how: `${f.kind} at ${f.at} set to ${val}` };
    }
    case 3: {
      const f = pick(
        r,
        fields.filter((x) => x.size === 4),
      );
      const val = r() < 0.5 ? pick(r, U32_VALUES) : int(r, 40);
      v.setUint32(f.at, val, true);
      return { bytes: out, how: `${f.kind} at ${f.at} set to ${val}` };
    }
    case 4: {
      // Wrong types: a value type or tensor type replaced by another (valid or not).
      const f = pick(
        r,
        fields.filter((x) => x.kind === 'valueType' || x.kind === 'ggmlType' || x.kind === 'ndims'),
      );
      const val = int(r, 40);
      v.setUint32(f.at, val, true);
      return { bytes: out, how: `${f.kind} at ${f.at} set to ${val}` };
    }
    case 5: {
      // Overlapping tensors: one tensor's offset set to another's, or just past it.
      const offs = fields.filter((x) => x.kind === 'offset');
      const a = pick(r, offs);
      const c = pick(r, offs);
      const val = v.getBigUint64(c.at, true) + BigInt(pick(r, [0, 32, 64]));
      v.setBigUint64(a.at, val, true);
      return { bytes: out, how: `tensor offset at ${a.at} set to ${val}` };
    }
    default: {
      // A key or tensor name overwritten with binary (what error messages then quote), and another
      // header fault so that some message has to name it.
      const [s, e] = pick(r, keys);
      for (let i = s; i < e; i++) out[i] = int(r, 256);
      const f = pick(r, fields);
      if (f.size === 8) v.setBigUint64(f.at, pick(r, u64Values(b.length)), true);
      else v.setUint32(f.at, pick(r, U32_VALUES), true);
      return { bytes: out, how: `name at ${s} overwritten with binary, ${f.kind} at ${f.at} changed` };
    }
  }
}

async function readAllGGUF(path: string): Promise<boolean> {
  let ok = true;
  const f = await readGGUF(path);
  ok =
    check(`${path}: model config`, () => {
      parseModelConfig(configFromGGUF(f), path);
    }) && ok;
  for (const name of f.tensors.keys()) {
    ok =
      check(`${path}: read ${JSON.stringify(name).slice(0, 40)}`, () => {
        f.read(name).dispose();
      }) && ok;
  }
  return ok;
}

// ---- safetensors --------------------------------------------------------------------------------------

interface STEntry {
  dtype: unknown;
  shape: unknown;
  data_offsets: unknown;
}

function splitSafetensors(b: Uint8Array): { header: Record<string, unknown>; data: Uint8Array } {
  const n = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(b.subarray(8, 8 + n))) as Record<string, unknown>;
  return { header, data: b.subarray(8 + n) };
}

/** A safetensors file of this header text (space-padded to 8 bytes, as writers do) and data. */
function joinSafetensors(headerText: string, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(headerText);
  const len = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + len + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(len), true);
  out.fill(0x20, 8, 8 + len);
  out.set(json, 8);
  out.set(data, 8 + len);
  return out;
}

const BAD_DTYPES: unknown[] = [
  'F8_E4M3',
  'I64',
  'F64',
  'BOOL',
  'U8',
  'I8',
  'F16',
  'I32',
  '',
  'f32',
  7,
  null,
  ['F32'],
];
const BAD_SHAPES: unknown[] = [
  [],
  [0],
  [-1],
  [1.5],
  [2 ** 53],
  [2 ** 31, 2 ** 31],
  [2 ** 26, 2 ** 26, 2 ** 26],
  '8',
  null,
  new Array(40).fill(1),
  new Array(100000).fill(1),
  [1e308],
  ['4'],
];

function randomName(r: Rand): string {
  const n = pick(r, [0, 1, 8, 200, 100_000]);
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(int(r, r() < 0.5 ? 0x80 : 0x10000));
  return s;
}

function mutateSafetensors(r: Rand, b: Uint8Array): { bytes: Uint8Array; how: string } {
  const headerEnd = 8 + Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
  const { header, data } = splitSafetensors(b);
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const entry = (): [string, STEntry] => {
    const name = pick(r, names);
    return [name, header[name] as STEntry];
  };
  const kind = int(r, 9);
  switch (kind) {
    case 0:
      return { bytes: flipBits(r, b, 0, headerEnd), how: 'bit flips in the header' };
    case 1:
      return { bytes: truncate(r, b, headerEnd), how: 'truncated' };
    case 2: {
      const out = b.slice();
      const val = pick(r, [
        ...u64Values(b.length),
        100_000_001n,
        BigInt(headerEnd - 9),
        BigInt(headerEnd - 7),
      ]);
      new DataView(out.buffer).setBigUint64(0, val, true);
      return { bytes: out, how: `header length set to ${val}` };
    }
    case 3: {
      const [name, e] = entry();
      e.dtype = pick(r, BAD_DTYPES);
      return {
        bytes: joinSafetensors(JSON.stringify(header), data),
        how: `${name}: dtype ${JSON.stringify(e.dtype)}`,
      };
    }
    case 4: {
      const [name, e] = entry();
      e.shape = pick(r, BAD_SHAPES);
      return { bytes: joinSafetensors(JSON.stringify(header), data), how: `${name}: shape changed` };
    }
    case 5: {
      // Offsets: reversed, overlapping another tensor's, beyond the data, negative, fractional, huge.
      const [name, e] = entry();
      const [, other] = entry();
      const [b0, e0] = e.data_offsets as [number, number];
      const [b1, e1] = other.data_offsets as [number, number];
      e.data_offsets = pick(r, [
        [e0, b0],
        [b1, e1],
        [b1, b1 + (e0 - b0)],
        [b0 + 4, e0 + 4],
        [b0, data.length + 4],
        [-4, e0 - b0 - 4],
        [b0 + 0.5, e0 + 0.5],
        [b0, 2 ** 60],
        [b0, 1e300],
        [b0],
        [b0, e0, e0],
        [String(b0), String(e0)],
        null,
      ]);
      return {
        bytes: joinSafetensors(JSON.stringify(header), data),
        how: `${name}: data_offsets ${JSON.stringify(e.data_offsets)}`,
      };
    }
    case 6: {
      // A tensor renamed to binary, long or empty text; or the same name twice (raw JSON).
      const [name, e] = entry();
      delete header[name];
      if (r() < 0.3) {
        const text = JSON.stringify(header).replace(
          /^\{/,
          `{${JSON.stringify(names.find((n) => n !== name) ?? name)}:${JSON.stringify(e)},`,
        );
        return { bytes: joinSafetensors(text, data), how: `${name}: a name given twice` };
      }
      header[randomName(r)] = e;
      return { bytes: joinSafetensors(JSON.stringify(header), data), how: `${name}: renamed` };
    }
    case 7: {
      header.__metadata__ = pick(r, [
        { format: 1 },
        { format: { nested: 'x' } },
        ['pt'],
        null,
        'pt',
        { [randomName(r)]: null },
        { __proto__: 'x' },
      ]);
      return { bytes: joinSafetensors(JSON.stringify(header), data), how: '__metadata__ changed' };
    }
    default: {
      // A header that is not the JSON object it should be.
      const text = pick(r, [
        'null',
        '[]',
        '1',
        '"x"',
        '{',
        '{"a":',
        '\u0000'.repeat(16),
        JSON.stringify(header).slice(0, 40),
      ]);
      const bytes = joinSafetensors(text, data);
      if (r() < 0.3) bytes[8 + int(r, text.length || 1)] = 0xff; // invalid UTF-8
      return { bytes, how: `header replaced by ${JSON.stringify(text.slice(0, 20))}` };
    }
  }
}

function readAllSafetensors(path: string): boolean {
  const f = openSafetensors(path);
  let ok = true;
  for (const name of f.tensors.keys())
    ok =
      check(`${path}: read`, () => {
        f.read(name, 'f32').dispose();
      }) && ok;
  return ok;
}

// ---- adapter_config.json ---------------------------------------------------------------------------

function mutateAdapterConfig(r: Rand, text: string): { text: string; how: string } {
  const kind = int(r, 4);
  if (kind === 0) {
    const b = new TextEncoder().encode(text);
    return { text: new TextDecoder().decode(flipBits(r, b, 0, b.length)), how: 'bit flips' };
  }
  if (kind === 1) return { text: text.slice(0, int(r, text.length)), how: 'truncated' };
  if (kind === 2)
    return {
      text: pick(r, ['null', '[]', '"LORA"', '1', '', '{}', '\u0000']),
      how: 'not an object',
    };
  const cfg = JSON.parse(text) as Record<string, unknown>;
  const key = pick(r, [
    'r',
    'lora_alpha',
    'lora_dropout',
    'target_modules',
    'peft_type',
    'bias',
    'modules_to_save',
    'use_dora',
    'rank_pattern',
    'fan_in_fan_out',
    'init_lora_weights',
    'layers_to_transform',
  ]);
  const val = pick(r, [
    0,
    -1,
    1.5,
    3,
    1e9,
    2 ** 53,
    'x'.repeat(100_000),
    '16',
    [16],
    null,
    true,
    {},
    { a: 1 },
    ['q_proj'],
    ['nope'],
    [],
    [1, 2],
    '.*\u0000\u001b[31m',
    'all-linear',
    NaN,
  ]);
  if (val === undefined) delete cfg[key];
  else cfg[key] = val;
  return { text: JSON.stringify(cfg), how: `${key} set to ${JSON.stringify(val)?.slice(0, 30)}` };
}

// ---- the cases ---------------------------------------------------------------------------------------

let model: CausalLM | null = null;
let gguf: Uint8Array;
let safetensors: Uint8Array;
let adapterConfig: string;
let adapterWeights: Uint8Array;
/** A few corrupt files of each kind for `lorakit inspect`. */
const forCli: string[] = [];

before(async () => {
  if (!MODEL) return;
  const loaded = await loadModel(MODEL);
  model = loaded.model;
  const gp = join(work, 'small.gguf');
  await exportGGUF(model, loaded.tokenizer, MODEL, gp, { quant: 'q8_0' });
  gguf = new Uint8Array(readFileSync(gp));
  const sp = join(work, 'small.safetensors');
  const t = [
    Tensor.from([1, 2, 3, 4, 5, 6], [2, 3], 'f32'),
    Tensor.from([1, -2, 3], [3], 'i32'),
    Tensor.from([1, 2, 3, 4], [4], 'bf16'),
    Tensor.from([9, 8], [2], 'u8'),
  ];
  writeSafetensors(
    sp,
    { 'a.weight': t[0], 'b.ids': t[1], 'c.half': t[2], 'd.bytes': t[3] },
    { format: 'pt' },
  );
  for (const x of t) x.dispose();
  safetensors = new Uint8Array(readFileSync(sp));
  addAdapter(model, 'fuzz', { ...LORA_DEFAULTS, r: 2, alpha: 4, targetModules: ['q_proj', 'v_proj'] }, 3);
  const ad = join(work, 'adapter');
  await saveAdapter(model, 'fuzz', ad);
  deleteAdapter(model, 'fuzz');
  adapterConfig = readFileSync(join(ad, ADAPTER_CONFIG), 'utf8');
  adapterWeights = new Uint8Array(readFileSync(join(ad, ADAPTER_WEIGHTS)));
});
after(() => model?.dispose());

test('the unmutated files read cleanly (the fuzzer starts from valid headers)', async (t) => {
  if (!model) return t.skip(SKIP);
  const gp = join(work, 'valid.gguf');
  writeFileSync(gp, gguf);
  assert.equal(await readAllGGUF(gp), true);
  const sp = join(work, 'valid.safetensors');
  writeFileSync(sp, safetensors);
  assert.equal(readAllSafetensors(sp), true);
  const ad = join(work, 'valid-adapter');
  mkdirSync(ad);
  writeFileSync(join(ad, ADAPTER_CONFIG), adapterConfig);
  writeFileSync(join(ad, ADAPTER_WEIGHTS), adapterWeights);
  loadAdapter(model, ad, 'valid');
  deleteAdapter(model, 'valid');
  assertNoProblems();
});

test('GGUF: 150 corrupt headers fail with one clear line each, or read', async (t) => {
  if (!model) return t.skip(SKIP);
  const r = rng(1501);
  for (let i = 0; i < 150; i++) {
    const { bytes, how } = mutateGGUF(r, gguf);
    const path = join(work, `g${i}.gguf`);
    writeFileSync(path, bytes);
    tally.cases++;
    const live = memoryStats().liveBytes;
    let ok = false;
    try {
      ok = await readAllGGUF(path);
    } catch (e) {
      check(`gguf case ${i} (${how})`, () => {
        throw e;
      });
      if (forCli.filter((p) => p.endsWith('.gguf')).length < 3 && i % 3 === 0) forCli.push(path);
    }
    if (ok) tally.accepted++;
    else tally.refused++;
    if (memoryStats().liveBytes > live)
      problems.push(`gguf case ${i} (${how}): native memory left allocated`);
    if (!forCli.includes(path)) rmSync(path);
  }
  assertNoProblems();
});

test('safetensors: 150 corrupt files fail with one clear line each, or read', (t) => {
  if (!model) return t.skip(SKIP);
  const r = rng(1502);
  for (let i = 0; i < 150; i++) {
    const { bytes, how } = mutateSafetensors(r, safetensors);
    const path = join(work, `s${i}.safetensors`);
    writeFileSync(path, bytes);
    runCase(`safetensors case ${i} (${how})`, () => readAllSafetensors(path));
    if (forCli.filter((p) => p.endsWith('.safetensors')).length < 3 && i % 7 === 0) forCli.push(path);
    else rmSync(path);
  }
  assertNoProblems();
});

test('adapter folders: 120 corrupt configs and weight files fail with one clear line each, or read', (t) => {
  if (!model) return t.skip(SKIP);
  const m = model;
  // Every config that is JSON but not an object, once each, before the random cases.
  for (const text of ['null', '[]', '1', '"LORA"', '', '{}', '\u0000', 'true']) {
    const path = join(work, 'whole', ADAPTER_CONFIG);
    mkdirSync(join(work, 'whole'), { recursive: true });
    writeFileSync(path, text);
    runCase(`adapter config ${JSON.stringify(text)}`, () => {
      readPeftConfig(path);
      return true;
    });
  }
  const r = rng(1503);
  for (let i = 0; i < 120; i++) {
    const dir = join(work, `a${i}`);
    mkdirSync(dir);
    let config = adapterConfig;
    let weights = adapterWeights;
    let how: string;
    if (i % 2 === 0) {
      const c = mutateAdapterConfig(r, adapterConfig);
      config = c.text;
      how = `config: ${c.how}`;
    } else {
      const w = mutateSafetensors(r, adapterWeights);
      weights = w.bytes;
      how = `weights: ${w.how}`;
    }
    writeFileSync(join(dir, ADAPTER_CONFIG), config);
    writeFileSync(join(dir, ADAPTER_WEIGHTS), weights);
    runCase(`adapter case ${i} (${how})`, () => {
      let ok = check(`adapter case ${i} (${how}): config`, () => {
        readPeftConfig(join(dir, ADAPTER_CONFIG));
      });
      ok =
        check(`adapter case ${i} (${how}): weights`, () => {
          readAllSafetensors(join(dir, ADAPTER_WEIGHTS));
        }) && ok;
      // Into the model too: a config claiming a huge r must be refused before anything is allocated.
      loadAdapter(m, dir, 'fuzz');
      deleteAdapter(m, 'fuzz');
      return ok;
    });
    if (m.adapterConfigs.has('fuzz')) {
      problems.push(`adapter case ${i} (${how}): a failed load left the adapter on the model`);
      deleteAdapter(m, 'fuzz');
    }
    if (forCli.filter((p) => p.startsWith(join(work, 'a'))).length < 2 && i % 5 === 1) forCli.push(dir);
    else rmSync(dir, { recursive: true });
  }
  assertNoProblems();
});

test('lorakit inspect on a handful of the corrupt files: exit 1 and one lorakit line, or a summary', (t) => {
  if (!model) return t.skip(SKIP);
  assert.ok(forCli.length >= 4, `only ${forCli.length} files kept for the CLI`);
  for (const path of forCli) {
    tally.cases++;
    const res = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'inspect', path], {
      encoding: 'utf8',
      cwd: projectRoot,
    });
    assert.equal(res.signal, null, `${path}: killed by ${res.signal}`);
    if (res.status === 0) continue;
    assert.equal(res.status, 1, `${path}: exit ${res.status}: ${res.stderr.slice(0, 300)}`);
    const lines = res.stderr.split('\n').filter(Boolean);
    assert.equal(lines.length, 1, `${path}: stderr has ${lines.length} lines: ${res.stderr.slice(0, 300)}`);
    assert.match(lines[0], /^lorakit/);
    assert.ok(lines[0].length < 300, `${path}: ${lines[0].length} characters`);
  }
});

test('the fuzzer ran its cases without a huge allocation', (t) => {
  if (!model) return t.skip(SKIP);
  // Every length is checked against the file size before allocating: the files are under 1 MB.
  const maxRss = process.resourceUsage().maxRSS * 1024;
  assert.ok(maxRss < 1.5 * 2 ** 30, `peak resident memory ${(maxRss / 2 ** 20).toFixed(0)} MiB`);
  t.diagnostic(`${tally.cases} cases: ${tally.refused} refused cleanly, ${tally.accepted} read`);
});
