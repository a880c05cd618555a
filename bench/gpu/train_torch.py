"""PyTorch side of lorakit's GPU training benchmark: LoRA (bf16 base) or QLoRA (NF4 + double quant)
training steps through transformers + PEFT (+ bitsandbytes) or Unsloth, on random weights of a real
model's shape. Prints ONE JSON line on stdout (everything the libraries print goes to stderr); on
failure a JSON line with "error" and exits 1.

  python3 bench/gpu/train_torch.py --impl hf|unsloth --mode lora|qlora \
      --shape llama-3.2-1b|qwen2.5-0.5b|llama-3.1-8b --seq 2048 --batch 1 --steps 12 --warmup 3

Settings (both implementations): r=16 on q,k,v,o,gate,up,down, lora_alpha 16 (scale 1), dropout 0,
activation checkpointing, AdamW (torch, fused) lr 1e-4, no gradient clipping, bf16 weights and bf16
autocast, LoRA weights as each library keeps them (PEFT: fp32), loss over all tokens of random ids
(seed 0), labels = inputs. The random bf16 model is saved once to --model-dir (with a synthetic
tokenizer: Unsloth loads by path and wants one) and reused by the other runs of that shape.

Model FLOPs per token (for mfu; recomputation not counted, see hfu):
  frozen linears (incl. lm_head): forward 2*P, backward 2*P (input gradient only)
  attention (causal, average over positions): forward 2*L*heads*head_dim*seq, backward twice that
  LoRA: 6*r*(in+out) per adapted linear (forward, input and weight gradients)
mfu = tokens/s * flops_per_token / measured bf16 GEMM rate (--gemm-tflops, measured here if 0).
"""
import argparse
import json
import math
import os
import signal
import sys
import time
import traceback

# Offline, no telemetry: the GPU machine reaches nothing. Set before any HF / Unsloth import.
for k, v in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "UNSLOTH_DISABLE_STATISTICS": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "UNSLOTH_COMPILE_LOCATION": "/tmp/unsloth_compiled_cache",
    "TORCHAO_FORCE_SKIP_LOADING_SO_FILES": "1",
}.items():
    os.environ.setdefault(k, v)

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# The published config.json of each model (hub: meta-llama/Llama-3.2-1B, Qwen/Qwen2.5-0.5B,
# meta-llama/Llama-3.1-8B), the fields that set shape and numerics.
SHAPES = {
    "llama-3.2-1b": dict(
        architectures=["LlamaForCausalLM"], model_type="llama",
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256,
        max_position_embeddings=131072, rms_norm_eps=1e-5, hidden_act="silu",
        rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192),
        attention_bias=False, mlp_bias=False, tie_word_embeddings=True,
        bos_token_id=128000, eos_token_id=128001, initializer_range=0.02,
    ),
    "qwen2.5-0.5b": dict(
        architectures=["Qwen2ForCausalLM"], model_type="qwen2",
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
        max_position_embeddings=32768, rms_norm_eps=1e-6, hidden_act="silu",
        rope_theta=1000000.0, use_sliding_window=False, sliding_window=32768, max_window_layers=24,
        tie_word_embeddings=True,  # q/k/v carry biases in Qwen2 (built into the architecture)
        bos_token_id=151643, eos_token_id=151643, initializer_range=0.02,
    ),
    "llama-3.1-8b": dict(
        architectures=["LlamaForCausalLM"], model_type="llama",
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=128256,
        max_position_embeddings=131072, rms_norm_eps=1e-5, hidden_act="silu",
        rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192),
        attention_bias=False, mlp_bias=False, tie_word_embeddings=False,
        bos_token_id=128000, eos_token_id=128001, initializer_range=0.02,
    ),
}

# JSON goes to the real stdout; the libraries' own printing (Python and C) goes to stderr.
_json_out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr


def emit(obj):
    _json_out.write(json.dumps(obj) + "\n")
    _json_out.flush()


def log(*a):
    print("[train_torch]", *a, file=sys.stderr, flush=True)


def make_config(shape, overrides=None):
    """transformers config for a shape; overrides (e.g. a tiny test size) replace fields."""
    from transformers import AutoConfig

    d = dict(SHAPES[shape])
    d.update(overrides or {})
    model_type = d.pop("model_type")
    d["dtype"] = "bfloat16"
    d["use_cache"] = False
    return AutoConfig.for_model(model_type, **d)


def dims(cfg):
    h, L = cfg.hidden_size, cfg.num_hidden_layers
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or h // nh
    i = cfg.intermediate_size
    # (in, out) of each adapted linear of one layer
    lin = {"q_proj": (h, nh * hd), "k_proj": (h, nkv * hd), "v_proj": (h, nkv * hd), "o_proj": (nh * hd, h),
           "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    return h, L, nh, nkv, hd, i, lin


def flops_per_token(cfg, seq, r):
    h, L, nh, nkv, hd, i, lin = dims(cfg)
    p_lin = L * sum(a * b for a, b in lin.values()) + h * cfg.vocab_size  # + lm_head
    attn_fwd = 2 * L * nh * hd * seq
    lora = 6 * r * L * sum(a + b for a, b in lin.values())
    model = 4 * p_lin + 3 * attn_fwd + lora
    p_layers = L * sum(a * b for a, b in lin.values())
    recompute = 2 * p_layers + attn_fwd + 2 * r * L * sum(a + b for a, b in lin.values())
    return model, model + recompute


def expected_params(cfg):
    h, L, nh, nkv, hd, i, lin = dims(cfg)
    per_layer = sum(a * b for a, b in lin.values()) + 2 * h  # two RMSNorms
    if cfg.model_type == "qwen2":
        per_layer += nh * hd + 2 * nkv * hd  # q/k/v biases
    emb = cfg.vocab_size * h
    return L * per_layer + h + emb + (0 if cfg.tie_word_embeddings else emb)


def save_tokenizer(path, vocab_size, cfg):
    """A word-level tokenizer with one token per id (Unsloth loads a tokenizer from the model path)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"<t{i}>": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<t0>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    eos = cfg.eos_token_id if isinstance(cfg.eos_token_id, int) else cfg.eos_token_id[0]
    pad = vocab_size - 1 if vocab_size - 1 not in (cfg.bos_token_id, eos) else vocab_size - 2
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=f"<t{cfg.bos_token_id}>", eos_token=f"<t{eos}>",
        pad_token=f"<t{pad}>", unk_token="<t0>", model_max_length=cfg.max_position_embeddings)
    fast.save_pretrained(path)


def ensure_checkpoint(a, cfg, torch):
    """Random bf16 model of the shape saved under a.model_dir (built once per shape, reused)."""
    done = os.path.join(a.model_dir, ".complete")
    if os.path.exists(done):
        return False
    from transformers import AutoModelForCausalLM
    import shutil

    t = time.time()
    shutil.rmtree(a.model_dir, ignore_errors=True)
    os.makedirs(a.model_dir)
    torch.manual_seed(0)
    with torch.device(a.device):
        m = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    log(f"built random {a.shape} in {time.time() - t:.1f}s")
    m.save_pretrained(a.model_dir)
    save_tokenizer(a.model_dir, cfg.vocab_size, cfg)
    del m
    torch.cuda.empty_cache() if a.device == "cuda" else None
    open(done, "w").write("ok\n")
    log(f"saved to {a.model_dir} in {time.time() - t:.1f}s")
    return True


def count_params(model):
    total = trainable = 0
    dtypes = set()
    for n, p in model.named_parameters():
        if p.requires_grad:
            trainable += p.numel()
            dtypes.add(str(p.dtype).replace("torch.", ""))
            continue
        qs = getattr(p, "quant_state", None)
        total += math.prod(qs.shape) if qs is not None and getattr(qs, "shape", None) is not None else p.numel()
    return total, trainable, sorted(dtypes)


def versions():
    import importlib.metadata as md

    out = {}
    for n in ("torch", "transformers", "peft", "bitsandbytes", "unsloth", "unsloth_zoo", "trl", "triton", "accelerate"):
        try:
            out[n] = md.version(n)
        except Exception:
            out[n] = None
    return out


def load_hf(a, cfg, torch):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    if a.mode == "qlora":
        from transformers import BitsAndBytesConfig

        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(a.model_dir, quantization_config=bnb, dtype=torch.bfloat16,
                                                     device_map={"": 0 if a.device == "cuda" else a.device})
    else:
        model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=torch.bfloat16, device_map={"": a.device}
                                                     if a.device == "cuda" else None)
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    lc = LoraConfig(r=a.r, lora_alpha=a.r, lora_dropout=0.0, target_modules=TARGETS, bias="none",
                    task_type="CAUSAL_LM")
    model = get_peft_model(model, lc)
    return model, {"grad_ckpt": "hf non-reentrant", "attn": getattr(model.config, "_attn_implementation", None)}


def load_unsloth(a, cfg, torch):
    from unsloth import FastLanguageModel

    kw = dict(max_seq_length=a.seq, dtype=torch.bfloat16, load_in_4bit=a.mode == "qlora",
              load_in_16bit=a.mode == "lora", full_finetuning=False, fix_tokenizer=False,
              use_exact_model_name=True)
    model, _tok = FastLanguageModel.from_pretrained(a.model_dir, **kw)
    gc = True if a.unsloth_gc in ("true", "True", "1") else a.unsloth_gc
    model = FastLanguageModel.get_peft_model(
        model, r=a.r, target_modules=TARGETS, lora_alpha=a.r, lora_dropout=0.0, bias="none",
        use_gradient_checkpointing=gc, random_state=3407, max_seq_length=a.seq, use_rslora=False)
    FastLanguageModel.for_training(model)
    info = {"grad_ckpt": f"unsloth use_gradient_checkpointing={gc!r}",
            "attn": getattr(getattr(model, "config", None), "_attn_implementation", None)}
    try:  # which fast paths Unsloth found (xformers is not carried: it then uses PyTorch SDPA)
        import unsloth.models._utils as uu
        import unsloth_zoo.loss_utils as zl

        info["unsloth_features"] = {"xformers": getattr(uu, "xformers_version", None),
                                    "flash_attn": getattr(uu, "HAS_FLASH_ATTENTION", None),
                                    "cut_cross_entropy": getattr(zl, "HAS_CUT_CROSS_ENTROPY", None)}
    except Exception as e:  # noqa: BLE001
        info["unsloth_features"] = f"unknown ({type(e).__name__})"
    return model, info


def measure_gemm(torch, n=8192, reps=10):
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e12


def run(a, result):
    t_start = time.time()

    def phase(name):
        result["phase"] = name
        log(f"{time.time() - t_start:7.1f}s {name}")
    a.model_dir = os.path.abspath(a.model_dir or f"/tmp/lk-models/{a.shape}")
    # Unsloth writes caches and temporary folders into the working directory: keep them out of the repo.
    work = os.environ.get("LK_WORKDIR", "/tmp/lk-work")
    os.makedirs(work, exist_ok=True)
    os.chdir(work)
    phase("import")
    if a.impl == "unsloth":
        import unsloth  # noqa: F401  (first, before transformers/peft, so its patches apply)
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device visible to torch")
    result["gpu"] = torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu"
    cfg = make_config(a.shape, json.loads(a.override) if a.override else None)
    phase("checkpoint")
    result["built_checkpoint"] = ensure_checkpoint(a, cfg, torch)
    phase("load")
    t_load = time.time()
    model, info = (load_unsloth if a.impl == "unsloth" else load_hf)(a, cfg, torch)
    result.update(info)
    result["load_s"] = round(time.time() - t_load, 1)
    model.train()
    params, trainable, tdtypes = count_params(model)
    result.update(params=params, params_expected=expected_params(cfg), trainable_params=trainable,
                  trainable_dtype=",".join(tdtypes),
                  linear4bit_modules=sum(type(m).__name__ == "Linear4bit" for m in model.modules()))
    opt_params = [p for p in model.parameters() if p.requires_grad]
    try:
        opt = torch.optim.AdamW(opt_params, lr=1e-4, fused=a.device == "cuda")
    except Exception:
        opt = torch.optim.AdamW(opt_params, lr=1e-4)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, cfg.vocab_size, (a.batch, a.seq), generator=g) for _ in range(min(4, a.warmup + a.steps))]
    batches = [b.to(a.device) for b in batches]
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)

    def step(ids):
        with torch.autocast(a.device, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    losses, times = [], []
    phase("warmup")
    t_w = time.time()
    for i in range(a.warmup):
        losses.append(step(batches[i % len(batches)]))
    sync()
    result["warmup_s"] = round(time.time() - t_w, 1)
    phase("timed")
    if a.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(a.steps):
        ts = time.perf_counter()
        losses.append(step(batches[(a.warmup + i) % len(batches)]))
        sync()
        times.append(time.perf_counter() - ts)
    elapsed = time.perf_counter() - t0
    tokens = a.batch * a.seq * a.steps
    lv = [float(x) for x in losses]
    if not all(math.isfinite(x) for x in lv):
        result["note"] = "non-finite loss"
    fpt, hw_fpt = flops_per_token(cfg, a.seq, a.r)
    tps = tokens / elapsed
    gemm = a.gemm_tflops
    if not gemm and a.device == "cuda":
        gemm = round(measure_gemm(torch), 1)
    times.sort()
    phase("done")
    result.update(
        tokens_per_s=round(tps, 1), step_ms=round(1e3 * elapsed / a.steps, 2),
        step_ms_median=round(1e3 * times[len(times) // 2], 2), step_ms_min=round(1e3 * times[0], 2),
        peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2 ** 30, 3) if a.device == "cuda" else None,
        peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2 ** 30, 3) if a.device == "cuda" else None,
        flops_per_token=fpt, hw_flops_per_token=hw_fpt, gemm_tflops=gemm or None,
        mfu=round(tps * fpt / (gemm * 1e12), 4) if gemm else None,
        hfu=round(tps * hw_fpt / (gemm * 1e12), 4) if gemm else None,
        loss_first=round(lv[0], 4), loss_last=round(lv[-1], 4), total_s=round(time.time() - t_start, 1),
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", choices=["hf", "unsloth"], required=True)
    p.add_argument("--mode", choices=["lora", "qlora"], required=True)
    p.add_argument("--shape", choices=sorted(SHAPES), required=True)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--r", type=int, default=16)
    p.add_argument("--gemm-tflops", type=float, default=0.0, help="bf16 GEMM rate for mfu; 0: measure here")
    p.add_argument("--model-dir", default=None, help="random checkpoint folder (default /tmp/lk-models/SHAPE)")
    p.add_argument("--unsloth-gc", default="unsloth", choices=["unsloth", "true"],
                   help='Unsloth use_gradient_checkpointing ("unsloth": its default, offloads activations)')
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # cpu: local smoke tests only
    p.add_argument("--override", default=None, help=argparse.SUPPRESS)  # JSON config overrides (tests)
    a = p.parse_args()
    if a.steps < 1 or a.warmup < 0 or a.batch < 1 or a.seq < 2:
        p.error("need --steps >= 1, --warmup >= 0, --batch >= 1, --seq >= 2")
    def on_term(signum, frame):
        raise TimeoutError(f"terminated by signal {signum} (the caller's timeout?)")

    signal.signal(signal.SIGTERM, on_term)
    result = dict(impl=a.impl, mode=a.mode, shape=a.shape, seq=a.seq, batch=a.batch, steps=a.steps,
                  warmup=a.warmup, r=a.r, lora_alpha=a.r, optimizer="torch AdamW fused lr=1e-4")
    try:
        run(a, result)
    except BaseException as e:  # noqa: BLE001 - report every failure as JSON
        traceback.print_exc()
        result["error"] = f"{type(e).__name__}: {e}"[:2000]
        if "torch" in sys.modules:
            try:
                import torch

                if torch.cuda.is_available():
                    result["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 3)
            except Exception:
                pass
        result["versions"] = versions()
        emit(result)
        sys.exit(1)
    result["versions"] = versions()
    emit(result)


if __name__ == "__main__":
    main()
