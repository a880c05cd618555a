"""Reference outputs for model parity: tiny random decoders of each supported architecture and the
pre-trained stories260K, run through transformers in fp32.

Writes test/fixtures/models/<name>/ with config.json + model.safetensors (the model itself) and
expected.json: input ids, logits of the real (non-padding) positions, the mean next-token loss and
greedy continuations.
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "test", "fixtures", "models")
SHARED = os.environ.get("LORAKIT_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))

BASE = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, hidden_act="silu")

# name -> (config class name, overrides, write the config in v4 style with rope_theta/rope_scaling)
TINY = {
    "llama": ("LlamaConfig", dict(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), False),
    "llama3-tied": ("LlamaConfig", dict(tie_word_embeddings=True, num_key_value_heads=1,
                    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 16}), True),
    "llama-linear": ("LlamaConfig", dict(num_key_value_heads=4, attention_bias=True, mlp_bias=True,
                     rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}), True),
    "mistral": ("MistralConfig", dict(sliding_window=None, rope_parameters={"rope_type": "default", "rope_theta": 1e6}), False),
    "qwen2": ("Qwen2Config", dict(tie_word_embeddings=True,
              rope_parameters={"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0,
                               "original_max_position_embeddings": 32}), False),
    "qwen3": ("Qwen3Config", dict(head_dim=24, rope_parameters={"rope_type": "default", "rope_theta": 1e6}), False),
}


CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def write_tokenizer(d: str, vocab: int):
    """A real BPE tokenizer (sentencepiece-style, Metaspace) trained with `tokenizers` to the tiny
    model's vocabulary size, with ChatML special tokens and template, so tiny models take text too."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    path = os.path.join(SHARED, "datasets", "tinystories", "tinystories_val.txt")
    with open(path, encoding="utf-8") as f:
        text = f.read(200_000)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, limit_alphabet=60)
    tok.train_from_iterator(text.split("\n"), trainer)
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "<|im_end|>", "unk_token": "<unk>", "chat_template": CHATML}, f)


def to_v4(cfg: dict) -> dict:
    params = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = params.pop("rope_theta")
    if params.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = params
    return cfg


def inputs(vocab: int, gen: torch.Generator):
    """Two rows: a full one of 40 tokens and a right-padded one of 23."""
    a = torch.randint(3, vocab, (40,), generator=gen)
    b = torch.randint(3, vocab, (23,), generator=gen)
    return [a.tolist(), b.tolist()]


def run(model, rows):
    model.eval()
    out = {"rows": rows, "logits": [], "loss_sum": 0.0, "loss_tokens": 0, "greedy": []}
    with torch.no_grad():
        T = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), T), dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        labels = torch.full((len(rows), T), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
            labels[i, : len(r)] = torch.tensor(r)
        logits = model(input_ids=ids, attention_mask=mask).logits
        for i, r in enumerate(rows):
            out["logits"].append(logits[i, : len(r)].reshape(-1).tolist())
        shift = logits[:, :-1].reshape(-1, logits.shape[-1])
        tgt = labels[:, 1:].reshape(-1)
        nll = torch.nn.functional.cross_entropy(shift.double(), tgt, ignore_index=-100, reduction="sum")
        out["loss_sum"] = nll.item()
        out["loss_tokens"] = int((tgt != -100).sum())
        for r in rows:
            g = model.generate(torch.tensor([r[:8]]), attention_mask=torch.ones((1, 8), dtype=torch.long),
                               max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
            out["greedy"].append({"prompt": r[:8], "tokens": g[0, 8:].tolist()})
    return out


def tiny(name: str, cls_name: str, overrides: dict, v4: bool):
    torch.manual_seed(1234)
    cfg = getattr(transformers, cls_name)(**{**BASE, **overrides})
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    # Random init is small; widen it so the test sees real signal in every weight.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0, 0.08)
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    write_tokenizer(d, cfg.vocab_size)
    if v4:
        path = os.path.join(d, "config.json")
        with open(path) as f:
            cfg_json = json.load(f)
        with open(path, "w") as f:
            json.dump(to_v4(cfg_json), f, indent=2)
        model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    gen = torch.Generator().manual_seed(99)
    res = run(model, inputs(cfg.vocab_size, gen))
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(res, f)


def stories():
    src = os.path.join(SHARED, "models", "stories260K-hf")
    if not os.path.isdir(src):
        print("stories260K-hf not found; skipping", file=sys.stderr)
        return
    tok = transformers.AutoTokenizer.from_pretrained(src)
    model = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    texts = ["Once upon a time, there was a little girl named Lily.",
             "The cat sat on the mat. It was happy and warm."]
    rows = [tok(t)["input_ids"] for t in texts]
    res = run(model, rows)
    res["texts"] = texts
    d = os.path.join(OUT, "stories260K")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    torch.set_num_threads(2)
    for name, (cls_name, overrides, v4) in TINY.items():
        tiny(name, cls_name, overrides, v4)
        print("wrote", name)
    stories()
    print("wrote stories260K")
