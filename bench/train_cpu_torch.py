"""PyTorch + PEFT side of bench/train-cpu.ts: LoRA training steps on the same model (transformers
loads the same GGUF, dequantized to fp32), the same token batches and the same settings; prints one
JSON line with tokens/s and peak RSS."""
import argparse
import json
import os
import resource
import time

import torch
import transformers
from peft import LoraConfig, get_peft_model

p = argparse.ArgumentParser()
p.add_argument("--gguf", required=True)
p.add_argument("--batches", required=True)
p.add_argument("--threads", type=int, default=os.cpu_count())
p.add_argument("--r", type=int, default=16)
p.add_argument("--checkpointing", action="store_true")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
d, f = os.path.split(a.gguf)
model = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
model = get_peft_model(model, LoraConfig(r=a.r, lora_alpha=2 * a.r, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"))
if a.checkpointing:
    model.gradient_checkpointing_enable()
    model.enable_input_require_grads()
model.train()
opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)
with open(a.batches) as fh:
    batches = json.load(fh)
times, tokens = [], []
for i, b in enumerate(batches):
    ids, mask, labels = (torch.tensor(b[k]) for k in ("ids", "mask", "labels"))
    t0 = time.perf_counter()
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_([q for q in model.parameters() if q.requires_grad], 1.0)
    opt.step()
    opt.zero_grad()
    times.append(time.perf_counter() - t0)
    tokens.append(int(mask.sum()))
# The first step warms up; it is left out of the rate.
rate = sum(tokens[1:]) / sum(times[1:])
print(json.dumps({"tokens_per_s": rate, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "steps": len(batches), "torch_version": torch.__version__}))
