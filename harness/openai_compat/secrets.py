"""API keys: read only from the environment, and masked in every message we print or log.

Servers and proxies echo what they were sent: a 401 that quotes the presented key ("Incorrect
API key provided: sk-...") is common. Every message built from a server's words therefore goes
through `mask`, which replaces each key read by `read_api_key` (whole, URL-encoded or
JSON-escaped, and any 12-character piece of it) and any URL user-info; `MaskSecrets` does the
same for log records from any library, so a debug log of the HTTP stack cannot leak it either.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from urllib.parse import quote

from harness.openai_compat.endpoint import redact_url

MASK = "***"
ECHO_MIN = 12  # a piece of a key this long is masked too (a server may quote part of it)

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Mask `value` in every later `mask` call (in this process)."""
    if value:
        with _lock:
            _secrets.add(value)


def read_api_key(env_var: str) -> str | None:
    """The key in `$env_var` (None if unset or empty), registered for masking. Keys are never
    taken from flags or files: argv and files end up in shell history and results."""
    value = os.environ.get(env_var) or None
    if value:
        register_secret(value)
    return value


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}


def mask(text: str) -> str:
    """`text` with every registered secret, and any piece of one at least ECHO_MIN characters
    long, replaced by `***`; URL user-info and queries are masked as well."""
    text = redact_url(text)
    with _lock:
        secrets = list(_secrets)
    spans: list[tuple[int, int]] = []
    for secret in secrets:
        for form in _forms(secret):
            width = min(len(form), ECHO_MIN)
            for piece in {form[i : i + width] for i in range(len(form) - width + 1)}:
                start = text.find(piece)
                while start != -1:
                    spans.append((start, start + width))
                    start = text.find(piece, start + 1)
    if not spans:
        return text
    spans.sort()
    out, pos = [], 0
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in merged:
        out.append(text[pos:start])
        out.append(MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


class MaskSecrets(logging.Filter):
    """A handler filter that masks secrets in every record it passes (any library's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def mask_logging(logger: logging.Logger | None = None) -> None:
    """Install `MaskSecrets` on every handler of `logger` (default: the root logger)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, MaskSecrets) for f in handler.filters):
            handler.addFilter(MaskSecrets())
