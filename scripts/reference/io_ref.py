#!/usr/bin/env python3
"""Reference files for the model I/O tests (test/safetensors.test.ts, test/gguf.test.ts).

Writes into test/fixtures/io/:
- st_python.safetensors + .json: one tensor per safetensors dtype, written by `safetensors` (torch),
  with the exact values each should read back as.
- st_i64_big.safetensors: an I64 tensor beyond the int32 range (must be refused, not wrapped).
- sharded/: model.safetensors.index.json + two shards, laid out as transformers writes them.
- gguf_all.gguf + .json + .deq.bin: metadata of every GGUF value type (nested arrays, 64-bit values
  beyond 2^53), and tensors in each ggml type we read: F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 quantized
  with gguf.quants.quantize from random data; Q2_K..Q6_K as random blocks (gguf-py cannot quantize
  K-quants) with sane f16 scales. .deq.bin holds gguf.quants.dequantize of each tensor (fp32), the
  bit-exact expectation.
- gguf_align64.gguf + .json + .deq.bin: the same with general.alignment = 64.
- smollm2.json (only when .cache/models holds SmolLM2-135M-Instruct.Q4_1.gguf, fetched by
  scripts/fetch-smollm2.sh): metadata facts and sha256 of the dequantized bytes of a few tensors.
"""
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import gguf
from gguf import GGMLQuantizationType as T, GGUFValueType as V

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "test" / "fixtures" / "io"
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(1234)


def nonzero(a: np.ndarray) -> np.ndarray:
    return np.where(a == 0, 1, a)


# ---- safetensors ---------------------------------------------------------------------------------

def safetensors_fixtures() -> None:
    f32 = lambda *s: torch.from_numpy(rng.standard_normal(s).astype(np.float32))
    tensors = {
        "f32.weight": f32(7, 33),
        "f32.scalar": f32(),
        "f32.empty": torch.zeros(0, 3),
        "f16.w": f32(5, 3).to(torch.float16),
        "bf16.w": f32(127).to(torch.bfloat16),
        "i32.ids": torch.from_numpy(nonzero(rng.integers(-2**31, 2**31 - 1, size=(3, 7), dtype=np.int32))),
        "i64.pos": torch.from_numpy(nonzero(rng.integers(-2**31, 2**31 - 1, size=(11,), dtype=np.int64))),
        "u8.bytes": torch.from_numpy(nonzero(rng.integers(0, 256, size=(9,), dtype=np.uint8))),
        "i8.small": torch.from_numpy(nonzero(rng.integers(-128, 128, size=(2, 5), dtype=np.int8))),
        "bool.mask": torch.from_numpy(rng.integers(0, 2, size=(13,)).astype(bool)),
        "f64.double": torch.from_numpy(rng.standard_normal((3, 3))),
    }
    save_file(tensors, OUT / "st_python.safetensors", metadata={"format": "pt"})
    expected = {}
    for name, t in tensors.items():
        dtype = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int32: "I32",
                 torch.int64: "I64", torch.uint8: "U8", torch.int8: "I8", torch.bool: "BOOL",
                 torch.float64: "F64"}[t.dtype]
        values = t.float().flatten().tolist() if t.is_floating_point() else t.flatten().long().tolist()
        if t.dtype == torch.float64:
            values = t.flatten().tolist()
        expected[name] = {"dtype": dtype, "shape": list(t.shape), "values": values}
    (OUT / "st_python.json").write_text(json.dumps({"metadata": {"format": "pt"}, "tensors": expected}))

    save_file({"big": torch.tensor([1, 2**40], dtype=torch.int64)}, OUT / "st_i64_big.safetensors")

    # Sharded like transformers: weight_map name -> shard file, metadata.total_size.
    shard_dir = OUT / "sharded"
    shard_dir.mkdir(exist_ok=True)
    shards = {
        "model-00001-of-00002.safetensors": {"embed.weight": f32(11, 7), "layers.0.w": f32(7, 7).to(torch.bfloat16)},
        "model-00002-of-00002.safetensors": {"layers.1.w": f32(3, 7), "norm.weight": f32(7)},
    }
    weight_map, total, values = {}, 0, {}
    for file, ts in shards.items():
        save_file(ts, shard_dir / file, metadata={"format": "pt"})
        for name, t in ts.items():
            weight_map[name] = file
            total += t.numel() * t.element_size()
            values[name] = {"shape": list(t.shape), "values": t.float().flatten().tolist()}
    (shard_dir / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))
    (OUT / "sharded.json").write_text(json.dumps(values))


# ---- GGUF ----------------------------------------------------------------------------------------

QUANTIZED = [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1]
K_QUANTS = [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
# byte offsets of the f16 scale fields in each K-quant block (must be finite for a meaningful test)
K_F16_FIELDS = {T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}


def random_k_blocks(qtype: T, rows: int, cols: int) -> np.ndarray:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = rows * cols // block
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in K_F16_FIELDS[qtype]:
        scale = (rng.uniform(0.001, 0.05, size=n_blocks) * rng.choice([-1, 1], size=n_blocks)).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(rows, cols // block * size)


METADATA = [
    ("test.uint8", V.UINT8, 200), ("test.int8", V.INT8, -100), ("test.uint16", V.UINT16, 60000),
    ("test.int16", V.INT16, -30000), ("test.uint32", V.UINT32, 4000000000), ("test.int32", V.INT32, -2000000000),
    ("test.float32", V.FLOAT32, 0.1), ("test.uint64_small", V.UINT64, 5), ("test.uint64_big", V.UINT64, 2**60 + 1),
    ("test.int64_small", V.INT64, -7), ("test.int64_big", V.INT64, -(2**60) - 3), ("test.float64", V.FLOAT64, 0.1),
    ("test.bool_true", V.BOOL, True), ("test.bool_false", V.BOOL, False), ("test.string", V.STRING, "héllo, \"wörld\"\n🦙"),
    ("test.array_u8", V.ARRAY, (V.UINT8, [1, 2, 255])), ("test.array_i64", V.ARRAY, (V.INT64, [-(2**62), 3])),
    ("test.array_f32", V.ARRAY, (V.FLOAT32, [0.5, -1.25, 3.0])), ("test.array_str", V.ARRAY, (V.STRING, ["a", "", "ü"])),
    ("test.array_bool", V.ARRAY, (V.BOOL, [True, False])),
    ("test.array_nested", V.ARRAY, (V.ARRAY, [[1, 2], [3], [4, 5, 6]])),
]


def expected_value(vtype: V, value):
    if vtype == V.FLOAT32:
        return float(np.float32(value))
    if vtype in (V.UINT64, V.INT64) and abs(value) > 2**53:
        return {"bigint": str(value)}
    if vtype == V.ARRAY:
        sub, items = value
        if sub == V.ARRAY:  # inner arrays of Python ints are written as int32 arrays by gguf-py
            return [[expected_value(V.INT32, j) for j in inner] for inner in items]
        return [expected_value(sub, i) for i in items]
    return value


def gguf_fixture(name: str, alignment: int | None) -> None:
    path = OUT / f"{name}.gguf"
    w = gguf.GGUFWriter(str(path), arch="llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    meta_expected = {"general.architecture": "llama"}
    if alignment is not None:
        meta_expected["general.alignment"] = alignment
    for key, vtype, value in METADATA:
        if vtype == V.ARRAY:
            w.add_key_value(key, value[1], V.ARRAY, sub_type=value[0])
        else:
            w.add_key_value(key, value, vtype)
        meta_expected[key] = expected_value(vtype, value)

    tensors, deq_chunks, offset = [], [], 0
    shapes = [(7, 64), (1, 32), (33, 96)]
    for qtype in QUANTIZED:
        for i, shape in enumerate(shapes):
            data = rng.standard_normal(shape).astype(np.float32)
            q = gguf.quants.quantize(data, qtype)
            tname = f"{qtype.name.lower()}.{i}"
            w.add_tensor(tname, q, raw_dtype=qtype)
            deq = gguf.quants.dequantize(q, qtype).astype(np.float32)
            tensors.append((tname, qtype, shape, deq))
    # A 3-D tensor: GGUF dims [64, 3, 2] (ne0 fastest), row-major shape [2, 3, 64].
    data = rng.standard_normal((2, 3, 64)).astype(np.float32)
    q = gguf.quants.quantize(data, T.Q8_0)
    w.add_tensor("q8_0.3d", q, raw_dtype=T.Q8_0)
    tensors.append(("q8_0.3d", T.Q8_0, (2, 3, 64), gguf.quants.dequantize(q, T.Q8_0)))
    # An odd-length F32 vector so the next tensor's offset needs padding.
    data = rng.standard_normal((7,)).astype(np.float32)
    w.add_tensor("f32.odd", data, raw_dtype=T.F32)
    tensors.append(("f32.odd", T.F32, (7,), data))
    for qtype in K_QUANTS:
        for i, shape in enumerate([(3, 256), (1, 512)]):
            raw = random_k_blocks(qtype, *shape)
            tname = f"{qtype.name.lower()}.{i}"
            w.add_tensor(tname, raw, raw_dtype=qtype)
            tensors.append((tname, qtype, shape, gguf.quants.dequantize(raw, qtype)))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    infos = []
    for tname, qtype, shape, deq in tensors:
        deq = np.ascontiguousarray(deq, dtype=np.float32).reshape(shape)
        infos.append({"name": tname, "type": qtype.name, "shape": list(shape), "dims": list(reversed(shape)),
                      "offset": offset, "count": int(deq.size)})
        offset += deq.size
        deq_chunks.append(deq.tobytes())
    (OUT / f"{name}.deq.bin").write_bytes(b"".join(deq_chunks))
    (OUT / f"{name}.json").write_text(json.dumps({"metadata": meta_expected, "tensors": infos}))

    # Cross-check with gguf-py's own reader: tensor data offsets as it sees them.
    r = gguf.GGUFReader(str(path))
    assert len(r.tensors) == len(infos)


def smollm2_fixture() -> None:
    path = ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        print(f"io_ref: {path} absent (run scripts/fetch-smollm2.sh); skipping the SmolLM2 fixture", file=sys.stderr)
        return
    r = gguf.GGUFReader(str(path))
    field = lambda k: r.fields[k].contents()
    template = field("tokenizer.chat_template")
    out = {
        "architecture": field("general.architecture"),
        "context_length": int(field("llama.context_length")),
        "block_count": int(field("llama.block_count")),
        "vocab_size": len(r.fields["tokenizer.ggml.tokens"].data),
        "chat_template_sha256": hashlib.sha256(template.encode("utf-8")).hexdigest(),
        "tensor_count": len(r.tensors),
        "tensors": {},
    }
    wanted = ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.29.ffn_gate.weight",
              "output_norm.weight", "blk.7.attn_k.weight"]
    for t in r.tensors:
        if t.name not in wanted:
            continue
        deq = np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        out["tensors"][t.name] = {
            "type": t.tensor_type.name,
            "dims": [int(d) for d in t.shape],
            "sha256": hashlib.sha256(deq.tobytes()).hexdigest(),
            "first": deq.flatten()[:8].tolist(),
        }
    (OUT / "smollm2.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    safetensors_fixtures()
    gguf_fixture("gguf_all", None)
    gguf_fixture("gguf_align64", 64)
    smollm2_fixture()
    print(f"io_ref: wrote {OUT}")
