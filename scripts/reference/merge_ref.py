"""Reference outputs for merge and export (test/merge.test.ts, test/export.test.ts).

Default mode writes test/fixtures/merge/:
  <case>/merged.safetensors  PEFT's merge_and_unload() weights for every adapter of test/fixtures/peft
                             (run peft_ref.py first), fp32.
  quants/                    gguf-py's quantize() of seeded random and edge-case blocks: input.f32 and
                             q8_0.bin, q4_0.bin, f16.bin (the bytes GGUF stores).
Other modes, used by the tests at run time on files lorakit wrote:
  logits IDS_JSON DIR... [--text FILE]
                             transformers' fp32 logits of model folders on a batch of token ids, and
                             AutoTokenizer's ids of the text (JSON).
  gguf FILE                  what gguf-py's GGUFReader reads: metadata (scalars; array lengths and
                             heads) and tensors (name, type, shape, and the dequantized values' sum).
"""
import json
import os
import shutil
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEFT = os.path.join(ROOT, "test", "fixtures", "peft")
MODELS = os.path.join(ROOT, "test", "fixtures", "models")
OUT = os.path.join(ROOT, "test", "fixtures", "merge")


def merged_fixtures():
    import torch
    import transformers
    from peft import PeftModel
    from safetensors.torch import save_file

    torch.set_num_threads(2)
    for case in sorted(os.listdir(PEFT)):
        adapter = os.path.join(PEFT, case, "adapter")
        if not os.path.isdir(adapter):
            continue
        model_name = json.load(open(os.path.join(PEFT, case, "expected.json")))["model"]
        base = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(MODELS, model_name), dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
        state = {k: v.detach().contiguous() for k, v in merged.state_dict().items()}
        if merged.config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        d = os.path.join(OUT, case)
        os.makedirs(d, exist_ok=True)
        save_file(state, os.path.join(d, "merged.safetensors"))
        print("wrote merge", case)


def quant_fixtures():
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    rng = np.random.default_rng(11)
    blocks = [
        rng.standard_normal(32 * 37).astype(np.float32),  # 37 random blocks
        (rng.standard_normal(32 * 5) * 1e-3).astype(np.float32),
        (rng.standard_normal(32 * 3) * 3e4).astype(np.float32),  # scales near the f16 limit
        (rng.standard_normal(32 * 2) * 1e-9).astype(np.float32),  # scales that are f16 subnormal / zero
        np.zeros(32, np.float32),
        np.concatenate([[-0.0], np.zeros(31)]).astype(np.float32),
        np.array([3.0, -3.0] + [1.0] * 30, np.float32),  # equal magnitudes: the first wins in Q4_0
        np.array([-3.0, 3.0] + [1.0] * 30, np.float32),
        np.array([127.0] + [k + 0.5 for k in range(-15, 16)], np.float32),  # halves: Q8_0 rounding
        np.array([-8.0] + [k * 0.5 for k in range(-15, 16)], np.float32),  # Q4_0 at exact boundaries
        np.array([8.0] + [k * 0.25 - 4 for k in range(31)], np.float32),
        rng.integers(-127, 128, 32).astype(np.float32),
    ]
    x = np.concatenate(blocks).astype(np.float32)
    d = os.path.join(OUT, "quants")
    os.makedirs(d, exist_ok=True)
    x.tofile(os.path.join(d, "input.f32"))
    quants.quantize(x.reshape(-1, 32), Q.Q8_0).tofile(os.path.join(d, "q8_0.bin"))
    quants.quantize(x.reshape(-1, 32), Q.Q4_0).tofile(os.path.join(d, "q4_0.bin"))
    quants.quantize(x, Q.F16).tofile(os.path.join(d, "f16.bin"))
    print("wrote quants", x.size)


def logits(ids_path, folders, text_path=None):
    import torch
    import transformers

    torch.set_num_threads(2)
    ids = torch.tensor(json.load(open(ids_path)), dtype=torch.long)
    text = open(text_path, encoding="utf-8").read() if text_path else None
    result = []
    for folder in folders:
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        with torch.no_grad():
            out = model(input_ids=ids).logits
        tokens = transformers.AutoTokenizer.from_pretrained(folder)(text)["input_ids"] if text is not None else None
        result.append({"logits": out.reshape(-1).tolist(), "tokens": tokens})
    print(json.dumps(result))


def gguf_info(path):
    from gguf import GGUFReader
    from gguf import quants

    r = GGUFReader(path)
    meta = {}
    for f in r.fields.values():
        if f.name.startswith("GGUF."):
            continue
        v = f.contents()
        if isinstance(v, list):
            meta[f.name] = {"len": len(v), "head": v[:3]}
        else:
            meta[f.name] = v
    tensors = []
    for t in r.tensors:
        values = quants.dequantize(t.data, t.tensor_type).astype(np.float64)
        tensors.append({"name": t.name, "type": t.tensor_type.name, "dims": [int(x) for x in t.shape],
                        "sum": float(values.sum()), "abs_sum": float(np.abs(values).sum())})
    print(json.dumps({"metadata": meta, "tensors": tensors}, default=float))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "logits":
        args = sys.argv[3:]
        text = None
        if "--text" in args:
            i = args.index("--text")
            text = args[i + 1]
            args = args[:i] + args[i + 2:]
        logits(sys.argv[2], args, text)
    elif len(sys.argv) > 1 and sys.argv[1] == "gguf":
        gguf_info(sys.argv[2])
    else:
        shutil.rmtree(OUT, ignore_errors=True)
        merged_fixtures()
        quant_fixtures()
