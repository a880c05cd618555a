"""PyTorch side of lorakit's GPU generation benchmark (bench/gpu/generate-gpu.ts): decoding speed of
transformers' generate on random weights of a real model's shape, bf16 or NF4 + double quantization
through bitsandbytes (block 64, bf16 compute; the head stays bf16). Batch 1, greedy, transformers'
default KV cache, a prompt of --prompt random ids (seed 0), exactly --tokens new ones. Decoding tokens/s
excludes the prompt: (tokens - 1) / (time of the whole run - time of a run that makes one token), the
faster of two runs each. Prints one JSON line per (shape, mode) on stdout.

  python3 bench/gpu/generate_torch.py --shapes llama-3.2-1b,llama-3.1-8b --modes bf16,nf4 \
      [--prompt 32] [--tokens 128] [--model-root /tmp/lk-models]

The random bf16 checkpoints are train_torch.py's (built once per shape under --model-root, reused).
"""
import argparse
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_torch as tt  # noqa: E402  (sets the offline environment and routes prints to stderr)


def weight_bytes(model):
    """Bytes of every linear weight (head included) as stored: what one decoding step reads."""
    import torch

    total = 0
    for name, m in model.named_modules():
        if not isinstance(m, torch.nn.Linear):
            continue
        w = m.weight
        total += w.numel() * w.element_size()
        qs = getattr(w, "quant_state", None)
        if qs is not None:
            total += qs.absmax.numel() * qs.absmax.element_size()
            if getattr(qs, "state2", None) is not None:
                total += qs.state2.absmax.numel() * qs.state2.absmax.element_size()
    return total


def run_one(a, shape, mode):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    cfg = tt.make_config(shape)
    a.model_dir = os.path.join(a.model_root, shape)
    a.shape, a.device = shape, "cuda"
    tt.ensure_checkpoint(a, cfg, torch)
    kw = dict(dtype=torch.bfloat16, device_map={"": 0})
    if mode == "nf4":
        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, **kw)
    model.eval()
    model.config.use_cache = True
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (1, a.prompt), generator=g).cuda()
    mask = torch.ones_like(ids)

    def run(n):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False, pad_token_id=0, use_cache=True)
        torch.cuda.synchronize()
        assert out.shape[1] == a.prompt + n, out.shape
        return (time.perf_counter() - t) * 1000

    run(8)
    first = min(run(1), run(1))
    whole = min(run(a.tokens), run(a.tokens))
    per_token = (whole - first) / (a.tokens - 1)
    wb = weight_bytes(model)
    row = dict(impl="transformers + bitsandbytes" if mode == "nf4" else "transformers", shape=shape, mode=mode,
               prompt=a.prompt, tokens=a.tokens, decode_tokens_per_s=1000 / per_token, first_token_ms=first,
               weight_gib=wb / 2 ** 30, weights_gb_s=wb / 1e9 / (per_token / 1000),
               attn=getattr(model.config, "_attn_implementation", None), versions=tt.versions())
    del model
    torch.cuda.empty_cache()
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="llama-3.2-1b,llama-3.1-8b")
    p.add_argument("--modes", default="bf16,nf4")
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--model-root", default="/tmp/lk-models")
    a = p.parse_args()
    failed = False
    for shape in a.shapes.split(","):
        for mode in a.modes.split(","):
            try:
                tt.emit(run_one(a, shape, mode))
            except BaseException as e:  # noqa: BLE001 - report every failure as JSON
                traceback.print_exc()
                tt.emit(dict(impl="transformers", shape=shape, mode=mode, error=f"{type(e).__name__}: {e}"[:2000]))
                failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
