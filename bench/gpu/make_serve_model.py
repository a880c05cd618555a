"""Model folder for the serving benchmark (bench/gpu/serve-gpu.ts): a random-weight Llama checkpoint
with a real model's shape (config.json + model.safetensors, bf16), a byte-level BPE tokenizer that
covers the whole vocabulary (lorakit serve needs a tokenizer.json next to safetensors weights), and K
PEFT LoRA adapters on every linear layer under <folder>/adapters/a0..a{K-1}.

  python3 bench/gpu/make_serve_model.py --out DIR --shape llama-3.2-1b|llama-3.1-8b|tiny \
      [--adapters 64] [--device cuda|cpu]

Weights are drawn with std 0.02 (transformers' initializer_range) so that greedy decoding stays finite;
speed does not depend on their values. Adapter ranks cycle through 8, 16, 32, 64; B is random
(std 0.01), so every adapter changes the outputs. A folder that already holds .complete is left as is.
"""
import argparse
import json
import os
import shutil
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LLAMA3_COMMON = dict(
    architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=128256,
    max_position_embeddings=131072, rms_norm_eps=1e-5, hidden_act="silu", rope_theta=500000.0,
    attention_bias=False, mlp_bias=False, bos_token_id=128000, eos_token_id=128001,
    initializer_range=0.02, torch_dtype="bfloat16",
)

# The published config.json fields (meta-llama/Llama-3.2-1B, meta-llama/Llama-3.1-8B) that set shape
# and numerics; `tiny` keeps the vocabulary and RoPE of Llama 3 with a toy body, for smoke tests.
SHAPES = {
    "llama-3.2-1b": dict(
        LLAMA3_COMMON, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, tie_word_embeddings=True,
        rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192),
    ),
    "llama-3.1-8b": dict(
        LLAMA3_COMMON, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=False,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192),
    ),
    "tiny": dict(
        LLAMA3_COMMON, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
        rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192),
    ),
}

RANKS = [8, 16, 32, 64]
FIRST_SPECIAL = 128000


def log(*a):
    print("make_serve_model:", *a, file=sys.stderr, flush=True)


def write_tokenizer(out, vocab_size):
    """Byte-level BPE over the whole vocabulary, Llama 3's special-token layout.

    Ids 0-255 are the 256 byte symbols (so any text encodes), 256-127999 are plain word tokens
    (" t<id>": each decodes to whole ASCII text, so a streamed token is one visible piece), and
    128000 on are special tokens (<|begin_of_text|>, <|end_of_text|>, reserved ones). No merges: the
    prompts are token ids, and the tokenizer only has to decode what the model generates."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    byte_symbols = pre_tokenizers.ByteLevel.alphabet()
    # bytes_to_unicode order: the symbol of byte b at id b, as GPT-2 style vocabularies have it.
    table = {}
    n = 0
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    assert set(table.values()) == set(byte_symbols)
    vocab = {table[b]: b for b in range(256)}
    space = table[ord(" ")]
    for i in range(256, FIRST_SPECIAL):
        vocab[f"{space}t{i}"] = i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>"] + [
        f"<|reserved_special_token_{i}|>" for i in range(vocab_size - FIRST_SPECIAL - 2)]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    assert tok.token_to_id("<|begin_of_text|>") == FIRST_SPECIAL and tok.get_vocab_size() == vocab_size
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", FIRST_SPECIAL)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
        model_max_length=131072, clean_up_tokenization_spaces=False)
    fast.save_pretrained(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--shape", choices=sorted(SHAPES), required=True)
    p.add_argument("--adapters", type=int, default=64)
    p.add_argument("--device", default=None, help="cuda when available, else cpu")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    done = os.path.join(a.out, ".complete")
    if os.path.exists(done):
        log(f"{a.out} is complete; left as is")
        return
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.time()
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    d = dict(SHAPES[a.shape])
    cfg = AutoConfig.for_model(**{k: v for k, v in d.items() if k not in ("architectures", "torch_dtype")})
    torch.manual_seed(a.seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    log(f"built random {a.shape} on {device} in {time.time() - t0:.1f}s")
    # One file (lorakit reads shards too, but the folder is simpler to inspect whole).
    model.save_pretrained(a.out, max_shard_size="1000GB")
    # config.json as the hub has it (v4 keys rope_theta + rope_scaling), which both lorakit and
    # transformers read; transformers 5 would write its own rope_parameters form otherwise.
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(dict(d, transformers_version="4.45.0"), f, indent=2)
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 128000, "eos_token_id": 128001, "do_sample": False}, f, indent=2)
    write_tokenizer(a.out, d["vocab_size"])
    log(f"saved the base model in {time.time() - t0:.1f}s")

    adir = os.path.join(a.out, "adapters")
    os.makedirs(adir)
    for i in range(a.adapters):
        r = RANKS[i % len(RANKS)]
        lc = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear",
                        task_type="CAUSAL_LM")
        # bf16 factors, as the base: PEFT would otherwise keep them in fp32.
        pm = get_peft_model(model, lc, autocast_adapter_dtype=False)
        g = torch.Generator(device=device).manual_seed(a.seed + 1 + i)
        with torch.no_grad():
            for name, prm in pm.named_parameters():
                if "lora_B" in name:
                    prm.copy_(torch.randn(prm.shape, generator=g, device=device, dtype=torch.float32) * 0.01)
        pm.save_pretrained(os.path.join(adir, f"a{i}"))
        model = pm.unload()
    log(f"saved {a.adapters} adapters (ranks {', '.join(map(str, RANKS))} in turn) in {time.time() - t0:.1f}s")
    with open(done, "w") as f:
        f.write(json.dumps({"shape": a.shape, "adapters": a.adapters}) + "\n")


if __name__ == "__main__":
    main()
