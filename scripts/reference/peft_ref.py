"""Reference outputs for LoRA parity with PEFT + torch autograd, on the tiny models of model_ref.py.

For each (model, variant) writes test/fixtures/peft/<model>-<variant>/: the adapter as PEFT saves it,
and expected.json + expected.safetensors with the batch, the loss, the gradients of every adapter
tensor, the adapter after one SGD step, and the adapter and losses over five AdamW steps.
"""
import json
import os
import shutil

import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "test", "fixtures", "models")
OUT = os.path.join(ROOT, "test", "fixtures", "peft")

VARIANTS = {
    "lora": dict(r=4, lora_alpha=8, target_modules="all-linear"),
    "rslora": dict(r=4, lora_alpha=8, target_modules="all-linear", use_rslora=True),
    "dora": dict(r=4, lora_alpha=8, target_modules="all-linear", use_dora=True),
    "qv": dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
    "mts": dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head", "embed_tokens"]),
}
CASES = [("llama", "lora"), ("llama", "rslora"), ("llama", "dora"), ("llama3-tied", "lora"), ("llama-linear", "dora"),
         ("mistral", "qv"), ("qwen2", "lora"), ("qwen3", "lora"), ("llama", "mts")]


def batch(vocab):
    g = torch.Generator().manual_seed(7)
    a = torch.randint(3, vocab, (17,), generator=g)
    b = torch.randint(3, vocab, (11,), generator=g)
    T = 17
    ids = torch.zeros((2, T), dtype=torch.long)
    mask = torch.zeros((2, T), dtype=torch.long)
    labels = torch.full((2, T), -100, dtype=torch.long)
    ids[0] = a
    mask[0] = 1
    labels[0, 5:] = a[5:]  # a prompt of 5 tokens without loss
    ids[1, :11] = b
    mask[1, :11] = 1
    labels[1, :11] = b
    return ids, mask, labels


def loss_of(model, ids, mask, labels):
    logits = model(input_ids=ids, attention_mask=mask).logits
    shift = logits[:, :-1].reshape(-1, logits.shape[-1])
    tgt = labels[:, 1:].reshape(-1)
    total = torch.nn.functional.cross_entropy(shift, tgt, ignore_index=-100, reduction="sum")
    count = int((tgt != -100).sum())
    return total / count, total.item(), count


def saved_name(param_name):
    # PEFT's saved names: no adapter name, and modules_to_save copies under the module's own name.
    return param_name.replace(".modules_to_save.default", "").replace(".default", "")


def adapter_state(model):
    return {saved_name(n): p.detach().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def main():
    torch.set_num_threads(2)
    for model_name, variant in CASES:
        mdir = os.path.join(MODELS, model_name)
        base = transformers.AutoModelForCausalLM.from_pretrained(mdir, dtype=torch.float32)
        torch.manual_seed(4321)
        cfg = LoraConfig(lora_dropout=0.0, task_type="CAUSAL_LM", **VARIANTS[variant])
        model = get_peft_model(base, cfg)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_A" in n or "lora_B" in n:
                    p.normal_(0, 0.1)
                elif "lora_magnitude_vector" in n:
                    p.mul_(1 + 0.1 * torch.randn_like(p))
        d = os.path.join(OUT, f"{model_name}-{variant}")
        shutil.rmtree(d, ignore_errors=True)
        adapter_dir = os.path.join(d, "adapter")
        model.save_pretrained(adapter_dir)
        ids, mask, labels = batch(base.config.vocab_size)
        tensors = {}
        model.train()
        loss, loss_sum, count = loss_of(model, ids, mask, labels)
        loss.backward()
        for n, p in model.named_parameters():
            if p.requires_grad:
                tensors["grad." + saved_name(n)] = p.grad.detach().clone().contiguous()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        opt.step()
        for k, v in adapter_state(model).items():
            tensors["sgd." + k] = v
        # Five AdamW steps from the saved adapter.
        base = transformers.AutoModelForCausalLM.from_pretrained(mdir, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=True)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
        adam_losses = []
        for _ in range(5):
            opt.zero_grad()
            l, _, _ = loss_of(model, ids, mask, labels)
            l.backward()
            opt.step()
            adam_losses.append(l.item())
        for k, v in adapter_state(model).items():
            tensors["adamw." + k] = v
        save_file(tensors, os.path.join(d, "expected.safetensors"))
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump({"model": model_name, "variant": variant, "ids": ids.tolist(), "mask": mask.tolist(),
                       "labels": labels.tolist(), "loss_sum": loss_sum, "loss_tokens": count,
                       "sgd_lr": 0.5, "adamw": {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                                 "weight_decay": 0.01, "losses": adam_losses}}, f)
        print("wrote", model_name, variant)


if __name__ == "__main__":
    main()
