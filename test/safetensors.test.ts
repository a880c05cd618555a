import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openSafetensors, openSafetensorsModel, writeSafetensors } from '../src/io/safetensors.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../src/tensor/dtype.js';
import { memoryStats, Tensor } from '../src/tensor/tensor.js';
import { fixture, projectRoot, randn, sharedData } from './helpers.js';

const FIXTURE_HINT = 'fixture absent: run scripts/reference/make-all.sh';
const python = join(projectRoot, '.venv-ref', 'bin', 'python');
const work = mkdtempSync(join(tmpdir(), 'lorakit-st-'));
after(() => rmSync(work, { recursive: true, force: true }));

interface Expected {
  dtype: string;
  shape: number[];
  values: number[];
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

test('files written by python safetensors read back identically', (t) => {
  const path = fixture('io', 'st_python.safetensors');
  const jsonPath = fixture('io', 'st_python.json');
  if (!path || !jsonPath) return t.skip(FIXTURE_HINT);
  const expected = JSON.parse(readFileSync(jsonPath, 'utf8')) as {
    metadata: Record<string, string>;
    tensors: Record<string, Expected>;
  };
  const file = openSafetensors(path);
  assert.deepEqual(file.metadata, expected.metadata);
  assert.deepEqual([...file.tensors.keys()].sort(), Object.keys(expected.tensors).sort());
  const nativeDtype: Record<string, string> = {
    F32: 'f32',
    F16: 'f16',
    BF16: 'bf16',
    I32: 'i32',
    I64: 'i32',
    U8: 'u8',
    I8: 'i32',
    BOOL: 'u8',
    F64: 'f32',
  };
  for (const [name, e] of Object.entries(expected.tensors)) {
    const before = memoryStats().liveBytes;
    const info = file.tensors.get(name)!;
    assert.equal(info.dtype, e.dtype, name);
    assert.deepEqual(info.shape, e.shape, name);
    const x = file.read(name);
    assert.equal(x.dtype, nativeDtype[e.dtype], `${name} dtype`);
    assert.deepEqual(x.shape, e.shape, `${name} shape`);
    const want = e.dtype === 'F64' ? e.values.map(Math.fround) : e.values;
    assert.deepEqual(
      Array.from(x.toFloat32()),
      want.map((v) => Math.fround(Number(v))),
      `${name} values`,
    );
    if (e.dtype === 'I64' || e.dtype === 'I32' || e.dtype === 'I8')
      assert.deepEqual(Array.from(x.as('i32')), want, name);
    x.dispose();
    if (['F32', 'F16', 'BF16', 'F64'].includes(e.dtype)) {
      const f = file.read(name, 'f32');
      assert.equal(f.dtype, 'f32');
      assert.deepEqual(Array.from(f.as('f32')), want.map(Math.fround), `${name} as f32`);
      const b = file.read(name, 'bf16');
      assert.equal(b.dtype, 'bf16');
      assert.deepEqual(
        Array.from(b.as('bf16')),
        want.map((v) => f32ToBf16(Math.fround(v))),
        `${name} as bf16`,
      );
      f.dispose();
      b.dispose();
    }
    // (A zero-element tensor's 64 bytes are only returned by the GC finalizer: an addon.cc limitation.)
    if (!e.shape.includes(0)) assert.equal(memoryStats().liveBytes, before, `${name}: every tensor freed`);
  }
});

test('int64 values beyond int32 are refused, not wrapped', (t) => {
  const path = fixture('io', 'st_i64_big.safetensors');
  if (!path) return t.skip(FIXTURE_HINT);
  const before = memoryStats().liveBytes;
  assert.throws(
    () => openSafetensors(path).read('big'),
    /^Error: lorakit: .*tensor 'big': int64 value 1099511627776 at index 1 does not fit in int32\.$/,
  );
  assert.equal(memoryStats().liveBytes, before, 'the half-read tensor was freed');
});

test('sharded model folder reads through one API; missing shard is a clear error', (t) => {
  const dir = fixture('io', 'sharded');
  const valuesPath = fixture('io', 'sharded.json');
  if (!dir || !valuesPath) return t.skip(FIXTURE_HINT);
  const expected = JSON.parse(readFileSync(valuesPath, 'utf8')) as Record<
    string,
    { shape: number[]; values: number[] }
  >;
  const model = openSafetensorsModel(dir);
  assert.equal(model.files.length, 2);
  assert.deepEqual([...model.tensors.keys()].sort(), Object.keys(expected).sort());
  assert.equal(model.metadata.total_size, 4 * (11 * 7 + 3 * 7 + 7) + 2 * 7 * 7);
  for (const [name, e] of Object.entries(expected)) {
    const x = model.read(name, 'f32');
    assert.deepEqual(x.shape, e.shape);
    assert.deepEqual(Array.from(x.as('f32')), e.values, name);
    x.dispose();
  }
  const bf = model.read('layers.0.w');
  assert.equal(bf.dtype, 'bf16', 'BF16 stays bf16 by default');
  bf.dispose();
  assert.ok(model.has('norm.weight') && !model.has('nope'));
  assert.throws(() => model.read('nope'), /^Error: lorakit: .*no tensor named 'nope'/);

  const broken = join(work, 'missing-shard');
  mkdirSync(broken);
  copyFileSync(join(dir, 'model.safetensors.index.json'), join(broken, 'model.safetensors.index.json'));
  copyFileSync(
    join(dir, 'model-00001-of-00002.safetensors'),
    join(broken, 'model-00001-of-00002.safetensors'),
  );
  assert.throws(
    () => openSafetensorsModel(broken),
    /^Error: lorakit: .*missing-shard: shard model-00002-of-00002\.safetensors listed in model\.safetensors\.index\.json is missing\.$/,
  );
  const lying = join(work, 'lying-index');
  mkdirSync(lying);
  for (const f of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'])
    copyFileSync(join(dir, f), join(lying, f));
  writeFileSync(
    join(lying, 'model.safetensors.index.json'),
    JSON.stringify({ weight_map: { 'ghost.weight': 'model-00001-of-00002.safetensors' } }),
  );
  assert.throws(
    () => openSafetensorsModel(lying),
    /has no tensor 'ghost\.weight', which model\.safetensors\.index\.json places there\./,
  );
  writeFileSync(
    join(lying, 'model.safetensors.index.json'),
    JSON.stringify({ weight_map: { x: '../escape.safetensors' } }),
  );
  assert.throws(() => openSafetensorsModel(lying), /names an invalid shard/);
  assert.throws(
    () => openSafetensorsModel(join(work)),
    /has neither model\.safetensors nor model\.safetensors\.index\.json/,
  );
});

function sampleTensors(): Record<string, Tensor> {
  return {
    'b.weight': Tensor.from(randn(7 * 33, 1), [7, 33]),
    'a.bias': Tensor.from(randn(127, 2), [127]),
    'z.half': Tensor.from(randn(33, 3), [3, 11], 'f16'),
    'm.bf16': Tensor.from(randn(7, 4), [7], 'bf16'),
    ids: Tensor.from([3, -1, 2147483647, -2147483648, 7], [5], 'i32'),
    mask: Tensor.from([1, 0, 255], [3], 'u8'),
    scalar: Tensor.from([0.5], []),
    empty: Tensor.empty([0, 3]),
    'ünïcode.wéight': Tensor.from(randn(3, 5), [3]),
  };
}

test('writeSafetensors round-trips, aligns the header to 8 bytes, and leaves no temp file', () => {
  const path = join(work, 'ours.safetensors');
  const tensors = sampleTensors();
  writeSafetensors(path, tensors, { format: 'pt' });
  assert.ok(!existsSync(`${path}.tmp`));
  const bytes = new Uint8Array(readFileSync(path));
  const headerLen = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  assert.equal(headerLen % 8, 0);
  const file = openSafetensors(path);
  assert.deepEqual(file.metadata, { format: 'pt' });
  const dtypes: Record<string, string> = { f32: 'F32', bf16: 'BF16', f16: 'F16', i32: 'I32', u8: 'U8' };
  for (const [name, x] of Object.entries(tensors)) {
    assert.equal(file.tensors.get(name)!.dtype, dtypes[x.dtype]);
    const y = file.read(name);
    assert.equal(y.dtype, x.dtype);
    assert.deepEqual(y.shape, x.shape);
    assert.deepEqual(Array.from(y.data()), Array.from(x.data()), name);
    y.dispose();
  }
  // f16 -> f32 and bf16 -> f32 conversions on read are exact.
  const h = file.read('z.half', 'f32');
  assert.deepEqual(Array.from(h.as('f32')), Array.from(tensors['z.half'].as('f16'), f16ToF32));
  const b = file.read('m.bf16', 'f32');
  assert.deepEqual(Array.from(b.as('f32')), Array.from(tensors['m.bf16'].as('bf16'), bf16ToF32));
  h.dispose();
  b.dispose();
  assert.ok(f32ToF16(1) === 0x3c00);
  for (const x of Object.values(tensors)) x.dispose();
});

test('files we write load in python safetensors, byte-identical to its own writer', (t) => {
  if (!existsSync(python))
    return t.skip('no .venv-ref python: create it from scripts/reference/requirements.txt');
  const path = join(work, 'for-python.safetensors');
  const tensors = sampleTensors();
  writeSafetensors(path, tensors, { format: 'pt' });
  const script = `
import sys, json, hashlib, torch
from safetensors import safe_open
from safetensors.torch import save_file
path, resaved = sys.argv[1], sys.argv[2]
out, loaded = {}, {}
with safe_open(path, framework="pt") as f:
    meta = f.metadata()
    for k in f.keys():
        x = f.get_tensor(k)
        loaded[k] = x
        raw = x.contiguous().reshape(-1).view(torch.uint8)
        out[k] = {"dtype": str(x.dtype), "shape": list(x.shape), "sha256": hashlib.sha256(raw.numpy().tobytes()).hexdigest()}
save_file(loaded, resaved, metadata=meta)
print(json.dumps({"metadata": meta, "tensors": out}))
`;
  const resaved = join(work, 'resaved.safetensors');
  const r = spawnSync(python, ['-c', script, path, resaved], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout) as {
    metadata: Record<string, string>;
    tensors: Record<string, { dtype: string; shape: number[]; sha256: string }>;
  };
  assert.deepEqual(got.metadata, { format: 'pt' });
  const torchDtype: Record<string, string> = {
    f32: 'torch.float32',
    bf16: 'torch.bfloat16',
    f16: 'torch.float16',
    i32: 'torch.int32',
    u8: 'torch.uint8',
  };
  for (const [name, x] of Object.entries(tensors)) {
    const g = got.tensors[name];
    assert.ok(g, `python sees ${name}`);
    assert.equal(g.dtype, torchDtype[x.dtype], name);
    assert.deepEqual(g.shape, x.shape, name);
    const d = x.data();
    assert.equal(g.sha256, sha256(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)), `${name} bytes`);
  }
  assert.equal(
    sha256(new Uint8Array(readFileSync(resaved))),
    sha256(new Uint8Array(readFileSync(path))),
    'python writes the very same file',
  );
  for (const x of Object.values(tensors)) x.dispose();
});

// ---- corruption --------------------------------------------------------------------------------------

function craft(
  name: string,
  header: unknown,
  data: Uint8Array,
  opts: { lenOverride?: bigint; raw?: string } = {},
): string {
  const json = new TextEncoder().encode(opts.raw ?? JSON.stringify(header));
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, opts.lenOverride ?? BigInt(json.length), true);
  const all = new Uint8Array(8 + json.length + data.length);
  all.set(len);
  all.set(json, 8);
  all.set(data, 8 + json.length);
  const p = join(work, name);
  writeFileSync(p, all);
  return p;
}

test('every kind of corrupt file fails with a clear error naming the file', () => {
  const data = new Uint8Array(64).fill(1);
  const ok = { a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };
  assert.doesNotThrow(() => openSafetensors(craft('ok.safetensors', ok, data)));
  const cases: [string, () => string, RegExp][] = [
    [
      'tiny',
      () => {
        writeFileSync(join(work, 'tiny'), new Uint8Array(5));
        return join(work, 'tiny');
      },
      /too short to be a safetensors file \(5 bytes\)/,
    ],
    [
      'header-long',
      () => craft('header-long', ok, data, { lenOverride: 1000n }),
      /header length 1000 exceeds the file size/,
    ],
    [
      'header-huge',
      () => craft('header-huge', ok, data, { lenOverride: 2n ** 63n }),
      /header length \d+ exceeds the file size/,
    ],
    [
      'not-json',
      () => craft('not-json', null, data, { raw: '{"a": {"dtype": "F32"' }),
      /corrupt header \(not valid UTF-8 JSON\)/,
    ],
    ['array', () => craft('array', [1, 2], data), /corrupt header \(the JSON is not an object\)/],
    [
      'bad-utf8',
      () => {
        const p = craft('bad-utf8', null, data, { raw: '{"a":"\u00ff"}' });
        const b = new Uint8Array(readFileSync(p));
        b[10] = 0xff;
        b[11] = 0xfe;
        writeFileSync(p, b);
        return p;
      },
      /corrupt header/,
    ],
    [
      'dtype',
      () => craft('dtype', { a: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } }, data),
      /tensor 'a' has dtype 'F8_E4M3', which lorakit does not read/,
    ],
    [
      'no-dtype',
      () => craft('no-dtype', { a: { shape: [2], data_offsets: [0, 8] } }, data),
      /tensor 'a' has no dtype/,
    ],
    ['entry', () => craft('entry', { a: 7 }, data), /tensor 'a' has no dtype\/shape\/data_offsets entry/],
    [
      'shape-neg',
      () => craft('shape-neg', { a: { dtype: 'F32', shape: [-1, 2], data_offsets: [0, 8] } }, data),
      /tensor 'a' has an invalid shape \[-1,2\]/,
    ],
    [
      'shape-float',
      () => craft('shape-float', { a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 8] } }, data),
      /invalid shape/,
    ],
    [
      'offsets',
      () => craft('offsets', { a: { dtype: 'F32', shape: [2], data_offsets: [8] } }, data),
      /invalid data_offsets \[8\]/,
    ],
    [
      'reversed',
      () => craft('reversed', { a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, data),
      /data_offsets \[8, 0\] outside the 64-byte data section/,
    ],
    [
      'beyond',
      () => craft('beyond', { a: { dtype: 'F32', shape: [20], data_offsets: [0, 80] } }, data),
      /data_offsets \[0, 80\] outside the 64-byte data section \(truncated file\?\)/,
    ],
    [
      'lying',
      () => craft('lying', { a: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, data),
      /tensor 'a' \(F32 \[3\]\) needs 12 bytes but its data_offsets span 16/,
    ],
    [
      'overlap',
      () =>
        craft(
          'overlap',
          {
            a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
            b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
          },
          data,
        ),
      /tensors 'a' and 'b' overlap in the data section/,
    ],
    [
      'meta',
      () => craft('meta', { __metadata__: { format: 3 }, ...ok }, data),
      /__metadata__ value 'format' is not a string/,
    ],
    [
      'meta-array',
      () => craft('meta-array', { __metadata__: ['x'], ...ok }, data),
      /__metadata__ must be an object of strings/,
    ],
  ];
  for (const [name, make, re] of cases) {
    const p = make();
    assert.throws(
      () => openSafetensors(p),
      (e: unknown) => {
        assert.ok(e instanceof Error);
        assert.ok(e.message.startsWith(`lorakit: ${p}: `), `${name}: message names the file: ${e.message}`);
        assert.match(e.message, re, name);
        return true;
      },
      name,
    );
  }
  // A file cut short after its header was written: the data section no longer holds the tensors.
  const full = new Uint8Array(readFileSync(join(work, 'ok.safetensors')));
  const cut = join(work, 'cut.safetensors');
  writeFileSync(cut, full.subarray(0, full.length - 60));
  assert.throws(() => openSafetensors(cut), /outside the 4-byte data section \(truncated file\?\)/);
  assert.throws(
    () => openSafetensors(join(work, 'does-not-exist.safetensors')),
    /^Error: lorakit: .*does-not-exist\.safetensors: no such file\.$/,
  );
  assert.throws(() => openSafetensors(work), /is a folder, not a file/);
});

test('bad reads and writes are clear errors', () => {
  const path = join(work, 'small.safetensors');
  const x = Tensor.from([1, 2, 3], [3]);
  writeSafetensors(path, { x });
  const f = openSafetensors(path);
  assert.throws(
    () => f.read('y'),
    /^Error: lorakit: .*small\.safetensors: no tensor named 'y' \(it has 1: x\)\.$/,
  );
  x.dispose();
  assert.throws(
    () => writeSafetensors(path, { x }),
    /^Error: lorakit: writeSafetensors: tensor 'x' was disposed\.$/,
  );
  assert.throws(
    () => writeSafetensors(join(work, 'no', 'such', 'dir.safetensors'), {}),
    /^Error: lorakit: .*dir\.safetensors: cannot write/,
  );
  assert.deepEqual(
    Object.keys(openSafetensors(path).metadata),
    [],
    'the failed write left the file as it was',
  );
});

test('the real stories260K model.safetensors lists its tensors', (t) => {
  const path = sharedData('models', 'stories260K-hf', 'model.safetensors');
  if (!path)
    return t.skip('shared data absent: ../shared/data/models/stories260K-hf (see shared/data/SOURCES.md)');
  const model = openSafetensorsModel(join(path, '..'));
  const names = [...model.tensors.keys()];
  assert.ok(names.includes('model.embed_tokens.weight'));
  assert.ok(names.includes('model.layers.4.mlp.down_proj.weight'));
  assert.deepEqual(model.tensors.get('model.embed_tokens.weight')!.shape, [512, 64]);
  assert.deepEqual(model.tensors.get('model.layers.0.self_attn.k_proj.weight')!.shape, [32, 64]);
  let params = 0;
  for (const info of model.tensors.values()) params += info.shape.reduce((a, b) => a * b, 1);
  assert.ok(params > 200_000 && params < 300_000, `about 260K parameters, got ${params}`);
  const e = model.read('model.embed_tokens.weight');
  assert.ok(e.as('f32').some((v) => v !== 0));
  e.dispose();
});
