"""Reference for SmolLM2-135M-Instruct loaded from its GGUF: transformers dequantizes the same file
(Q4_1 -> fp32) and computes the token-weighted next-token loss and greedy continuation on real text
(TinyStories validation, ../shared/data). Writes test/fixtures/smollm2/expected.json with the token
ids, so the comparison does not depend on tokenizers."""
import json
import os
import subprocess
import sys

import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("LORAKIT_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))


def main():
    try:
        gguf = subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch-smollm2.sh")], check=True,
                              capture_output=True, text=True).stdout.strip()
    except subprocess.CalledProcessError:
        print("SmolLM2 could not be fetched; skipping", file=sys.stderr)
        return
    text_path = os.path.join(SHARED, "datasets", "tinystories", "tinystories_val.txt")
    if not os.path.exists(text_path):
        print("../shared/data is absent; skipping", file=sys.stderr)
        return
    torch.set_num_threads(2)
    d, f = os.path.split(gguf)
    tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    with open(text_path, encoding="utf-8") as fh:
        paras = [p.strip() for p in fh.read().split("\n\n") if len(p.strip()) > 200][:6]
    rows = [tok(p)["input_ids"][:160] for p in paras]
    total, count = 0.0, 0
    with torch.no_grad():
        for r in rows:
            ids = torch.tensor([r])
            logits = model(input_ids=ids).logits[0]
            total += torch.nn.functional.cross_entropy(logits[:-1].double(), ids[0, 1:], reduction="sum").item()
            count += len(r) - 1
        prompt = rows[0][:12]
        g = model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False)
    out = os.path.join(ROOT, "test", "fixtures", "smollm2")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "expected.json"), "w") as fh:
        json.dump({"gguf": gguf, "rows": rows, "loss": total / count, "tokens": count,
                   "prompt": prompt, "greedy": g[0, len(prompt):].tolist()}, fh)
    print("wrote smollm2")


if __name__ == "__main__":
    main()
