"""Reference outputs for quantization parity with bitsandbytes (CPU) and transformers + PEFT.

Writes test/fixtures/quant/:
  blockwise.json + blockwise.safetensors  4-bit NF4/FP4 quantize/dequantize cases (random and real
                                          stories260K weights, odd sizes, with and without double
                                          quantization), 8-bit dynamic blockwise cases, int8 rows
  tiny-base/                              a tiny llama (model_ref.py's, with intermediate_size 128: see
                                          make_tiny_base) in fp32
  tiny-nf4-dq/, tiny-fp4/, tiny-int8/     tiny-base quantized by transformers +
                                          bitsandbytes and saved (pre-quantized checkpoints), with
                                          expected.json: a batch and its logits
  qlora.json + qlora.safetensors          PEFT LoRA on the NF4+DQ model: loss, gradients, one SGD step

`quant_ref.py eval DIR BATCH_JSON` loads a quantized folder (one lorakit wrote) with transformers and
prints its logits for the batch as JSON; the tests use it to check that bitsandbytes reads our files.
"""
import json
import os
import shutil
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "test", "fixtures", "quant")
SRC_MODEL = os.path.join(ROOT, "test", "fixtures", "models", "llama")
TINY = os.path.join(OUT, "tiny-base")
STORIES = os.path.join(ROOT, "..", "shared", "data", "models", "stories260K-hf", "model.safetensors")


def bnb_reference_dequant(q, absmax, code, blocksize, n):
    """bitsandbytes' reference semantics (its default/CUDA path): blocks over the flattened tensor."""
    qq = q.reshape(-1)
    idx = torch.stack([qq >> 4, qq & 15], 1).reshape(-1)[:n].long()
    return code[idx] * absmax.repeat_interleave(blocksize)[:n]


def blockwise_cases():
    import bitsandbytes.functional as F
    from safetensors.torch import load_file

    tensors, cases = {}, []
    g = torch.Generator().manual_seed(1234)
    inputs = {}
    shapes = [((7,), 64), ((7, 33), 64), ((33, 64), 64), ((127, 130), 64), ((5, 96), 64), ((9, 48), 32),
              ((64, 64), 32), ((3, 4096), 4096), ((16, 2048), 2048), ((129, 257), 128), ((127, 260), 32),
              ((1, 1), 64), ((31, 67), 256), ((11, 1000), 512), ((5, 1111), 1024)]
    for i, (shape, bs) in enumerate(shapes):
        scale = 0.02 + 2 * torch.rand((), generator=g).item()
        x = torch.randn(shape, generator=g) * scale
        x += 0.1 * scale * torch.randn((), generator=g)  # blocks not centred on 0
        inputs[f"rand{i}"] = (x.contiguous(), bs)
    if os.path.exists(STORIES):
        w = load_file(STORIES)
        for name, key in [("q_proj", "model.layers.0.self_attn.q_proj.weight"),
                          ("k_proj", "model.layers.1.self_attn.k_proj.weight"),
                          ("gate_proj", "model.layers.2.mlp.gate_proj.weight"),
                          ("down_proj", "model.layers.4.mlp.down_proj.weight"),
                          ("embed", "model.embed_tokens.weight")]:
            inputs[f"stories.{name}"] = (w[key].float().contiguous(), 64)
    for name, (x, bs) in inputs.items():
        tensors[f"{name}.x"] = x
        for qt in ("nf4", "fp4"):
            for dq in (False, True):
                key = f"{name}.{qt}{'.dq' if dq else ''}"
                q, s = F.quantize_4bit(x, blocksize=bs, quant_type=qt, compress_statistics=dq)
                out = F.dequantize_4bit(q, s)
                absmax = s.absmax if not dq else F.dequantize_blockwise(s.absmax, s.state2) + s.offset
                ref = bnb_reference_dequant(q, absmax, s.code, bs, x.numel()).reshape(x.shape)
                kernel_ok = torch.equal(out, ref)
                tensors[f"{key}.q"] = q.reshape(-1).contiguous()
                tensors[f"{key}.absmax"] = s.absmax.contiguous()
                tensors[f"{key}.deq"] = ref.contiguous()
                case = {"name": key, "input": name, "shape": list(x.shape), "blocksize": bs, "type": qt,
                        "double_quant": dq, "bnb_cpu_kernel_agrees": kernel_ok}
                if dq:
                    tensors[f"{key}.nested_absmax"] = s.state2.absmax.contiguous()
                    tensors[f"{key}.nested_quant_map"] = s.state2.code.contiguous()
                    tensors[f"{key}.absmax_deq"] = absmax.contiguous()
                    case["offset"] = s.offset.item()
                cases.append(case)
    # 8-bit dynamic blockwise (the double-quant path) on its own.
    b8 = []
    for i, (n, scale, shift) in enumerate([(1, 1.0, 0.0), (7, 0.3, 0.01), (255, 0.05, -0.01), (256, 1.0, 0.2),
                                            (257, 0.001, 0.0), (1000, 0.02, -0.03), (4133, 3.0, 1.0)]):
        x = (torch.randn(n, generator=g) * scale + shift).contiguous()
        q, s = F.quantize_blockwise(x, blocksize=256)
        tensors[f"b8.{i}.x"] = x
        tensors[f"b8.{i}.q"] = q
        tensors[f"b8.{i}.absmax"] = s.absmax.contiguous()
        tensors[f"b8.{i}.deq"] = F.dequantize_blockwise(q, s).contiguous()
        b8.append({"name": f"b8.{i}", "n": n})
    tensors["dynamic_map"] = F.create_dynamic_map().contiguous()
    # Means as torch computes them (the double-quant offset).
    means = []
    for i, n in enumerate([1, 5, 15, 16, 17, 100, 1000, 4097, 13824, 30000]):
        x = (torch.rand(n, generator=g) * 0.2 + 0.01).contiguous()
        tensors[f"mean.{i}"] = x
        means.append({"name": f"mean.{i}", "mean": x.mean().item()})
    # int8 weight-only: bitsandbytes' Int8Params row format (CB int8, SCB = per-row absmax), which
    # casts the weight to fp16 before quantizing.
    int8 = []
    for name in ["rand1", "rand2", "rand9", "stories.gate_proj"]:
        if name not in inputs:
            continue
        x = inputs[name][0]
        x2 = x.reshape(-1, x.shape[-1])
        cb, scb, _ = F.int8_vectorwise_quant(x2.to(torch.float16))
        tensors[f"int8.{name}.cb"] = cb.contiguous()
        tensors[f"int8.{name}.scb"] = scb.contiguous()
        tensors[f"int8.{name}.deq"] = F.int8_vectorwise_dequant(cb, scb).contiguous()
        int8.append({"name": f"int8.{name}", "input": name, "shape": list(x2.shape)})
    return tensors, {"cases": cases, "blockwise8": b8, "means": means, "int8": int8,
                     "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def batch(vocab):
    g = torch.Generator().manual_seed(7)
    a = torch.randint(3, vocab, (17,), generator=g)
    b = torch.randint(3, vocab, (11,), generator=g)
    ids = torch.zeros((2, 17), dtype=torch.long)
    mask = torch.zeros((2, 17), dtype=torch.long)
    labels = torch.full((2, 17), -100, dtype=torch.long)
    ids[0], mask[0], labels[0, 5:] = a, 1, a[5:]
    ids[1, :11], mask[1, :11], labels[1, :11] = b, 1, b
    return ids, mask, labels


def quantized_model(src, qt, dq):
    import transformers
    if qt == "int8":
        cfg = transformers.BitsAndBytesConfig(load_in_8bit=True)
    else:
        cfg = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=qt, bnb_4bit_use_double_quant=dq,
                                              bnb_4bit_compute_dtype=torch.float32)
    return transformers.AutoModelForCausalLM.from_pretrained(src, quantization_config=cfg, device_map="cpu",
                                                             dtype=torch.float32)


def logits_of(model, ids, mask):
    # Train mode: bitsandbytes' eval-mode CPU path repacks weights for a bf16 kernel; training mode
    # computes in fp32 like lorakit (the model has no dropout).
    model.train()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def make_tiny_base():
    """model_ref.py's tiny llama with intermediate_size 128 instead of 96. bitsandbytes 0.50.2's AVX-512
    CPU dequantize kernel mis-scales weights whose rows are a multiple of 16 but not of the block size
    (it takes absmax per row, as rows // blocksize), so transformers' own CPU forward of a 96-wide
    down_proj is wrong; real models (multiples of 64) never hit it."""
    import transformers
    shutil.rmtree(TINY, ignore_errors=True)
    cfg = transformers.AutoConfig.from_pretrained(SRC_MODEL)
    cfg.intermediate_size = 128
    torch.manual_seed(99)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.08)
    model.save_pretrained(TINY)
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        if os.path.exists(os.path.join(SRC_MODEL, f)):
            shutil.copy(os.path.join(SRC_MODEL, f), os.path.join(TINY, f))


def tiny_models():
    # int8 (LLM.int8) also quantizes activations in its forward: its logits are only close to a
    # weight-only int8 model's; the weights themselves must match exactly.
    for name, qt, dq in [("tiny-nf4-dq", "nf4", True), ("tiny-fp4", "fp4", False), ("tiny-int8", "int8", False)]:
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        model = quantized_model(TINY, qt, dq)
        model.save_pretrained(d)
        for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
            if os.path.exists(os.path.join(TINY, f)):
                shutil.copy(os.path.join(TINY, f), os.path.join(d, f))
        ids, mask, labels = batch(model.config.vocab_size)
        logits = logits_of(model, ids, mask)
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump({"ids": ids.tolist(), "mask": mask.tolist(), "logits": logits.reshape(-1).tolist()}, f)
        print("wrote", name)


def qlora():
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file
    model = quantized_model(TINY, "nf4", True)
    torch.manual_seed(4321)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_A" in n or "lora_B" in n:
                p.normal_(0, 0.1)
    adapter_dir = os.path.join(OUT, "qlora-adapter")
    shutil.rmtree(adapter_dir, ignore_errors=True)
    model.save_pretrained(adapter_dir)
    ids, mask, labels = batch(model.config.vocab_size)
    model.train()
    logits = model(input_ids=ids, attention_mask=mask).logits
    shift = logits[:, :-1].reshape(-1, logits.shape[-1])
    tgt = labels[:, 1:].reshape(-1)
    count = int((tgt != -100).sum())
    loss = torch.nn.functional.cross_entropy(shift, tgt, ignore_index=-100, reduction="sum") / count
    loss.backward()
    tensors = {"logits": logits.detach().reshape(-1).contiguous()}
    params = [(n.replace(".default", ""), p) for n, p in model.named_parameters() if p.requires_grad]
    for n, p in params:
        tensors["grad." + n] = p.grad.detach().clone().contiguous()
    torch.optim.SGD([p for _, p in params], lr=0.5).step()
    for n, p in params:
        tensors["sgd." + n] = p.detach().clone().contiguous()
    save_file(tensors, os.path.join(OUT, "qlora.safetensors"))
    with open(os.path.join(OUT, "qlora.json"), "w") as f:
        json.dump({"ids": ids.tolist(), "mask": mask.tolist(), "labels": labels.tolist(), "loss": loss.item(),
                   "tokens": count, "sgd_lr": 0.5, "r": 4, "alpha": 8}, f)
    print("wrote qlora")


def evaluate(folder, batch_path):
    import transformers
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, device_map="cpu")
    with open(batch_path) as f:
        b = json.load(f)
    logits = logits_of(model, torch.tensor(b["ids"]), torch.tensor(b["mask"]))
    kinds = sorted({type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__})
    print(json.dumps({"logits": logits.reshape(-1).tolist(), "modules": kinds}))


def main():
    torch.set_num_threads(2)
    if len(sys.argv) > 1 and sys.argv[1] == "eval":
        return evaluate(sys.argv[2], sys.argv[3])
    from safetensors.torch import save_file
    os.makedirs(OUT, exist_ok=True)
    tensors, meta = blockwise_cases()
    save_file(tensors, os.path.join(OUT, "blockwise.safetensors"))
    with open(os.path.join(OUT, "blockwise.json"), "w") as f:
        json.dump(meta, f)
    print("wrote blockwise:", len(meta["cases"]), "4-bit cases;",
          sum(not c["bnb_cpu_kernel_agrees"] for c in meta["cases"]), "where bitsandbytes' CPU dequantize kernel differs")
    make_tiny_base()
    tiny_models()
    qlora()


if __name__ == "__main__":
    main()
