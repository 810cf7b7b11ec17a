"""A real vision-language model behind vLLM's OpenAI-compatible chat API, on 127.0.0.1.

`VLMServer(folder)` serves a transformers image-text-to-text folder (`AutoProcessor` +
`AutoModelForImageTextToText`, float32 on the CPU) with the subset of vLLM's
`/v1/chat/completions` that `--model openai` uses, implemented with transformers alone (never
with CheXbench's engine, so that comparing the two means something):

- messages whose content is a string or a list of `text` and `image_url` parts (base64 data
  URLs); as in vLLM, image parts become `{"type": "image"}` for the chat template and the
  decoded images go to the processor in order;
- `add_generation_prompt` (default true) and `continue_final_message` (vLLM's prefill: the
  template's rendering is cut after the last message's text), rendered by the processor's
  own `apply_chat_template`, the function vLLM calls;
- `prompt_logprobs=k`: vLLM's top-level list, None for the first token, then per prompt token
  a dict {token id: {logprob, rank, decoded_token}} with the prompt token (its true rank) and
  the top-k tokens, from one full forward of processor(text=rendered, images=...);
- greedy generation (`temperature` 0) of up to `max_tokens` (or `max_completion_tokens`), cut
  at the first `stop` string, and `usage` with the real token counts.

Scripted behaviour for the tests: `hosted=True` answers the vLLM extensions with OpenAI's
400 ("Unrecognized request argument"); `fail_first=k` answers the first k requests with 429 and
a Retry-After; `hold_from=n` holds the n-th and later requests until `release()` (then drops
them unanswered, so a client killed meanwhile paid for nothing it did not receive);
`gate_clients=n` holds every answer until requests with n distinct API keys have arrived (n
client processes provably in flight together); `latency_s` adds a fixed delay to every answer. It logs every request by the SHA-256 of its
canonical JSON and counts the answers it sent (`paid`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch
from PIL import Image

SERVED_NAME = "tiny-llava"

# A LLaVA-style template whose assistant turn is "ASSISTANT:" followed by the text verbatim,
# so a prefilled reply renders as the generation prompt plus the option, and which writes BOS
# itself: vLLM adds no special tokens to a rendered chat, transformers adds BOS only when the
# template lacks it, so both then see one (docs/serving.md).
VERBATIM_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role']=='user' %}USER: {% else %}ASSISTANT:{% endif %}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type']=='image' %}<image>\n{% elif c['type']=='text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{% if m['role']=='user' %} {% else %}{{ eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def write_tiny_llava(root: Path, template: str = VERBATIM_TEMPLATE) -> Path:
    """A tiny random LLaVA (CLIP vision tower, LLaMA decoder) with its processor and chat
    template, saved as a hub folder that `--model hf` and the server both load."""
    import transformers as T

    from chexagent.tokenizer import build_tokenizer

    torch.manual_seed(0)
    tok = build_tokenizer()
    tok.image_token = "<image>"
    image_proc = T.CLIPImageProcessor(
        size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}
    )
    processor = T.LlavaProcessor(
        image_processor=image_proc,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        chat_template=template,
        num_additional_image_tokens=1,
    )
    config = T.LlavaConfig(
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 28,
            "patch_size": 14,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "pad_token_id": tok.pad_token_id,
            "max_position_embeddings": 4096,
        },
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    root.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(root)
    T.LlavaForConditionalGeneration(config).save_pretrained(root)
    cfg = root / "tokenizer_config.json"  # a LLaMA tokenizer returns no token_type_ids
    cfg.write_text(
        json.dumps(
            {**json.loads(cfg.read_text()), "model_input_names": ["input_ids", "attention_mask"]}
        )
    )
    return root


def body_sha(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class _Http(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class VLMServer:
    def __init__(
        self,
        folder: Path,
        name: str = SERVED_NAME,
        expected_key: str | None = None,
        hosted: bool = False,
        fail_first: int = 0,
        retry_after: str = "0.3",
        hold_from: int | None = None,
        gate_clients: int = 0,
        gate_timeout_s: float = 120.0,
        latency_s: float = 0.0,
        port: int = 0,
    ):
        import transformers as T

        self.name = name
        self.processor = T.AutoProcessor.from_pretrained(folder, use_fast=False)
        self.model = T.AutoModelForImageTextToText.from_pretrained(
            folder, dtype=torch.float32
        ).eval()
        self.tokenizer = self.processor.tokenizer
        self.expected_key = expected_key
        self.hosted = hosted
        self.fail_first = fail_first
        self.retry_after = retry_after
        self.hold_from = hold_from
        self.gate_clients = gate_clients
        self.gate_timeout_s = gate_timeout_s
        self.latency_s = latency_s
        self.port = port  # 0: any free port; a rerun gives the first run's (the URL keys the cache)
        self.lock = threading.Lock()
        self.model_lock = threading.Lock()
        self.released = threading.Event()
        self.gate = threading.Event()
        self.log: list[tuple[str, int]] = []  # (body sha, status), arrival order
        self.received = 0
        self.held = 0
        self.paid: Counter[str] = Counter()  # body sha -> answers sent (200 with usage)
        self.paid_by_client: Counter[str] = Counter()  # sha of the presented key -> answers
        self.clients: set[str] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.usage = Counter()
        self._httpd: ThreadingHTTPServer | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                server._handle(self)

            def do_GET(self):
                server._send(self, 200, {"object": "list", "data": [{"id": server.name}]})

        self._httpd = _Http(("127.0.0.1", self.port), Handler)
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.release()
        self.gate.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> VLMServer:
        self.base_url = self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def release(self) -> None:
        """Let held requests go: they are dropped unanswered."""
        self.released.set()

    @property
    def total_paid(self) -> int:
        with self.lock:
            return sum(self.paid.values())

    # -- requests ----------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length", 0)))
        if h.path.rstrip("/") != "/v1/chat/completions":
            return self._send(h, 404, {"error": {"message": f"no route {h.path}"}})
        body = json.loads(raw)
        sha = body_sha(body)
        key = h.headers.get("Authorization", "").removeprefix("Bearer ")
        with self.lock:
            self.received += 1
            n = self.received
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.clients.add(key)
            if self.gate_clients and len(self.clients) >= self.gate_clients:
                self.gate.set()
        status = 0
        try:
            if self.expected_key is not None and key != self.expected_key:
                status = 401
                return self._send(h, 401, {"error": {"message": "Incorrect API key provided"}})
            if n <= self.fail_first:
                status = 429
                return self._send(
                    h,
                    429,
                    {"error": {"message": "rate limited", "type": "rate_limit"}},
                    {"Retry-After": self.retry_after},
                )
            if self.hold_from is not None and n >= self.hold_from:
                with self.lock:
                    self.held += 1
                self.released.wait(600)
                status = -1  # dropped unanswered
                h.close_connection = True
                return None
            if self.gate_clients:
                self.gate.wait(self.gate_timeout_s)
            if self.latency_s:
                time.sleep(self.latency_s)
            try:
                answer = self._complete(body)
            except BadRequest as exc:
                status = exc.status
                return self._send(h, exc.status, {"error": {"message": str(exc)}})
            status = 200
            self._send(h, 200, answer)
            with self.lock:
                self.paid[sha] += 1
                self.paid_by_client[hashlib.sha256(key.encode()).hexdigest()[:12]] += 1
                self.usage["prompt"] += answer["usage"]["prompt_tokens"]
                self.usage["completion"] += answer["usage"]["completion_tokens"]
        except (BrokenPipeError, ConnectionResetError):
            status = -2
        finally:
            with self.lock:
                self.in_flight -= 1
                self.log.append((sha, status))

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        extensions = [
            k
            for k in ("prompt_logprobs", "continue_final_message", "add_generation_prompt")
            if k in body
        ]
        if self.hosted and extensions:
            raise BadRequest(400, f"Unrecognized request argument supplied: {extensions[0]}")
        if body.get("model") != self.name:
            raise BadRequest(404, f"The model `{body.get('model')}` does not exist.")
        if body.get("temperature", 1) != 0:
            raise BadRequest(400, "this test server decodes greedily only (temperature 0)")
        add_gen = bool(body.get("add_generation_prompt", True))
        cont = bool(body.get("continue_final_message", False))
        if add_gen and cont:
            raise BadRequest(
                400, "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
            )
        conversation, images = [], []
        for message in body["messages"]:
            content = message["content"]
            if isinstance(content, str):
                content = [{"type": "text", "text": content}]
            parts = []
            for part in content:
                if part["type"] == "text":
                    parts.append({"type": "text", "text": part["text"]})
                elif part["type"] == "image_url":
                    header, _, data = part["image_url"]["url"].partition(",")
                    if not header.startswith("data:image/") or not header.endswith(";base64"):
                        raise BadRequest(400, "only base64 data URLs are served here")
                    images.append(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
                    parts.append({"type": "image"})
                else:
                    raise BadRequest(400, f"unsupported content part {part['type']!r}")
            conversation.append({"role": message["role"], "content": parts})
        rendered = self.processor.apply_chat_template(
            conversation,
            add_generation_prompt=add_gen,
            continue_final_message=cont,
            tokenize=False,
        )
        inputs = self.processor(
            text=[rendered], images=images or None, return_tensors="pt", add_special_tokens=False
        )
        ids = inputs["input_ids"][0]
        max_new = int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        with self.model_lock, torch.inference_mode():
            prompt_lp = None
            if body.get("prompt_logprobs") is not None:
                logits = self.model(**inputs).logits[0].float()
                prompt_lp = self._prompt_logprobs(ids, logits, int(body["prompt_logprobs"]))
            out = self.model.generate(
                **inputs,
                max_new_tokens=max_new,
                do_sample=False,
                num_beams=1,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[0, len(ids) :].tolist()
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        finish = "length" if len(new) >= max_new else "stop"
        for stop in stops:
            if stop and stop in text:
                text, finish = text[: text.index(stop)], "stop"
        answer: dict[str, Any] = {
            "id": f"chatcmpl-{time.time_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": len(ids),
                "completion_tokens": len(new),
                "total_tokens": len(ids) + len(new),
            },
        }
        if prompt_lp is not None:
            answer["prompt_logprobs"] = prompt_lp
        return answer

    def _prompt_logprobs(self, ids: torch.Tensor, logits: torch.Tensor, k: int) -> list:
        logp = torch.log_softmax(logits, dim=-1)
        out: list[Any] = [None]
        for t in range(1, len(ids)):
            row, token = logp[t - 1], int(ids[t])
            value = float(row[token])
            entry = {
                str(token): {
                    "logprob": value,
                    "rank": int((row > row[token]).sum()) + 1,
                    "decoded_token": self.tokenizer.decode([token]),
                }
            }
            if k:
                top = torch.topk(row, k)
                for r, (v, i) in enumerate(
                    zip(top.values.tolist(), top.indices.tolist(), strict=True), start=1
                ):
                    entry.setdefault(
                        str(i),
                        {"logprob": v, "rank": r, "decoded_token": self.tokenizer.decode([i])},
                    )
            out.append(entry)
        return out

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()
