import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { readGGUF, type GGUFValue } from '../src/io/gguf.js';
import { dequantizeBlocksJs, GGML_TYPES } from '../src/io/gguf-quants.js';
import { cpu } from '../src/backend/cpu/addon.js';
import { f32ToBf16 } from '../src/tensor/dtype.js';
import { memoryStats } from '../src/tensor/tensor.js';
import { fixture, projectRoot } from './helpers.js';

const FIXTURE_HINT = 'fixture absent: run scripts/reference/make-all.sh';
const work = mkdtempSync(join(tmpdir(), 'lorakit-gguf-'));
after(() => rmSync(work, { recursive: true, force: true }));

interface FixtureInfo {
  name: string;
  type: string;
  shape: number[];
  dims: number[];
  offset: number;
  count: number;
}
type JsonValue = number | string | boolean | { bigint: string } | JsonValue[];

function fromJson(v: JsonValue): GGUFValue {
  if (Array.isArray(v)) return v.map(fromJson);
  if (typeof v === 'object') return BigInt(v.bigint);
  return v;
}

function loadFixture(
  name: string,
): { path: string; meta: Record<string, JsonValue>; tensors: FixtureInfo[]; deq: Float32Array } | null {
  const path = fixture('io', `${name}.gguf`);
  const json = fixture('io', `${name}.json`);
  const bin = fixture('io', `${name}.deq.bin`);
  if (!path || !json || !bin) return null;
  const { metadata, tensors } = JSON.parse(readFileSync(json, 'utf8')) as {
    metadata: Record<string, JsonValue>;
    tensors: FixtureInfo[];
  };
  const raw = readFileSync(bin);
  const deq = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  return { path, meta: metadata, tensors, deq };
}

/** Bit patterns, so -0 / +0 and NaNs compare exactly. */
const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);

async function checkFixture(
  name: string,
  path: string,
  fx: NonNullable<ReturnType<typeof loadFixture>>,
): Promise<void> {
  const g = await readGGUF(path);
  // metadata: every value type, 64-bit values as bigint only beyond 2^53, floats as stored (f32)
  assert.deepEqual(Object.keys(g.metadata), Object.keys(fx.meta), `${name}: metadata keys in file order`);
  for (const [k, v] of Object.entries(fx.meta)) assert.deepEqual(g.metadata[k], fromJson(v), `${name}: ${k}`);
  assert.equal(typeof g.metadata['test.uint64_small'], 'number');
  assert.equal(typeof g.metadata['test.uint64_big'], 'bigint');
  assert.equal(g.metadataTypes['test.uint8'], 'uint8');
  assert.equal(g.metadataTypes['test.float64'], 'float64');
  assert.equal(g.metadataTypes['test.array_nested'], 'array');
  assert.deepEqual(
    [...g.tensors.keys()],
    fx.tensors.map((t) => t.name),
    `${name}: tensor order`,
  );
  for (const e of fx.tensors) {
    const info = g.info(e.name);
    assert.equal(info.typeName, e.type, e.name);
    assert.equal(info.type, [...GGML_TYPES.values()].find((t) => t.name === e.type)!.id);
    assert.deepEqual(info.dims, e.dims, e.name);
    assert.deepEqual(info.shape, e.shape, e.name);
    assert.equal(info.byteOffset % g.alignment, 0);
    const before = memoryStats().liveBytes;
    const x = g.read(e.name);
    assert.equal(x.dtype, 'f32');
    assert.deepEqual(x.shape, e.shape);
    const want = fx.deq.subarray(e.offset, e.offset + e.count);
    assert.deepEqual(bits(x.as('f32')), bits(want), `${name}: ${e.name} (${e.type}) dequantizes bit for bit`);
    const b = g.read(e.name, 'bf16');
    assert.equal(b.dtype, 'bf16');
    assert.deepEqual(Array.from(b.as('bf16')), Array.from(want, f32ToBf16), `${e.name} as bf16`);
    x.dispose();
    b.dispose();
    assert.equal(memoryStats().liveBytes, before);
  }
}

test('GGUF metadata of every type and every supported tensor type match gguf-py bit for bit', async (t) => {
  const fx = loadFixture('gguf_all');
  if (!fx) return t.skip(FIXTURE_HINT);
  await checkFixture('gguf_all', fx.path, fx);
  const g = await readGGUF(fx.path);
  assert.equal(g.version, 3);
  assert.equal(g.alignment, 32);
  const types = new Set(fx.tensors.map((e) => e.type));
  for (const want of ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q4_K', 'Q5_K', 'Q6_K'])
    assert.ok(types.has(want), `fixture covers ${want}`);
});

test('general.alignment is honored', async (t) => {
  const fx = loadFixture('gguf_align64');
  if (!fx) return t.skip(FIXTURE_HINT);
  await checkFixture('gguf_align64', fx.path, fx);
  const g = await readGGUF(fx.path);
  assert.equal(g.alignment, 64);
  assert.equal(g.dataOffset % 64, 0);
});

test('GGUF v2 (same layout, older version field) reads the same', async (t) => {
  const fx = loadFixture('gguf_all');
  if (!fx) return t.skip(FIXTURE_HINT);
  const bytes = new Uint8Array(readFileSync(fx.path));
  new DataView(bytes.buffer).setUint32(4, 2, true);
  const v2 = join(work, 'v2.gguf');
  writeFileSync(v2, bytes);
  const g = await readGGUF(v2);
  assert.equal(g.version, 2);
  const e = fx.tensors.find((x) => x.type === 'Q4_K')!;
  const x = g.read(e.name);
  assert.deepEqual(bits(x.as('f32')), bits(fx.deq.subarray(e.offset, e.offset + e.count)));
  x.dispose();
});

test('the TypeScript dequantizers equal the native kernel when the addon has one', (t) => {
  const native = cpu.ggmlDequantize;
  if (!native)
    return t.skip(
      'the addon has no ggmlDequantize (native/cpu/gguf_dequant.cc not built): TypeScript path only',
    );
  // Random bytes with sane f16 scales: every block type, odd block counts.
  let seed = 7;
  const next = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16) & 255;
  for (const id of [2, 3, 6, 7, 8, 10, 11, 12, 13, 14]) {
    const gt = GGML_TYPES.get(id)!;
    for (const nb of [1, 7, 33]) {
      const src = new Uint8Array(nb * gt.typeSize).map(next);
      // keep f16 fields finite: clear the exponent's top bit in every byte pair's high byte
      for (let i = 1; i < src.length; i += 2) src[i] &= 0xbf;
      const a = new Float32Array(nb * gt.blockSize);
      const b = new Float32Array(nb * gt.blockSize);
      dequantizeBlocksJs(id, src, a, nb);
      native(b, src, id, nb);
      assert.deepEqual(bits(b), bits(a), `${gt.name} × ${nb}`);
    }
  }
});

test('f16 block scales convert exactly: subnormal, zero, signed zero, largest, infinite', (t) => {
  const native = cpu.ggmlDequantize;
  if (!native) return t.skip('the addon has no ggmlDequantize: TypeScript path only');
  // Q8_0 (d at byte 0) and Q4_K (d, dmin at bytes 0, 2); quants from a fixed pattern, 1..127 and nibbles.
  const scales = [0x0001, 0x03ff, 0x0400, 0x0000, 0x8000, 0x8001, 0x3c00, 0x7bff, 0xfbff, 0x7c00, 0xfc00];
  for (const id of [8, 12]) {
    const gt = GGML_TYPES.get(id)!;
    const nb = scales.length;
    const src = new Uint8Array(nb * gt.typeSize).map((_, i) => ((i * 37) % 127) + 1);
    for (let b = 0; b < nb; b++) {
      const o = b * gt.typeSize;
      src[o] = scales[b] & 255;
      src[o + 1] = scales[b] >> 8;
      if (id === 12) ((src[o + 2] = scales[(b + 3) % nb] & 255), (src[o + 3] = scales[(b + 3) % nb] >> 8));
    }
    const a = new Float32Array(nb * gt.blockSize);
    const b = new Float32Array(nb * gt.blockSize);
    dequantizeBlocksJs(id, src, a, nb);
    native(b, src, id, nb);
    for (let i = 0; i < a.length; i++)
      if (!(Number.isNaN(a[i]) && Number.isNaN(b[i])) && bits(a)[i] !== bits(b)[i])
        assert.fail(`${gt.name}: value ${i} is ${b[i]}, the reference has ${a[i]}`);
  }
});

// ---- hand-made files: unknown types and corruption -----------------------------------------------------

/** A minimal GGUF writer for crafted (and deliberately broken) files. */
class Builder {
  private chunks: Uint8Array[] = [];
  private size = 0;
  private push(b: Uint8Array): this {
    this.chunks.push(b);
    this.size += b.length;
    return this;
  }
  private num(bytes: number, set: (v: DataView) => void): this {
    const b = new Uint8Array(bytes);
    set(new DataView(b.buffer));
    return this.push(b);
  }
  u8 = (v: number) => this.num(1, (d) => d.setUint8(0, v));
  u32 = (v: number) => this.num(4, (d) => d.setUint32(0, v, true));
  u64 = (v: number | bigint) => this.num(8, (d) => d.setBigUint64(0, BigInt(v), true));
  f32 = (v: number) => this.num(4, (d) => d.setFloat32(0, v, true));
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.u64(b.length).push(b);
  }
  raw = (b: Uint8Array) => this.push(b);
  pad(alignment: number): this {
    return this.push(new Uint8Array((alignment - (this.size % alignment)) % alignment));
  }
  get length(): number {
    return this.size;
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.size);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

interface CraftTensor {
  name: string;
  dims: number[];
  type: number;
  offset: number;
}

function craft(opts: {
  version?: number;
  kv?: (b: Builder) => number;
  tensors?: CraftTensor[];
  data?: Uint8Array;
  alignment?: number;
  magic?: number;
  counts?: [number | bigint, number | bigint];
}): Uint8Array {
  const b = new Builder();
  b.u32(opts.magic ?? 0x46554747).u32(opts.version ?? 3);
  const kvb = new Builder();
  const nKv = opts.kv ? opts.kv(kvb) : 0;
  const tensors = opts.tensors ?? [];
  b.u64(opts.counts?.[0] ?? tensors.length).u64(opts.counts?.[1] ?? nKv);
  b.raw(kvb.bytes());
  for (const t of tensors) {
    b.str(t.name).u32(t.dims.length);
    for (const d of t.dims) b.u64(d);
    b.u32(t.type).u64(t.offset);
  }
  b.pad(opts.alignment ?? 32);
  if (opts.data) b.raw(opts.data);
  return b.bytes();
}

function save(name: string, bytes: Uint8Array): string {
  const p = join(work, name);
  writeFileSync(p, bytes);
  return p;
}

test('unknown or unsupported tensor types are listed, and reading them names tensor and type', async () => {
  const p = save(
    'types.gguf',
    craft({
      tensors: [
        { name: 'ok', dims: [4], type: 0, offset: 0 },
        { name: 'iq', dims: [256], type: 16, offset: 32 },
        { name: 'future', dims: [8], type: 99, offset: 128 },
      ],
      data: new Uint8Array(256).fill(0x3c),
    }),
  );
  const g = await readGGUF(p);
  assert.deepEqual([...g.tensors.keys()], ['ok', 'iq', 'future']);
  assert.equal(g.info('iq').typeName, 'IQ2_XXS');
  assert.equal(g.info('future').byteLength, null);
  const ok = g.read('ok');
  assert.equal(ok.size, 4);
  ok.dispose();
  assert.throws(
    () => g.read('iq'),
    /^Error: lorakit: .*types\.gguf: tensor 'iq' has type IQ2_XXS \(16\), which lorakit cannot dequantize \(it reads F32, F16, BF16, Q4_0, .*Q6_K\)\.$/,
  );
  assert.throws(
    () => g.read('future'),
    /tensor 'future' has type unknown type 99 \(99\), which lorakit cannot dequantize/,
  );
  assert.throws(() => g.read('nope'), /no tensor named 'nope' \(it has 3\)/);
  const raw = g.readRaw('iq');
  assert.equal(raw.dtype, 'u8');
  assert.equal(raw.size, 66);
  raw.dispose();
});

test('metadata values of every type decode, including nested arrays and 64-bit edges', async () => {
  const p = save(
    'meta.gguf',
    craft({
      kv: (b) => {
        b.str('u8').u32(0).u8(255);
        b.str('f32').u32(6).f32(1.5);
        b.str('u64max')
          .u32(10)
          .u64(2n ** 64n - 1n);
        b.str('u64safe')
          .u32(10)
          .u64(2 ** 53 - 1);
        b.str('u64unsafe')
          .u32(10)
          .u64(2n ** 53n + 1n);
        b.str('bool').u32(7).u8(1);
        b.str('nested').u32(9).u32(9).u64(2);
        b.u32(8).u64(2).str('a').str('bc'); // ["a", "bc"]
        b.u32(4).u64(1).u32(7); // [7]
        b.str('empty').u32(9).u32(5).u64(0);
        return 8;
      },
    }),
  );
  const g = await readGGUF(p);
  assert.deepEqual(g.metadata, {
    u8: 255,
    f32: 1.5,
    u64max: 2n ** 64n - 1n,
    u64safe: 2 ** 53 - 1,
    u64unsafe: 2n ** 53n + 1n,
    bool: true,
    nested: [['a', 'bc'], [7]],
    empty: [],
  });
  assert.equal(g.alignment, 32);
  assert.equal(g.tensors.size, 0);
});

test('corrupt GGUF files fail with a clear error naming the file', async () => {
  const good = craft({
    kv: (b) => {
      b.str('general.architecture').u32(8).str('llama');
      return 1;
    },
    tensors: [{ name: 'w', dims: [32, 3], type: 8, offset: 0 }],
    data: new Uint8Array(3 * 34).fill(1),
  });
  assert.ok((await readGGUF(save('good.gguf', good))).has('w'));
  const cases: [string, Uint8Array, RegExp][] = [
    ['tiny', good.subarray(0, 10), /too short to be a GGUF file/],
    ['magic', craft({ magic: 0x12345678 }), /not a GGUF file \(bad magic\)/],
    ['v1', craft({ version: 1 }), /GGUF version 1, which lorakit does not read/],
    ['big-endian', craft({ version: 0x03000000 }), /big-endian GGUF/],
    ['v9', craft({ version: 9 }), /has GGUF version 9; lorakit reads versions 2 and 3/],
    [
      'counts',
      craft({ counts: [2n ** 40n, 3] }),
      /header claims 3 metadata entries and 1099511627776 tensors, more than the file holds/,
    ],
    ['counts-huge', craft({ counts: [0, 2n ** 63n] }), /metadata count \d+ is impossibly large/],
    [
      'truncated-header',
      good.subarray(0, 85),
      /file ends inside the header \(reading tensor 'w' dimension\)/,
    ],
    [
      'truncated-counts',
      good.subarray(0, 60),
      /header claims 1 metadata entries and 1 tensors, more than the file holds/,
    ],
    [
      'truncated-data',
      good.subarray(0, good.length - 1),
      /tensor 'w' \(Q8_0 \[3, 32\]\) lies beyond the end of the file; truncated or corrupt/,
    ],
    [
      'string-len',
      craft({ kv: (b) => (b.u64(2n ** 40n), 1), counts: [0, 1], data: new Uint8Array(64) }),
      /metadata key 0 claims 1099511627776 bytes, beyond the end of the file/,
    ],
    [
      'value-type',
      craft({ kv: (b) => (b.str('k').u32(13).u32(0), 1) }),
      /metadata 'k' has unknown value type 13/,
    ],
    [
      'array-count',
      craft({
        kv: (b) => (
          b
            .str('k')
            .u32(9)
            .u32(8)
            .u64(2n ** 40n),
          1
        ),
      }),
      /metadata 'k' claims 1099511627776 elements, beyond the end of the file/,
    ],
    ['bool', craft({ kv: (b) => (b.str('k').u32(7).u8(2), 1) }), /metadata 'k' has bool value 2/],
    [
      'dup-key',
      craft({ kv: (b) => (b.str('k').u32(0).u8(1).str('k').u32(0).u8(2), 2) }),
      /metadata key 'k' appears twice/,
    ],
    [
      'alignment',
      craft({ kv: (b) => (b.str('general.alignment').u32(4).u32(48), 1) }),
      /general\.alignment must be a uint32 power of two, got 48/,
    ],
    [
      'alignment-type',
      craft({ kv: (b) => (b.str('general.alignment').u32(8).str('32'), 1) }),
      /general\.alignment must be a uint32 power of two/,
    ],
    [
      'dims',
      craft({
        tensors: [{ name: 'w', dims: [1, 1, 1, 1, 1], type: 0, offset: 0 }],
        data: new Uint8Array(32),
      }),
      /tensor 'w' has 5 dimensions \(at most 4\)/,
    ],
    [
      'misaligned',
      craft({ tensors: [{ name: 'w', dims: [1], type: 0, offset: 4 }], data: new Uint8Array(64) }),
      /tensor 'w' has offset 4, not a multiple of the alignment 32/,
    ],
    [
      'block',
      craft({ tensors: [{ name: 'w', dims: [33], type: 8, offset: 0 }], data: new Uint8Array(64) }),
      /tensor 'w' has rows of 33 values, not a multiple of the Q8_0 block size 32/,
    ],
    [
      'overlap',
      craft({
        tensors: [
          { name: 'a', dims: [16], type: 0, offset: 0 },
          { name: 'b', dims: [16], type: 0, offset: 32 },
        ],
        data: new Uint8Array(128),
      }),
      /tensors 'a' and 'b' overlap in the data section/,
    ],
    [
      'dup-tensor',
      craft({
        tensors: [
          { name: 'a', dims: [1], type: 0, offset: 0 },
          { name: 'a', dims: [1], type: 0, offset: 32 },
        ],
        data: new Uint8Array(64),
      }),
      /tensor 'a' appears twice/,
    ],
    [
      'huge-dims',
      craft({
        tensors: [{ name: 'w', dims: [2 ** 30, 2 ** 30, 2 ** 30], type: 0, offset: 0 }],
        data: new Uint8Array(64),
      }),
      /tensor 'w' has impossible dimensions/,
    ],
  ];
  for (const [name, bytes, re] of cases) {
    const p = save(`${name}.gguf`, bytes);
    await assert.rejects(
      readGGUF(p),
      (e: unknown) => {
        assert.ok(e instanceof Error);
        assert.ok(e.message.startsWith(`lorakit: ${p}: `), `${name}: message names the file: ${e.message}`);
        assert.match(e.message, re, name);
        return true;
      },
      name,
    );
  }
  await assert.rejects(
    readGGUF(join(work, 'absent.gguf')),
    /^Error: lorakit: .*absent\.gguf: no such file\.$/,
  );
});

// ---- the real SmolLM2-135M-Instruct Q4_1 GGUF -----------------------------------------------------------

test('SmolLM2-135M-Instruct Q4_1: metadata, and tensors equal gguf-py dequantize', async (t) => {
  const path = join(projectRoot, '.cache', 'models', 'SmolLM2-135M-Instruct.Q4_1.gguf');
  const refPath = fixture('io', 'smollm2.json');
  if (!existsSync(path)) return t.skip('SmolLM2 GGUF absent: run scripts/fetch-smollm2.sh');
  if (!refPath) return t.skip(FIXTURE_HINT);
  const ref = JSON.parse(readFileSync(refPath, 'utf8')) as {
    architecture: string;
    context_length: number;
    block_count: number;
    vocab_size: number;
    chat_template_sha256: string;
    tensor_count: number;
    tensors: Record<string, { type: string; dims: number[]; sha256: string; first: number[] }>;
  };
  const g = await readGGUF(path);
  assert.equal(g.metadata['general.architecture'], 'llama');
  assert.equal(g.metadata['general.architecture'], ref.architecture);
  assert.equal(g.metadata['llama.context_length'], ref.context_length);
  assert.equal(g.metadata['llama.block_count'], ref.block_count);
  const template = g.metadata['tokenizer.chat_template'];
  assert.equal(typeof template, 'string');
  assert.equal(createHash('sha256').update(String(template)).digest('hex'), ref.chat_template_sha256);
  const tokens = g.metadata['tokenizer.ggml.tokens'];
  assert.ok(Array.isArray(tokens) && tokens.length === ref.vocab_size);
  assert.equal(g.tensors.size, ref.tensor_count);
  for (const [name, e] of Object.entries(ref.tensors)) {
    const info = g.info(name);
    assert.equal(info.typeName, e.type);
    assert.deepEqual(info.dims, e.dims);
    const x = g.read(name);
    const d = x.as('f32');
    assert.deepEqual(Array.from(d.subarray(0, 8)), e.first, name);
    assert.equal(
      createHash('sha256')
        .update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength))
        .digest('hex'),
      e.sha256,
      `${name} (${e.type}) bit for bit`,
    );
    x.dispose();
  }
  // Whole-model dequantization time (printed, not asserted).
  const start = performance.now();
  let values = 0;
  for (const name of g.tensors.keys()) {
    const x = g.read(name);
    values += x.size;
    x.dispose();
  }
  const ms = performance.now() - start;
  const msg = `SmolLM2-135M Q4_1: dequantized ${g.tensors.size} tensors (${(values / 1e6).toFixed(1)}M values) to f32 in ${ms.toFixed(0)} ms (${cpu.ggmlDequantize ? 'native' : 'TypeScript'} dequantizer)`;
  t.diagnostic(msg);
  console.log(msg);
});
