"""Loads a base model and an adapter folder with PEFT and prints the token-weighted mean loss of a
batch given as JSON {ids, mask, labels} (used by the tests to check that adapters lorakit writes load
in PEFT with the same outputs). Usage: peft_eval.py MODEL_DIR ADAPTER_DIR BATCH_JSON"""
import json
import sys

import torch
import transformers
from peft import PeftModel


def main():
    model_dir, adapter_dir, batch_path = sys.argv[1:4]
    torch.set_num_threads(1)
    base = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()
    with open(batch_path) as f:
        b = json.load(f)
    ids, mask, labels = (torch.tensor(b[k]) for k in ("ids", "mask", "labels"))
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
        shift = logits[:, :-1].reshape(-1, logits.shape[-1])
        tgt = labels[:, 1:].reshape(-1)
        total = torch.nn.functional.cross_entropy(shift.double(), tgt, ignore_index=-100, reduction="sum")
    print(json.dumps({"loss": total.item() / int((tgt != -100).sum())}))


if __name__ == "__main__":
    main()
