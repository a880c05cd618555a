"""The baseline for bench/gpu/serve-gpu.ts: an OpenAI-style completions server over transformers + PEFT,
written as a user of those libraries would, with the Python standard library only
(http.server.ThreadingHTTPServer).

  python3 bench/gpu/serve_peft.py --model DIR --adapter a0=DIR [--adapter a1=DIR ...] [--port 8000]
      [--policy grouped|one-adapter|mixed] [--max-batch 64] [--device cuda|cpu]

The base model is loaded in bf16, every adapter into one PeftModel (from_pretrained, then
load_adapter). POST /v1/completions takes `prompt` as text or a list of token ids, `max_tokens`,
`temperature` 0 (greedy only), `stream` (server-sent events in OpenAI's chunk format, with
stream_options.include_usage), `ignore_eos`, and `model`: an adapter's name, or the base model's.

One worker thread owns the model. It takes every waiting request, then, by --policy:
  grouped      groups them by adapter and runs one batched `generate` per group, group after group
               (PEFT applies one active adapter to a whole batch);
  one-adapter  runs one group only (the oldest request's adapter), then looks at the queue again;
  mixed        runs them together in one `generate`, PEFT's mixed-adapter batches
               (`adapter_names`, one adapter per row).
Batches are static: requests that arrive during a `generate` wait for the next one. Prompts are left
padded; decoding is greedy. Tokens are streamed one by one: plain `generate` streams only batch 1
(TextStreamer refuses more), so RowStreamer splits each step's new tokens of the batch by row and hands
each to its request's handler thread, which decodes and writes them as they come.
"""
import argparse
import json
import os
import queue
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.generation.streamers import BaseStreamer  # noqa: E402

POLICIES = ("grouped", "one-adapter", "mixed")


def log(*a):
    print("serve_peft:", *a, file=sys.stderr, flush=True)


class BadRequest(Exception):
    def __init__(self, status, message, code="invalid_request"):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class Request:
    def __init__(self, adapter, prompt_ids, max_tokens, ignore_eos):
        self.adapter = adapter  # None: the base model
        self.prompt_ids = prompt_ids
        self.max_tokens = max_tokens
        self.ignore_eos = ignore_eos
        self.out = queue.Queue()  # token ids, then ("end", finish_reason) or ("error", message)
        self.count = 0
        self.done = False

    def finish(self, reason):
        if not self.done:
            self.done = True
            self.out.put(("end", reason))


class RowStreamer(BaseStreamer):
    """generate's streamer for a batch: each row's new token goes to that row's request."""

    def __init__(self, reqs, eos_ids):
        self.reqs = reqs
        self.eos_ids = eos_ids
        self.prompt_seen = False

    def put(self, value):
        if not self.prompt_seen:  # generate first hands over the prompt ids
            self.prompt_seen = True
            return
        ids = value.reshape(len(self.reqs), -1)[:, -1].tolist()
        for r, t in zip(self.reqs, ids):
            if r.done:
                continue
            if not r.ignore_eos and t in self.eos_ids:
                r.finish("stop")
                continue
            r.count += 1
            r.out.put(t)
            if r.count >= r.max_tokens:
                r.finish("length")

    def end(self):
        for r in self.reqs:
            r.finish("length" if r.count >= r.max_tokens else "stop")


class Engine:
    def __init__(self, model, tokenizer, adapters, policy, max_batch, gather_ms):
        self.model = model
        self.tok = tokenizer
        self.adapters = adapters
        self.policy = policy
        self.max_batch = max_batch
        self.gather_s = gather_ms / 1000
        self.inbox = queue.Queue()
        self.device = next(model.parameters()).device
        eos = model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
            (tokenizer.eos_token_id or 0)
        self.stats = {"generates": 0, "rows": 0}
        threading.Thread(target=self.loop, daemon=True).start()

    def submit(self, req):
        self.inbox.put(req)

    def loop(self):
        pending = []
        while True:
            if not pending:
                pending.append(self.inbox.get())
                # Requests sent together arrive a little apart: gather while they keep coming (each
                # within --gather-ms of the last), so one batch does not leave the rest to wait a
                # whole generate.
                while len(pending) < self.max_batch:
                    try:
                        pending.append(self.inbox.get(timeout=self.gather_s))
                    except queue.Empty:
                        break
            while True:
                try:
                    pending.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            if self.policy == "mixed":
                batch, pending = pending[: self.max_batch], pending[self.max_batch:]
                self.run(batch, mixed=True)
                continue
            groups = {}
            for r in pending:
                groups.setdefault(r.adapter, []).append(r)
            if self.policy == "one-adapter":
                first = next(iter(groups))
                batch = groups[first][: self.max_batch]
                taken = set(map(id, batch))
                pending = [r for r in pending if id(r) not in taken]
                self.run(batch)
                continue
            pending = []
            for group in groups.values():
                for i in range(0, len(group), self.max_batch):
                    self.run(group[i:i + self.max_batch])

    def run(self, batch, mixed=False):
        try:
            self.generate(batch, mixed)
        except Exception as e:  # noqa: BLE001  (the request gets the error, the worker goes on)
            log(f"generate failed: {type(e).__name__}: {e}")
            for r in batch:
                if not r.done:
                    r.done = True
                    r.out.put(("error", f"{type(e).__name__}: {e}"))

    @torch.inference_mode()
    def generate(self, batch, mixed):
        width = max(len(r.prompt_ids) for r in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, r in enumerate(batch):  # left padding: every row's last prompt token in the last column
            ids[i, width - len(r.prompt_ids):] = torch.tensor(r.prompt_ids)
            mask[i, width - len(r.prompt_ids):] = 1
        kw = dict(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
            max_new_tokens=max(r.max_tokens for r in batch), do_sample=False,
            pad_token_id=self.pad_id, streamer=RowStreamer(batch, self.eos_ids))
        if all(r.ignore_eos for r in batch):
            kw["eos_token_id"] = None  # no stopping at EOS; rows that want it stop in RowStreamer
        self.stats["generates"] += 1
        self.stats["rows"] += len(batch)
        if mixed:
            self.model.generate(**kw, adapter_names=[r.adapter or "__base__" for r in batch])
        elif batch[0].adapter is None:
            if isinstance(self.model, PeftModel):
                with self.model.disable_adapter():
                    self.model.generate(**kw)
            else:
                self.model.generate(**kw)
        else:
            self.model.set_adapter(batch[0].adapter)
            self.model.generate(**kw)


def make_handler(engine, model_name, started):
    tok = engine.tok

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # one line per request is noise under load
            pass

        def send_json(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def chunk(self, data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def do_GET(self):
            if self.path == "/health":
                return self.send_json(200, {"status": "ok", "model": model_name, "policy": engine.policy,
                                            "stats": engine.stats})
            if self.path == "/v1/models":
                ids = [model_name] + list(engine.adapters)
                return self.send_json(200, {"object": "list", "data": [
                    {"id": i, "object": "model", "created": started, "owned_by": "peft"} for i in ids]})
            self.send_json(404, {"error": {"message": f"unknown URL {self.path}", "type": "invalid_request_error"}})

        def do_POST(self):
            try:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                if self.path == "/admin/policy":  # lets one loaded server be measured under each policy
                    if body.get("policy") not in POLICIES:
                        raise BadRequest(400, f"policy must be one of {', '.join(POLICIES)}")
                    engine.policy = body["policy"]
                    return self.send_json(200, {"policy": engine.policy})
                if self.path != "/v1/completions":
                    raise BadRequest(404, f"unknown URL {self.path}", "unknown_url")
                self.completions(body)
            except BadRequest as e:
                self.send_json(e.status, {"error": {"message": e.message, "type": "invalid_request_error",
                                                    "code": e.code}})
            except (BrokenPipeError, ConnectionResetError):
                pass

        def completions(self, body):
            name = body.get("model")
            if name == model_name:
                adapter = None
            elif name in engine.adapters:
                adapter = name
            else:
                raise BadRequest(404, f"The model '{name}' does not exist.", "model_not_found")
            p = body.get("prompt")
            if isinstance(p, str):
                prompt_ids = tok(p).input_ids
            elif isinstance(p, list) and p and all(isinstance(x, int) for x in p):
                prompt_ids = p
            else:
                raise BadRequest(400, "'prompt' must be a string or a list of token ids")
            if (body.get("temperature") or 0) != 0:
                raise BadRequest(400, "only temperature 0 (greedy) is served")
            max_tokens = int(body.get("max_tokens") or 16)
            req = Request(adapter, prompt_ids, max_tokens, bool(body.get("ignore_eos")))
            cid = f"cmpl-{uuid.uuid4().hex[:24]}"
            created = int(time.time())
            engine.submit(req)
            stream = bool(body.get("stream"))
            usage_too = bool((body.get("stream_options") or {}).get("include_usage"))

            def payload(text, finish):
                return {"id": cid, "object": "text_completion", "created": created, "model": name,
                        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}

            ids, shown = [], ""
            if stream:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
            while True:
                item = req.out.get()
                if isinstance(item, tuple):
                    break
                ids.append(item)
                if stream:
                    # Text of all ids so far, less what was sent: a token that ends inside a UTF-8
                    # character waits for the rest.
                    text = tok.decode(ids, skip_special_tokens=True)
                    if len(text) > len(shown) and not text.endswith("\ufffd"):
                        self.chunk(b"data: " + json.dumps(payload(text[len(shown):], None)).encode() + b"\n\n")
                        shown = text
            kind, info = item
            usage = {"prompt_tokens": len(prompt_ids), "completion_tokens": len(ids),
                     "total_tokens": len(prompt_ids) + len(ids)}
            if kind == "error":
                if stream:
                    self.chunk(b"data: " + json.dumps({"error": {"message": info}}).encode() + b"\n\n")
                    self.chunk(b"")
                else:
                    self.send_json(500, {"error": {"message": info, "type": "server_error"}})
                return
            text = tok.decode(ids, skip_special_tokens=True)
            if not stream:
                obj = payload(text, info)
                obj["usage"] = usage
                return self.send_json(200, obj)
            self.chunk(b"data: " + json.dumps(payload(text[len(shown):], info)).encode() + b"\n\n")
            if usage_too:
                obj = payload("", None)
                obj["choices"] = []
                obj["usage"] = usage
                self.chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")
            self.chunk(b"data: [DONE]\n\n")
            self.chunk(b"")

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--adapter", action="append", default=[], help="NAME=DIR; repeatable")
    p.add_argument("--name", default=None, help="the base model's name in requests (its folder name)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--policy", choices=POLICIES, default="grouped")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--gather-ms", type=float, default=10.0)
    p.add_argument("--device", default=None, help="cuda when available, else cpu")
    a = p.parse_args()

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.time()
    tokenizer = AutoTokenizer.from_pretrained(a.model)
    base = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16).to(device)
    names = []
    model = base
    for spec in a.adapter:
        name, _, path = spec.partition("=")
        # bf16 LoRA factors, as the base weights (PEFT would otherwise upcast them to fp32).
        if not names:
            model = PeftModel.from_pretrained(base, path, adapter_name=name, autocast_adapter_dtype=False)
        else:
            model.load_adapter(path, adapter_name=name, autocast_adapter_dtype=False)
        names.append(name)
    model.eval()
    log(f"loaded {a.model} and {len(names)} adapters on {device} in {time.time() - t0:.1f}s")
    import peft
    import transformers
    gpu = f", {torch.cuda.get_device_name()}" if device.startswith("cuda") else ""
    log(f"versions: torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}{gpu}")
    if not names and a.policy != "grouped":
        sys.exit("serve_peft: --policy one-adapter and mixed need adapters")
    engine = Engine(model, tokenizer, names, a.policy, a.max_batch, a.gather_ms)
    model_name = a.name or os.path.basename(os.path.abspath(a.model))
    server = ThreadingHTTPServer((a.host, a.port), make_handler(engine, model_name, int(time.time())))
    server.daemon_threads = True
    print(f"serve_peft: listening on http://{a.host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
