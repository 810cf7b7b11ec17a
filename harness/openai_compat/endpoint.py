"""Which OpenAI-compatible server is called, checked before anything is sent.

The endpoint is resolved exactly as the `openai` client resolves it (the flag, else
`$OPENAI_BASE_URL`, else api.openai.com) and then handed to the client explicitly, so the URL
that keys the cache is the URL that was called. URLs end up in logs, results and shell
history, so one carrying credentials (user-info, or a query string, where proxies put keys)
is refused: the key belongs in an environment variable. The `openai` client could not use a
query string in a base URL anyway: it appends the request path after it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from harness.errors import UserError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
BASE_URL_ENV = "OPENAI_BASE_URL"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#@]*@")


def resolve_base_url(
    base_url: str | None, env: Mapping[str, str] | None = None, flag: str = "--base-url"
) -> str:
    """The endpoint to call: `base_url` (named `flag` in messages), else `$OPENAI_BASE_URL`,
    else api.openai.com; refused if it carries credentials, normalised for cache keys."""
    env = os.environ if env is None else env
    if base_url:
        return normalise_base_url(base_url, flag)
    if env.get(BASE_URL_ENV):
        return normalise_base_url(env[BASE_URL_ENV], f"${BASE_URL_ENV}")
    return DEFAULT_BASE_URL


def normalise_base_url(url: str, where: str = "the base URL") -> str:
    """`url` with scheme and host lower-cased, a default port and trailing slashes dropped; a
    UserError (naming `where`, never echoing a credential) if it is not a plain http(s) URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UserError(f"{where} is not a valid URL: {redact_url(url)!r} ({exc})") from None
    if parts.username is not None or parts.password is not None:
        raise UserError(
            f"{where} carries credentials in the URL (user:password@), which would end up in "
            "logs and results: refused; put the API key in the environment variable named by "
            "--api-key-env"
        )
    if parts.query or parts.fragment:
        raise UserError(
            f"{where} has a query string or fragment ({redact_url(url)!r}), where proxies put "
            "credentials and which the openai client cannot use in a base URL: refused; put "
            "the API key in the environment variable named by --api-key-env"
        )
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise UserError(
            f"{where} must be an http:// or https:// URL with a host, got {redact_url(url)!r}"
        )
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def endpoint_host(base_url: str) -> str:
    """Host and port only: what results record about the endpoint."""
    parts = urlsplit(base_url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def redact_url(text: str) -> str:
    """`text` with any URL's user-info, query and fragment masked (for messages and recorded
    commands)."""
    if "://" not in text:
        return text
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    return re.sub(r"(://[^\s?#]*)([?#])\S*", r"\1\2***", text)


def redact_argv(argv: list[str] | None) -> list[str] | None:
    """A command line as recorded: URL credentials masked (the key itself never reaches argv,
    but a URL may carry one)."""
    return None if argv is None else [redact_url(token) for token in argv]
