"""RoPE reference: inverse frequencies, attention scaling and cos/sin from transformers' own code.

For each config.json-style dict below, builds a LlamaConfig the way from_pretrained does, runs
LlamaRotaryEmbedding (which calls ROPE_INIT_FUNCTIONS / compute_default_rope_parameters) and records
inv_freq, attention_scaling and cos/sin at a few positions. test/rope.test.ts parses the same dicts
with parseRopeConfig and compares.

Writes test/fixtures/rope/rope.json. Run with the reference venv: .venv-ref/bin/python scripts/reference/rope_ref.py
"""

import json
import os

import torch
import transformers
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "test", "fixtures", "rope", "rope.json")

BASE = {"hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096}

CASES = {
    # v4 style: top-level rope_theta, rope_scaling with "type" or "rope_type"
    "default-v4-theta1e4": {**BASE, "rope_theta": 10000.0},
    "default-v4-no-theta": {**BASE},
    "default-v4-llama3-8b": {**BASE, "hidden_size": 4096, "num_attention_heads": 32, "rope_theta": 500000.0},
    "linear-v4-type": {**BASE, "rope_theta": 10000.0, "rope_scaling": {"type": "linear", "factor": 4.0}},
    "linear-v4-factor3": {**BASE, "rope_theta": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 3.0}},
    "llama3-v4-llama31-8b": {
        **BASE,
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
    },
    "llama3-v4-llama32-1b": {
        **BASE,
        "hidden_size": 2048,
        "num_attention_heads": 32,
        "head_dim": 64,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
    },
    # Qwen2.5 / Qwen3 long-context recipe: yarn, factor 4, original 32768
    "yarn-v4-qwen": {
        **BASE,
        "hidden_size": 2048,
        "num_attention_heads": 16,
        "head_dim": 128,
        "max_position_embeddings": 131072,
        "rope_theta": 1000000.0,
        "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
    },
    "yarn-v4-mscale-no-truncate": {
        **BASE,
        "head_dim": 64,
        "rope_theta": 10000.0,
        "rope_scaling": {
            "rope_type": "yarn",
            "factor": 40.0,
            "original_max_position_embeddings": 4096,
            "beta_fast": 32,
            "beta_slow": 1,
            "mscale": 1.0,
            "mscale_all_dim": 0.707,
            "truncate": False,
        },
    },
    "yarn-v4-attention-factor": {
        **BASE,
        "rope_theta": 10000.0,
        "rope_scaling": {
            "rope_type": "yarn",
            "factor": 2.0,
            "original_max_position_embeddings": 2048,
            "attention_factor": 1.25,
            "beta_fast": 16,
            "beta_slow": 2,
        },
    },
    "yarn-v4-toplevel-original": {
        **BASE,
        "rope_theta": 10000.0,
        "original_max_position_embeddings": 1024,
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0},
    },
    "dynamic-v4": {**BASE, "rope_theta": 10000.0, "rope_scaling": {"type": "dynamic", "factor": 2.0}},
    # v5 style: everything inside rope_parameters
    "default-v5": {**BASE, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}},
    "llama3-v5": {
        **BASE,
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "max_position_embeddings": 131072,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    },
    "yarn-v5-qwen3": {
        **BASE,
        "hidden_size": 1024,
        "num_attention_heads": 16,
        "head_dim": 128,
        "max_position_embeddings": 131072,
        "rope_parameters": {
            "rope_type": "yarn",
            "rope_theta": 1000000.0,
            "factor": 4.0,
            "original_max_position_embeddings": 32768,
        },
    },
    # Llama's default rope ignores partial_rotary_factor; the scaled variants honour it.
    "partial-linear-half": {
        **BASE,
        "rope_theta": 10000.0,
        "partial_rotary_factor": 0.5,
        "rope_scaling": {"rope_type": "linear", "factor": 1.0},
    },
    "partial-yarn-quarter": {
        **BASE,
        "rope_theta": 10000.0,
        "rope_parameters": {
            "rope_type": "yarn",
            "factor": 2.0,
            "original_max_position_embeddings": 2048,
            "partial_rotary_factor": 0.25,
        },
    },
}

POSITIONS = [0, 1, 2, 7, 33, 127, 1000, 4095]


def head_dim_of(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def main():
    out = {"transformers": transformers.__version__, "torch": torch.__version__, "positions": POSITIONS, "cases": []}
    for name, cfg in CASES.items():
        config = LlamaConfig.from_dict(dict(cfg))
        rotary = LlamaRotaryEmbedding(config)
        inv_freq = rotary.inv_freq.float()
        x = torch.zeros(1, dtype=torch.float32)
        pos = torch.tensor([POSITIONS], dtype=torch.int64)
        cos, sin = rotary(x, pos)
        half = inv_freq.numel()
        out["cases"].append(
            {
                "name": name,
                "config": cfg,
                "head_dim": head_dim_of(cfg),
                "inv_freq": inv_freq.tolist(),
                "attention_scaling": float(rotary.attention_scaling),
                "cos": cos[0, :, :half].tolist(),
                "sin": sin[0, :, :half].tolist(),
            }
        )
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f)
    print(f"wrote {OUT} ({len(out['cases'])} cases)")


if __name__ == "__main__":
    main()
