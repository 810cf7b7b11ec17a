"""`--model openai`: a model behind any OpenAI-compatible server, scored over HTTP.

Hosted multimodal APIs (GPT-4o-class models, Gemini and others behind OpenAI-compatible
endpoints) and open models served by vLLM, SGLang, TGI or Ollama become models under test;
a model too big for one machine is served by an engine built for that (vLLM's tensor and
pipeline parallelism, multi-node) with CheXbench as the client. docs/serving.md says how.

Every request is one chat completion whose user message holds the item's films (PNG data URLs
of the film as `harness.radiograph` decodes it, 8-bit RGB, at its own size unless
`max_image_side` is given) and then the text, greedy (`temperature: 0`, `seed`). Requests go
through `harness.openai_compat` (the judge's pieces): one retry policy honouring Retry-After,
a deadline per attempt and optionally per request, bounded concurrency, and the shared request
cache that is also the paid-call ledger, with claims so that runs sharing it never pay twice.

Multiple choice, two modes that are never mixed (the run card's `mc_mode`):

- `generate` (any chat server): the official CheXagent-2 lettered prompt
  (`model_adapters.engine.mc_prompt`), up to 512 new tokens, the first "(X)" in the answer;
  an answer naming no option is counted wrong and reported (`unparseable`).
- `loglikelihood` (servers returning prompt log-probs: vLLM): per item, one request with the
  generation prompt (the item's prompt tokens), and per option one request with the option
  prefilled as the assistant's reply (`continue_final_message: true, add_generation_prompt:
  false`), both with `prompt_logprobs: 1` and `max_tokens: 1`. The option's tokens are those
  of the prefilled prompt past its longest common prefix with the item's prompt, exactly the
  rule of the in-process engine (`model_adapters.native.split_options`); its score is the sum
  of their log-probs, is-greedy is every token at rank 1, and the token count gives
  `acc_chexbench` its meaning (mean log-prob per option token). This equals `--model hf` on
  the same weights when the server's chat template writes a prefilled reply as its generation
  prompt followed by the text (ChatML, LLaVA-style "ASSISTANT:" templates); see the docs for
  templates that trim the reply.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
import math
import os
import threading
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lm_eval.api.model import LM
from PIL import Image
from tqdm import tqdm

from harness.errors import UnknownArgument, UserError
from harness.images import ImageRef
from harness.openai_compat.batch import BatchOutcome, PlannedRequest, fetch_all
from harness.openai_compat.cache import CachedResponse, PaidCall, RequestCache, now_iso
from harness.openai_compat.cache import request_key as cache_key
from harness.openai_compat.client import (
    FatalAPIError,
    OpenAICompatClient,
    RetryPolicy,
    chat_text,
)
from harness.openai_compat.cost import Prices, ledger_totals, resolve_prices, token_counter
from harness.openai_compat.endpoint import endpoint_host, resolve_base_url
from harness.openai_compat.secrets import read_api_key
from harness.scoring import OptionScore
from model_adapters.base import GenerationSettings
from model_adapters.engine import (
    MC_MAX_NEW_TOKENS,
    ResumeStore,
    image_fingerprint,
    journal_key,
    load_rgb,
    mc_choice,
    mc_prompt,
    unpack_request,
)

log = logging.getLogger("chexbench.openai_model")

CACHE_ENV = "CHEXBENCH_OPENAI_CACHE"
CACHE_FILE = "model_requests.sqlite"
IMAGE_REF = "chexbench-image:"  # planned bodies name films by digest; inlined when sent
PROMPT_LOGPROBS = 1  # the top-1 token beside each prompt token: its rank says is-greedy
COMPACT_KEY = "chexbench_prompt_tokens"  # prompt_logprobs as kept in the cache
DEFAULT_CONCURRENCY = 8
# Dry-run guesses of answer lengths (the caps are the upper bound printed beside them).
EST_MC_ANSWER_TOKENS = 20
EST_REPORT_TOKENS = 200
_ARGS = (
    "model",
    "base_url",
    "api_key_env",
    "concurrency",
    "max_image_side",
    "max_images",
    "timeout",
    "deadline",
    "max_attempts",
    "backoff_base",
    "backoff_max",
    "cache",
    "api_seed",
    "price_in",
    "price_out",
    "est_image_tokens",
    "option_prefill",
)
# How an option is written as the prefilled reply: lm-eval's continuation as given (" AP",
# matching `--model hf` for templates that write a reply right after the generation prompt), or
# without its leading whitespace (for templates whose assistant header ends with a space, such
# as LLaVA-1.5's "ASSISTANT: ", where the verbatim option would be scored after two spaces).
OPTION_PREFILL = ("verbatim", "lstrip")
_ENGINE_KWARGS = (
    "batch_size",
    "mc_mode",
    "max_gen_toks",
    "resume_path",
    "fingerprint",
    "show_progress",
    "rank",
    "world_size",
)


class ServerAnswerError(UserError):
    """A server answer that cannot be scored (no prompt log-probs, a template that renders
    a prefilled reply differently, an invalid log-prob); the message names task and item."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chexbench" / "openai"


# ---------------------------------------------------------------------------------------------
class FilmCodec:
    """The films as sent: 8-bit RGB as `harness.radiograph` decodes them (what an in-process
    adapter's preprocessing starts from), optionally downscaled to `max_side` (Lanczos), as
    lossless PNG data URLs.

    Planned bodies name a film by the SHA-256 of its source (the file's bytes, or a PIL
    image's pixels); with `describe()` (the pipeline, its settings and the code that decodes)
    in the cache key that stands for the PNG sent, so a rerun finds its answers without
    decoding and re-encoding every film."""

    def __init__(self, max_side: int | None):
        self.max_side = max_side
        self._digests: dict[str, str] = {}
        self._sources: dict[str, Any] = {}
        self._urls: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._described: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        """The pipeline from file to PNG, with the code that decodes: part of every key."""
        if self._described is None:
            import harness.radiograph as radiograph

            code = hashlib.sha256(Path(radiograph.__file__).read_bytes()).hexdigest()[:16]
            self._described = {
                "format": "png",
                "pixels": "8-bit RGB (harness.radiograph)",
                "max_side": self.max_side,
                "resample": "lanczos" if self.max_side else None,
                "decoder_sha256": code,
                "pillow": Image.__version__,
            }
        return dict(self._described)

    def ref(self, image: Any) -> str:
        """`chexbench-image:<sha256>` for a film, remembering where its pixels come from."""
        fp = image_fingerprint(image)
        digest = self._digests.get(fp)
        if digest is None:
            if isinstance(image, ImageRef | str | Path):
                path = Path(image.path if isinstance(image, ImageRef) else image)
                digest = "file-sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                h = hashlib.sha256(image.tobytes())
                h.update(f"{image.mode}{image.size}".encode())
                digest = "pixels-sha256:" + h.hexdigest()
            self._digests[fp] = digest
        self._sources.setdefault(digest, image)
        return IMAGE_REF + digest

    def pixels(self, image: Any) -> Image.Image:
        rgb = load_rgb(image)
        if self.max_side and max(rgb.size) > self.max_side:
            scale = self.max_side / max(rgb.size)
            size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
            rgb = rgb.resize(size, Image.Resampling.LANCZOS)
        return rgb

    def sent_size(self, ref: str) -> tuple[int, int]:
        """(width, height) of a film as sent, from its header (no decoding)."""
        image = self._sources[ref.removeprefix(IMAGE_REF)]
        if isinstance(image, Image.Image):
            w, h = image.size
        else:
            with Image.open(image.path if isinstance(image, ImageRef) else image) as im:
                w, h = im.size
        if self.max_side and max(w, h) > self.max_side:
            scale = self.max_side / max(w, h)
            w, h = max(1, round(w * scale)), max(1, round(h * scale))
        return w, h

    def data_url(self, ref: str) -> str:
        digest = ref.removeprefix(IMAGE_REF)
        with self._lock:
            if digest in self._urls:
                self._urls.move_to_end(digest)
                return self._urls[digest]
        buf = io.BytesIO()
        self.pixels(self._sources[digest]).save(buf, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        with self._lock:
            self._urls[digest] = url
            while len(self._urls) > 32:  # an item's options share films; keep a few
                self._urls.popitem(last=False)
        return url

    def inline(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body as sent: every film reference replaced by its PNG data URL."""
        messages = []
        for message in body["messages"]:
            content = message.get("content")
            if isinstance(content, list):
                parts = []
                for part in content:
                    url = (part.get("image_url") or {}).get("url", "")
                    if part.get("type") == "image_url" and url.startswith(IMAGE_REF):
                        part = {
                            **part,
                            "image_url": {**part["image_url"], "url": self.data_url(url)},
                        }
                    parts.append(part)
                message = {**message, "content": parts}
            messages.append(message)
        return {**body, "messages": messages}


def openai_image_tokens(width: int, height: int) -> int:
    """OpenAI's documented count for one image at high detail: fit in 2048x2048, shortest
    side to 768, 170 tokens per 512-px tile plus 85. A dry-run estimate only: other servers
    count differently (`est_image_tokens=N` overrides)."""
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptTokens:
    """A prompt as the server tokenised it: ids, and each token's log-prob and rank given
    the tokens before it (None at position 0, which nothing precedes)."""

    ids: tuple[int | None, ...]
    logprobs: tuple[float | None, ...]
    ranks: tuple[int | None, ...]


def prompt_tokens(body: Mapping[str, Any], where: str) -> PromptTokens:
    """vLLM's `prompt_logprobs` of a chat completion: [None, {token id: {logprob, rank,
    decoded_token}}, ...], each dict holding the prompt's token and the top-1 token; or the
    compact form the cache keeps (`compact_answer`)."""
    compact = body.get(COMPACT_KEY)
    if isinstance(compact, Mapping):
        return PromptTokens(
            tuple(compact["ids"]), tuple(compact["logprobs"]), tuple(compact["ranks"])
        )
    entries = body.get("prompt_logprobs")
    if not isinstance(entries, list) or len(entries) < 2:
        raise ServerAnswerError(
            f"{where}: the server returned no prompt_logprobs (a vLLM extension of the chat "
            "API): it cannot score options by log-likelihood; rerun with --mc-mode generate"
        )
    ids: list[int | None] = [None]
    lps: list[float | None] = [None]
    ranks: list[int | None] = [None]
    for pos, entry in enumerate(entries[1:], start=1):
        if not isinstance(entry, Mapping) or not entry:
            raise ServerAnswerError(f"{where}: prompt_logprobs[{pos}] is {entry!r}, not a dict")
        if len(entry) == 1:
            ((tid, info),) = entry.items()
        else:  # the prompt token is the one not ranked first (the top-1 token is)
            others = [(t, i) for t, i in entry.items() if _rank(i) != 1]
            if len(others) != 1:
                raise ServerAnswerError(
                    f"{where}: cannot tell the prompt token among prompt_logprobs[{pos}] "
                    f"({len(entry)} entries; expected prompt_logprobs={PROMPT_LOGPROBS})"
                )
            ((tid, info),) = others
        lp = info.get("logprob") if isinstance(info, Mapping) else None
        if (
            not isinstance(lp, int | float)
            or isinstance(lp, bool)
            or not -math.inf < lp <= 1e-6
            or not str(tid).lstrip("-").isdigit()
        ):
            raise ServerAnswerError(
                f"{where}: prompt_logprobs[{pos}] = {{{tid!r}: {info!r}}} is not a token id "
                "with a finite log-prob <= 0"
            )
        ids.append(int(tid))
        lps.append(float(lp))
        ranks.append(_rank(info))
    return PromptTokens(tuple(ids), tuple(lps), tuple(ranks))


def compact_answer(body: dict[str, Any]) -> dict[str, Any]:
    """What the request cache keeps of an answer: vLLM's prompt_logprobs (about 110 bytes per
    prompt token, hundreds of image tokens per film) as three arrays (about 20 bytes per token),
    read back by `prompt_tokens`. An answer that does not parse is kept as received (the error
    is reported when it is scored): the call is paid for either way."""
    if "prompt_logprobs" not in body:
        return body
    try:
        tokens = prompt_tokens(body, "")
    except ServerAnswerError:
        return body
    kept = {k: v for k, v in body.items() if k != "prompt_logprobs"}
    kept[COMPACT_KEY] = {
        "ids": list(tokens.ids),
        "logprobs": list(tokens.logprobs),
        "ranks": list(tokens.ranks),
    }
    return kept


def _rank(info: Any) -> int | None:
    rank = info.get("rank") if isinstance(info, Mapping) else None
    return rank if isinstance(rank, int) and not isinstance(rank, bool) else None


def option_score(context: PromptTokens, prefilled: PromptTokens, where: str) -> OptionScore:
    """The option's summed log-prob, is-greedy and token count: its tokens are those of the
    prefilled prompt past the longest common prefix with the item's prompt (the in-process
    engine's rule, `model_adapters.native.split_options`). Position 0 is the same first
    token in both (the template's start; the server gives it no log-prob)."""
    c, f = context.ids, prefilled.ids
    keep = 1
    while keep < min(len(c), len(f)) and c[keep] == f[keep]:
        keep += 1
    if keep < len(c) - 1:
        raise ServerAnswerError(
            f"{where}: the server's chat template writes the prefilled answer differently from "
            f"its generation prompt (they part {len(c) - keep} tokens before the prompt ends), "
            "so the option's tokens cannot be told apart: score this server with --mc-mode "
            "generate"
        )
    if keep >= len(f):
        raise ServerAnswerError(f"{where}: the option adds no token to the prompt")
    lps = prefilled.logprobs[keep:]
    ranks = prefilled.ranks[keep:]
    return OptionScore(
        math.fsum(lp for lp in lps if lp is not None), all(r == 1 for r in ranks), len(f) - keep
    )


# ---------------------------------------------------------------------------------------------
class RemoteModel:
    """What the runner reads as `lm.adapter` for a served model: names, settings, provenance."""

    name = "openai"
    dtype = None
    image_text_reads_option = False
    # No official CheXbench protocol exists for these models: the CheXagent-2 wrapper's limit,
    # as for `--model hf`, recorded in the run card.
    generation = GenerationSettings(
        max_new_tokens=512,
        source="CheXbench convention for models without an official CheXbench wrapper (the "
        "CheXagent-2 wrapper's limit)",
    )

    def __init__(self, served_model: str, base_url: str, max_images: int | None):
        self.served_model = served_model
        self.base_url = base_url
        self.display_name = served_model
        self.max_images = max_images
        self.device = f"remote ({endpoint_host(base_url)})"

    def model_info(self) -> dict[str, Any]:
        return {"model_id": self.served_model, "smoke": False}

    @staticmethod
    def postprocess_generation(text: str) -> str:
        return text


@dataclass
class RemoteStats:
    """Counters the run card records (`engine`)."""

    items: int = 0
    requests_scored: int = 0  # lm-eval requests answered in this run
    requests_resumed: int = 0  # from the run's journal
    calls_paid: int = 0  # server calls this process paid for
    answers_cached: int = 0  # answered by the request cache (earlier runs, other processes)
    unparseable: int = 0  # generation-mode answers naming no option
    generated: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Item:
    """The option requests of one question (same text, same films)."""

    context: str
    images: list[Any]
    where: str
    request_idx: list[int] = field(default_factory=list)
    continuations: list[str] = field(default_factory=list)
    journal_keys: list[str] = field(default_factory=list)


class OpenAIServerLM(LM):
    """lm-eval's `LM` for a model served behind an OpenAI-compatible endpoint."""

    MULTIMODAL = True

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = DEFAULT_CONCURRENCY,
        max_image_side: int | None = None,
        max_images: int | None = None,
        timeout: float = 120.0,
        deadline: float | None = None,
        max_attempts: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        cache: str | None = None,
        api_seed: int | None = 0,
        price_in: float | None = None,
        price_out: float | None = None,
        est_image_tokens: int | None = None,
        option_prefill: str = "verbatim",
        *,
        batch_size: int = 1,
        mc_mode: str = "loglikelihood",
        max_gen_toks: int | None = None,
        resume_path: str | Path | None = None,
        fingerprint: str = "",
        show_progress: bool = True,
        rank: int = 0,
        world_size: int = 1,
        **unused: Any,
    ):
        super().__init__()
        if unused:
            raise UnknownArgument(
                f"openai: unknown model args {sorted(unused)}; known: {', '.join(_ARGS)}"
            )
        if not model:
            raise UserError(
                "openai: model=NAME is required in --model-args (the name the server serves, "
                "e.g. model=gpt-4o or the --served-model-name of a vLLM deployment)"
            )
        if option_prefill not in OPTION_PREFILL:
            raise UserError(
                f"openai: option_prefill={option_prefill!r} in --model-args: expected one of "
                f"{', '.join(OPTION_PREFILL)}"
            )
        if mc_mode not in ("loglikelihood", "generate"):
            raise UserError(f"mc_mode must be 'loglikelihood' or 'generate', got {mc_mode!r}")
        if int(world_size) > 1:
            raise UserError(
                "--model openai sends requests concurrently (concurrency=N in --model-args); "
                "--num-processes is for models loaded in this machine's processes"
            )
        _check_number("concurrency", concurrency, integer=True, minimum=1)
        _check_number("max_attempts", max_attempts, integer=True, minimum=1)
        for name, value in (
            ("max_image_side", max_image_side),
            ("max_images", max_images),
            ("est_image_tokens", est_image_tokens),
        ):
            if value is not None:
                _check_number(name, value, integer=True, minimum=1)
        for name, value in (("timeout", timeout), ("deadline", deadline)):
            if value is not None:
                _check_number(name, value, minimum=0, strict=True)
        for name, value in (("backoff_base", backoff_base), ("backoff_max", backoff_max)):
            _check_number(name, value, minimum=0)
        if api_seed is not None:
            _check_number("api_seed", api_seed, integer=True, minimum=0)
        self.served_model = str(model)
        self.base_url = resolve_base_url(base_url, flag="base_url in --model-args")
        self.api_key_env = str(api_key_env)
        self.concurrency = int(concurrency)
        self.policy = RetryPolicy(
            max_attempts=int(max_attempts),
            base_delay_s=float(backoff_base),
            max_delay_s=float(backoff_max),
            timeout_s=float(timeout),
            deadline_s=float(deadline) if deadline is not None else None,
        )
        self.api_seed = api_seed
        self.option_prefill = option_prefill
        self.prices: Prices | None = resolve_prices(self.served_model, price_in, price_out)
        self.est_image_tokens = est_image_tokens
        self.cache_path = (
            Path(cache or os.environ.get(CACHE_ENV) or default_cache_dir()) / CACHE_FILE
        )
        self.codec = FilmCodec(int(max_image_side) if max_image_side else None)
        self.adapter = RemoteModel(self.served_model, self.base_url, max_images)
        self.batch_size = max(1, int(batch_size))  # accepted for the runner; unused
        self.mc_mode = mc_mode
        self.max_gen_toks = int(max_gen_toks) if max_gen_toks is not None else None
        self.store = ResumeStore(resume_path)
        self.fingerprint = fingerprint
        self.show_progress = show_progress
        self.stats = RemoteStats()
        self.retries: Counter[str] = Counter()
        self.transport: str | None = None
        # Unique per LM (two runs of one process within a second must not share it).
        self.invocation = f"{now_iso()}#{os.getpid()}#{uuid.uuid4().hex[:8]}"
        self._rank, self._world_size = int(rank), int(world_size)

    def close(self) -> None:
        """Close the resume journal (dropping its lock); the HTTP clients close per batch."""
        self.store.close()

    @classmethod
    def from_model_args(cls, model_args: Mapping[str, Any], **engine: Any) -> OpenAIServerLM:
        """Built by the registry: the user's `--model-args`, and the runner's engine settings,
        of which those for an in-process engine (image prefetch, ...) do not apply here."""
        clash = sorted(set(model_args) & set(_ENGINE_KWARGS))
        if clash:
            raise UnknownArgument(f"openai: {clash} cannot be given in --model-args")
        return cls(**model_args, **{k: v for k, v in engine.items() if k in _ENGINE_KWARGS})

    def engine_settings(self) -> dict[str, Any]:
        """How requests are sent (speed only), for the run card."""
        return {
            "concurrency": self.concurrency,
            "requests": "chat completions, one per "
            "option or item, answered from the request cache when present",
        }

    # ----- lm-eval plumbing ------------------------------------------------------------------
    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        from model_adapters.registry import build_lm_from_args

        return build_lm_from_args("openai", arg_string, additional_config or {})

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None):
        from model_adapters.registry import build_lm_from_args

        return build_lm_from_args("openai", arg_dict, additional_config or {})

    @property
    def tokenizer_name(self) -> str:
        return self.served_model

    def mc_prompt(self, question: str, options: list[str]) -> str:
        return mc_prompt(question, options)

    def _key(self, kind: str, context: str, target: Any, images: Sequence[Any]) -> str:
        return journal_key(self.fingerprint, self.mc_mode, kind, context, target, images)

    def _limit(self, images: Sequence[Any]) -> list[Any]:
        cap = self.adapter.max_images
        return list(images[:cap] if cap is not None else images)

    _unpack = staticmethod(unpack_request)

    @staticmethod
    def _where(req: Any) -> str:
        doc = getattr(req, "doc", None) or {}
        task = getattr(req, "task_name", None) or "task ?"
        item = doc.get("item_id") if isinstance(doc, Mapping) else None
        return f"{task}, item {item}" if item is not None else str(task)

    # ----- request bodies --------------------------------------------------------------------
    def _user(self, text: str, images: Sequence[Any]) -> dict[str, Any]:
        """One user message: the films (in the item's order), then the text."""
        parts: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": self.codec.ref(im)}} for im in images
        ]
        parts.append({"type": "text", "text": text})
        return {"role": "user", "content": parts}

    def _body(self, messages: list[dict[str, Any]], max_tokens: int, **extra: Any) -> dict:
        body: dict[str, Any] = {
            "model": self.served_model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        if self.api_seed is not None:
            body["seed"] = self.api_seed
        body.update(extra)
        return body

    def _planned(self, body: dict[str, Any], where: str, kind: str) -> PlannedRequest:
        key = cache_key(self.base_url, body, {"images": self.codec.describe()})
        return PlannedRequest(key, body, f"{where} ({kind})", {"kind": kind})

    def context_request(self, item: _Item) -> PlannedRequest:
        body = self._body(
            [self._user(item.context, item.images)],
            1,
            add_generation_prompt=True,
            prompt_logprobs=PROMPT_LOGPROBS,
        )
        return self._planned(body, item.where, "prompt")

    def option_request(self, item: _Item, continuation: str) -> PlannedRequest:
        messages = [
            self._user(item.context, item.images),
            {
                "role": "assistant",
                "content": continuation.lstrip()
                if self.option_prefill == "lstrip"
                else continuation,
            },
        ]
        body = self._body(
            messages,
            1,
            add_generation_prompt=False,
            continue_final_message=True,
            prompt_logprobs=PROMPT_LOGPROBS,
        )
        return self._planned(body, item.where, f"option {continuation.strip()!r}")

    def mc_request(self, item: _Item) -> PlannedRequest:
        prompt = mc_prompt(item.context.strip(), [c.strip() for c in item.continuations])
        body = self._body([self._user(prompt, item.images)], MC_MAX_NEW_TOKENS)
        return self._planned(body, item.where, "multiple choice by generation")

    def text_request(
        self, context: str, images: Sequence[Any], until: list[str], max_new: int, where: str
    ) -> PlannedRequest:
        extra = {"stop": until} if until else {}
        body = self._body([self._user(context, images)], max_new, **extra)
        return self._planned(body, where, "generation")

    # ----- calling ---------------------------------------------------------------------------
    def _answers(
        self,
        planned: Iterable[PlannedRequest],
        desc: str,
        probe: PlannedRequest | None = None,
        check: Callable[[Mapping[str, Any]], Any] | None = None,
    ) -> dict[str, CachedResponse]:
        """Every planned request's answer: from the request cache, or the server (paid once
        across processes sharing the cache). `probe` is answered first, alone, and its answer
        checked with `check`: a server that cannot serve this kind of request fails on one
        call, not after all of them are paid for."""
        unique = OrderedDict((r.key, r) for r in planned)
        peek = RequestCache(self.cache_path, read_only=True)
        answers = peek.get_many(list(unique))
        peek.close()
        self.stats.answers_cached += len(answers)
        if probe is not None and check is not None and probe.key in answers:
            check(answers[probe.key].body)
        todo = [r for k, r in unique.items() if k not in answers]
        if not todo:
            return answers
        api_key = read_api_key(self.api_key_env)
        if not api_key:
            raise UserError(
                f"openai: {len(todo)} requests to send and no API key: set {self.api_key_env} "
                "(read only from the environment; for a server without authentication, such as "
                f"a local vLLM, any value will do: {self.api_key_env}=EMPTY), or name another "
                "variable with api_key_env=VAR in --model-args"
            )
        first = [r for r in todo if probe is not None and r.key == probe.key]
        rest = [r for r in todo if not first or r.key != first[0].key]
        bar = tqdm(total=len(todo), desc=desc, unit="call", disable=not self.show_progress)
        cache = RequestCache(self.cache_path)
        try:
            for batch in (first, rest):
                if batch:
                    outcome = asyncio.run(self._fetch(batch, cache, bar, api_key))
                    self._take(outcome, answers)
                    if batch is first and check is not None:
                        check(answers[first[0].key].body)
        finally:
            cache.close()
            bar.close()
        return answers

    async def _fetch(
        self, todo: list[PlannedRequest], cache: RequestCache, bar: Any, api_key: str
    ) -> BatchOutcome:
        client = OpenAICompatClient(self.base_url, api_key, self.policy)
        self.transport = client.transport
        try:
            return await fetch_all(
                todo,
                client,
                cache,
                invocation=self.invocation,
                concurrency=self.concurrency,
                prepare=self.codec.inline,
                keep=compact_answer,
                on_done=lambda _key: bar.update(1),
            )
        except FatalAPIError as exc:
            raise UserError(_fatal_message(str(exc), self.mc_mode, cache.path)) from None
        finally:
            self.retries.update(client.retries)
            await client.close()

    def _take(self, outcome: BatchOutcome, answers: dict[str, CachedResponse]) -> None:
        answers.update(outcome.by_others)
        answers.update(outcome.paid)
        self.stats.calls_paid += len(outcome.paid)
        self.stats.answers_cached += len(outcome.by_others)
        if outcome.failed:
            first = next(iter(outcome.failed.values()))
            raise UserError(
                f"openai: {len(outcome.failed)} requests to {endpoint_host(self.base_url)} "
                f"failed after retries (e.g. {first}); the answers received are kept in "
                f"{self.cache_path}: rerun the same command to resume without paying for them "
                "again"
            )

    # ----- multiple choice -------------------------------------------------------------------
    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[OptionScore]:
        results: list[OptionScore | None] = [None] * len(requests)
        items: OrderedDict[tuple, _Item] = OrderedDict()
        for i, req in enumerate(requests):
            ctx, cont, images = self._unpack(req)
            images = self._limit(images)
            key = self._key("loglikelihood", ctx, cont, images)
            done = self.store.get(key)
            if done is not None:
                results[i] = OptionScore.from_json(done)
                self.stats.requests_resumed += 1
                continue
            group = (ctx, tuple(image_fingerprint(im) for im in images))
            item = items.get(group)
            if item is None:
                item = items[group] = _Item(ctx, images, self._where(req))
            item.request_idx.append(i)
            item.continuations.append(cont)
            item.journal_keys.append(key)
        if self.mc_mode == "generate":
            self._score_by_generation(list(items.values()), results)
        else:
            self._score_by_likelihood(list(items.values()), results)
        return results  # type: ignore[return-value]

    def _score_by_likelihood(self, items: list[_Item], results: list[Any]) -> None:
        plans = [
            (self.context_request(it), [self.option_request(it, c) for c in it.continuations])
            for it in items
        ]
        planned = [r for ctx, opts in plans for r in (ctx, *opts)]
        probe = plans[0][0] if plans else None
        answers = self._answers(
            planned,
            "Scoring options (server)",
            probe=probe,
            check=lambda body: prompt_tokens(body, probe.label if probe else ""),
        )
        for item, (ctx_req, opt_reqs) in zip(items, plans, strict=True):
            context = prompt_tokens(answers[ctx_req.key].body, ctx_req.label)
            for idx, jkey, opt in zip(item.request_idx, item.journal_keys, opt_reqs, strict=True):
                prefilled = prompt_tokens(answers[opt.key].body, opt.label)
                score = option_score(context, prefilled, opt.label)
                self._record(idx, jkey, score, [ctx_req.key, opt.key], results)
            self.stats.items += 1

    def _score_by_generation(self, items: list[_Item], results: list[Any]) -> None:
        plans = [self.mc_request(it) for it in items]
        answers = self._answers(plans, "Multiple choice (server)")
        for item, req in zip(items, plans, strict=True):
            text = chat_text(answers[req.key].body)
            choice = mc_choice(text, len(item.continuations))
            self.stats.unparseable += choice < 0
            for k, (idx, jkey) in enumerate(zip(item.request_idx, item.journal_keys, strict=True)):
                score = OptionScore(
                    0.0 if k == choice else float("-inf"),
                    k == choice,
                    1,
                    unparseable=choice < 0,
                    generated=text,
                )
                self._record(idx, jkey, score, [req.key], results)
            self.stats.items += 1

    def _record(
        self, idx: int, jkey: str, score: OptionScore, keys: list[str], results: list[Any]
    ) -> None:
        results[idx] = score
        self.store.put(jkey, {**score.to_json(), "request_keys": keys})
        self.stats.requests_scored += 1

    def score_for(self, args: tuple) -> OptionScore:
        """The stored score of one request's args (lm-eval's sample log keeps plain tuples)."""
        ctx, cont, images = self._unpack(args)
        return OptionScore.from_json(
            self.store.done[self._key("loglikelihood", ctx, cont, self._limit(images))]
        )

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False):
        raise NotImplementedError("CheXbench tasks do not use rolling log-likelihood")

    # ----- free text -------------------------------------------------------------------------
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        results: list[str | None] = [None] * len(requests)
        pending: list[tuple[int, str, list[str], PlannedRequest]] = []
        default = self.max_gen_toks or self.adapter.generation.max_new_tokens
        for i, req in enumerate(requests):
            ctx, kwargs, images = self._unpack(req)
            images = self._limit(images)
            kwargs = dict(kwargs or {})
            kwargs["max_gen_toks"] = int(kwargs.get("max_gen_toks", default))
            until = _as_list(kwargs.get("until"))
            jkey = self._key(
                "generate_until",
                ctx,
                {k: v for k, v in kwargs.items() if k in ("until", "max_gen_toks")},
                images,
            )
            done = self.store.get(jkey)
            if done is not None:
                results[i] = done["text"]
                self.stats.requests_resumed += 1
                continue
            plan = self.text_request(ctx, images, until, kwargs["max_gen_toks"], self._where(req))
            pending.append((i, jkey, until, plan))
        answers = self._answers([p for *_, p in pending], "Generating (server)")
        for i, jkey, until, plan in pending:
            text = self.adapter.postprocess_generation(
                _cut(chat_text(answers[plan.key].body), until)
            )
            results[i] = text
            self.store.put(jkey, {"text": text, "request_keys": [plan.key]})
            self.stats.requests_scored += 1
            self.stats.generated += 1
        return results  # type: ignore[return-value]

    # ----- what the run records --------------------------------------------------------------
    def generation_settings(self) -> dict[str, Any]:
        official = self.adapter.generation
        return {
            "decoding": "greedy (temperature 0)",
            "max_new_tokens": self.max_gen_toks or official.max_new_tokens,
            "official_max_new_tokens": official.max_new_tokens,
            "source": official.source,
            "deviations": (
                [
                    f"max_new_tokens overridden to {self.max_gen_toks} (official "
                    f"{official.max_new_tokens})"
                ]
                if self.max_gen_toks not in (None, official.max_new_tokens)
                else []
            ),
            "stop_strings": [],
            "postprocess": "none",
            "api_seed": self.api_seed,
            "template": "the server's own chat template: one user message, the films as "
            "image_url parts, then the text",
            "mc_generate_max_new_tokens": MC_MAX_NEW_TOKENS,
        }

    def protocol(self) -> dict[str, Any]:
        """How multiple choice was scored, for the run card."""
        if self.mc_mode == "generate":
            return {
                "mc_mode": "generate",
                "rule": "official CheXagent-2 lettered prompt; the first '(X)' of the answer; "
                "an answer naming no option is wrong (unparseable)",
                "max_tokens": MC_MAX_NEW_TOKENS,
            }
        return {
            "mc_mode": "loglikelihood",
            "rule": "chat completions with prompt_logprobs: the item's prompt with "
            "add_generation_prompt, and each option prefilled as the assistant's reply "
            "(continue_final_message); the option's tokens are those past the longest common "
            "prefix with the item's prompt; score = sum of their log-probs",
            "server_features": [
                "prompt_logprobs",
                "continue_final_message",
                "add_generation_prompt",
            ],
            "prompt_logprobs": PROMPT_LOGPROBS,
            "option_prefill": self.option_prefill,
        }

    def _keys_behind_results(self) -> list[str]:
        keys: dict[str, None] = {}
        for value in self.store.done.values():
            if isinstance(value, Mapping):
                keys.update(dict.fromkeys(value.get("request_keys") or ()))
        return list(keys)

    def ledger(self) -> list[PaidCall]:
        """Every paid call behind the scores of this run (this and earlier invocations)."""
        cache = RequestCache(self.cache_path, read_only=True)
        try:
            return cache.calls_for(self._keys_behind_results())
        finally:
            cache.close()

    def run_card_extra(self) -> dict[str, Any]:
        calls = self.ledger()
        mine = [c for c in calls if c.invocation == self.invocation]
        return {
            "server": {
                "model": self.served_model,
                "base_url_host": endpoint_host(self.base_url),
                "protocol": self.protocol(),
                "images": {**self.codec.describe(), "sent_as": "image_url data URLs"},
                "concurrency": self.concurrency,
                "retry_policy": self.policy.as_dict(),
                "retries": dict(self.retries),
                "http_transport": self.transport,
                "cost": {
                    "token_source": "usage reported by the server, per call",
                    "prices_per_1m": (
                        {"input": self.prices.input_per_1m, "output": self.prices.output_per_1m}
                        if self.prices
                        else None
                    ),
                    "all_requests": ledger_totals(calls, self.prices),
                    "this_invocation": ledger_totals(mine, self.prices),
                },
                "ledger_file": "ledger.jsonl",
            }
        }

    def result_files(self) -> dict[str, list[dict[str, Any]]]:
        """Files written beside results.json: the ledger of the paid calls behind them."""
        rows = []
        for c in self.ledger():
            cost = (
                round(self.prices.cost(c.prompt_tokens, c.completion_tokens), 8)
                if self.prices and c.prompt_tokens is not None
                else None
            )
            rows.append(
                {
                    "call_id": c.id,
                    "key": c.key,
                    "model": c.model,
                    "prompt_tokens": c.prompt_tokens,
                    "completion_tokens": c.completion_tokens,
                    "usage_reported": c.usage_reported,
                    "cost_usd": cost,
                    "attempts": c.attempts,
                    "latency_s": c.latency_s,
                    "created_at": c.created_at,
                    "invocation": c.invocation,
                    "this_invocation": c.invocation == self.invocation,
                    "note": c.note,
                }
            )
        return {"ledger.jsonl": rows}

    # ----- dry run ---------------------------------------------------------------------------
    def plan_dry_run(self, mc: Sequence[Any], text: Sequence[Any]) -> dict[str, Any]:
        """What a run would send for these lm-eval requests (multiple choice, free text), how
        many answers are cached already, and the estimated tokens and cost. Sends nothing,
        creates nothing, needs no key."""
        items: OrderedDict[tuple, _Item] = OrderedDict()
        for req in mc:
            ctx, cont, images = self._unpack(req)
            images = self._limit(images)
            group = (ctx, tuple(image_fingerprint(im) for im in images))
            item = items.setdefault(group, _Item(ctx, images, self._where(req)))
            item.continuations.append(cont)
        planned: list[tuple[PlannedRequest, int]] = []  # (request, expected answer tokens)
        for item in items.values():
            if self.mc_mode == "generate":
                planned.append((self.mc_request(item), EST_MC_ANSWER_TOKENS))
            else:
                planned.append((self.context_request(item), 1))
                planned.extend((self.option_request(item, c), 1) for c in item.continuations)
        default = self.max_gen_toks or self.adapter.generation.max_new_tokens
        for req in text:
            ctx, kwargs, images = self._unpack(req)
            max_new = int(dict(kwargs or {}).get("max_gen_toks", default))
            until = _as_list(dict(kwargs or {}).get("until"))
            plan = self.text_request(ctx, self._limit(images), until, max_new, self._where(req))
            planned.append((plan, min(max_new, EST_REPORT_TOKENS)))
        unique = OrderedDict((r.key, (r, est)) for r, est in planned)
        peek = RequestCache(self.cache_path, read_only=True)
        cached = set(peek.get_many(list(unique)))
        peek.close()
        method, count = token_counter(self.served_model)
        prompt = expected = upper = 0
        for key, (req, est) in unique.items():
            if key in cached:
                continue
            prompt += 7 + sum(self._prompt_tokens(m, count) for m in req.body["messages"])
            expected += est
            upper += req.body["max_tokens"]
        todo = len(unique) - len(cached)
        cost = (
            (self.prices.cost(prompt, expected), self.prices.cost(prompt, upper))
            if self.prices
            else None
        )
        return {
            "model": self.served_model,
            "host": endpoint_host(self.base_url),
            "mc_mode": self.mc_mode,
            "requests": len(unique),
            "cached": len(cached),
            "to_send": todo,
            "prompt_tokens": prompt,
            "token_method": method,
            "image_token_method": (
                f"{self.est_image_tokens} per image (est_image_tokens)"
                if self.est_image_tokens
                else "OpenAI high-detail tiles (85 + 170 per 512-px tile)"
            ),
            "completion_tokens_expected": expected,
            "completion_tokens_max": upper,
            "prices_per_1m": (self.prices.input_per_1m, self.prices.output_per_1m)
            if self.prices
            else None,
            "cost_usd_expected": cost[0] if cost else None,
            "cost_usd_max": cost[1] if cost else None,
            "cache": str(self.cache_path),
        }

    def _prompt_tokens(self, message: Mapping[str, Any], count: Callable[[str], int]) -> int:
        content = message.get("content")
        if isinstance(content, str):
            return count(content)
        total = 0
        for part in content or []:
            if part.get("type") == "text":
                total += count(part["text"])
            elif part.get("type") == "image_url":
                total += self.est_image_tokens or openai_image_tokens(
                    *self.codec.sent_size(part["image_url"]["url"])
                )
        return total


def _fatal_message(message: str, mc_mode: str, cache: Path) -> str:
    hint = ""
    features = ("prompt_logprobs", "continue_final_message", "add_generation_prompt")
    if mc_mode == "loglikelihood" and any(f in message for f in features):
        hint = (
            " (scoring options by log-likelihood needs vLLM's prompt_logprobs and "
            "continue_final_message; for other servers rerun with --mc-mode generate)"
        )
    return f"{message}{hint}; answers received so far are kept in {cache}"


def _check_number(
    name: str, value: Any, integer: bool = False, minimum: float | None = None, strict: bool = False
) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = isinstance(value, int)
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        kind = "a whole number" if integer else "a number"
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
        raise UserError(f"openai: {name}={value!r} in --model-args: expected {kind}{bound}")


def _cut(text: str, until: Sequence[str]) -> str:
    """The text before the first stop string (a server may return it, or ignore `stop`)."""
    for stop in until:
        if stop and stop in text:
            text = text[: text.index(stop)]
    return text


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]
