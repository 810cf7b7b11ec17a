"""The reusable pieces for OpenAI-compatible servers (harness.openai_compat), one by one: the
endpoint check, the secret masker, usage validation, Retry-After, the request key, and the
cache's claims between real processes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.openai_compat.cache import Owner, RequestCache, request_key
from harness.openai_compat.client import RetryPolicy, retry_after_s
from harness.openai_compat.endpoint import DEFAULT_BASE_URL, resolve_base_url
from harness.openai_compat.secrets import MaskSecrets, mask, register_secret
from harness.openai_compat.usage import MAX_TOKENS_PER_CALL, InvalidUsage, Usage, read_usage

BODY = {
    "model": "judge",
    "messages": [{"role": "user", "content": "compare A and B"}],
    "temperature": 0,
    "seed": 0,
    "max_tokens": 1024,
}
URL = "http://127.0.0.1:8000/v1"


# -- endpoint -------------------------------------------------------------------------------


def test_the_endpoint_resolves_like_the_openai_client_and_normalises():
    assert resolve_base_url(None, env={}) == DEFAULT_BASE_URL
    assert resolve_base_url(None, env={"OPENAI_BASE_URL": "http://Judge.Local:80/v1/"}) == (
        "http://judge.local/v1"
    )
    assert resolve_base_url("HTTPS://Judge.Example:443/V1//", env={}) == "https://judge.example/V1"
    assert resolve_base_url("http://[::1]:8000/v1", env={}) == "http://[::1]:8000/v1"
    flag_wins = {"OPENAI_BASE_URL": "http://other/v1"}
    assert resolve_base_url(URL, env=flag_wins) == URL


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw-9f8e7d@host/v1",
        "http://:pw-9f8e7d@host/v1",
        "http://pw-9f8e7d@host/v1",
        "https://host/v1?api-key=pw-9f8e7d",
        "https://host/v1#pw-9f8e7d",
    ],
)
def test_credentials_in_an_endpoint_are_refused_without_echoing_them(url):
    with pytest.raises(UserError, match=r"--base-url") as info:
        resolve_base_url(url, env={})
    assert "pw-9f8e7d" not in str(info.value)
    with pytest.raises(UserError, match=r"\$OPENAI_BASE_URL"):
        resolve_base_url(None, env={"OPENAI_BASE_URL": url})


@pytest.mark.parametrize("url", ["ftp://host/v1", "host:8000/v1", "http:///v1", "http://h:99999"])
def test_an_endpoint_that_is_not_an_http_url_is_refused(url):
    with pytest.raises(UserError, match="--base-url"):
        resolve_base_url(url, env={})


# -- secrets --------------------------------------------------------------------------------


def test_mask_hides_a_key_whole_encoded_or_in_pieces():
    key = "sk-test/Q9+x-7c41d2e8b05f6a93"
    register_secret(key)
    assert mask(f"Incorrect API key provided: {key}.") == "Incorrect API key provided: ***."
    assert key not in mask(f"url-encoded {key.replace('/', '%2F').replace('+', '%2B')}")
    assert mask(f"partly echoed: ...{key[6:20]}...") == "partly echoed: ...***..."
    assert mask(f"{key[:11]} is too short a piece to be a leak") == (
        f"{key[:11]} is too short a piece to be a leak"
    )
    assert mask("http://bob:hunter2@host/v1?token=abc") == "http://***@host/v1?***"
    assert mask("nothing secret here") == "nothing secret here"


def test_log_records_from_any_library_are_masked():
    key = "sk-log-4b1e9d77c2a05f38aa"
    register_secret(key)
    record = logging.LogRecord(
        "httpx", logging.DEBUG, __file__, 1, "sent %s to %s", (f"Bearer {key}", "h"), None
    )
    assert MaskSecrets().filter(record)
    assert record.getMessage() == "sent Bearer *** to h"


# -- usage ----------------------------------------------------------------------------------


def test_valid_usage_is_read_and_missing_usage_is_flagged():
    body = {"usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}
    assert read_usage(body) == Usage(12, 3, True)
    assert read_usage({}) == Usage(0, 0, reported=False)
    assert read_usage({"usage": {"prompt_tokens": 0, "completion_tokens": MAX_TOKENS_PER_CALL}})


@pytest.mark.parametrize(
    "raw",
    [
        "1e400",
        "-1",
        "-40000000",
        "12.5",
        "12.0",
        "true",
        '"12"',
        "null",
        str(MAX_TOKENS_PER_CALL + 1),
        "[1]",
    ],
)
def test_usage_that_cannot_be_booked_is_refused(raw):
    body = json.loads(f'{{"usage": {{"prompt_tokens": {raw}, "completion_tokens": 1}}}}')
    with pytest.raises(InvalidUsage, match="usage.prompt_tokens"):
        read_usage(body)


def test_usage_missing_a_count_or_not_an_object_is_refused():
    with pytest.raises(InvalidUsage, match="completion_tokens"):
        read_usage({"usage": {"prompt_tokens": 1}})
    with pytest.raises(InvalidUsage, match="expected an object"):
        read_usage({"usage": 7})


# -- retry policy ---------------------------------------------------------------------------


def test_retry_after_in_seconds_milliseconds_or_as_a_date():
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert retry_after_s({"retry-after": "7"}) == 7.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_s({"retry-after": date}, now=now) == 30.0
    assert (
        retry_after_s(
            {"retry-after": format_datetime(now - timedelta(seconds=5), usegmt=True)}, now=now
        )
        == 0.0
    )
    for bad in ("-3", "soon", "inf", "nan"):
        assert retry_after_s({"retry-after": bad}) is None
    assert retry_after_s(None) is None
    policy = RetryPolicy(base_delay_s=1, max_delay_s=10)
    assert policy.delay(1, 7.0) == 7.0 and policy.delay(1, 60.0) == 10.0 and policy.delay(3) == 4
    assert RetryPolicy(max_attempts=3, timeout_s=5, max_delay_s=2).worst_case_s() == 19


# -- the request key ------------------------------------------------------------------------


def test_the_request_key_covers_the_endpoint_every_field_and_the_context():
    key = request_key(URL, BODY, {"template_sha256": "t1"})
    assert key == request_key(URL, dict(reversed(BODY.items())), {"template_sha256": "t1"})
    changed = [
        request_key("http://127.0.0.1:8001/v1", BODY, {"template_sha256": "t1"}),
        request_key(URL, {**BODY, "model": "judge-2"}, {"template_sha256": "t1"}),
        request_key(URL, {**BODY, "temperature": 0.7}, {"template_sha256": "t1"}),
        request_key(URL, {**BODY, "seed": 1}, {"template_sha256": "t1"}),
        request_key(URL, {**BODY, "max_tokens": 512}, {"template_sha256": "t1"}),
        request_key(URL, {**BODY, "messages": [{"role": "user", "content": "compare B and A"}]},
                    {"template_sha256": "t1"}),
        request_key(URL, {**BODY, "logprobs": True}, {"template_sha256": "t1"}),
        request_key(URL, BODY, {"template_sha256": "t2"}),
    ]  # fmt: skip
    assert len({key, *changed}) == len(changed) + 1


# -- the cache's claims ---------------------------------------------------------------------


def _store(cache: RequestCache, key: str, text: str, invocation: str):
    return cache.store(
        key,
        base_url=URL,
        model="judge",
        body={"choices": [{"message": {"content": text}}]},
        usage=Usage(10, 2),
        attempts=1,
        latency_s=0.1,
        invocation=invocation,
    )


def test_a_live_owners_claim_is_waited_for_and_its_answer_shared(tmp_path):
    path = tmp_path / "c.sqlite"
    first, second = RequestCache(path), RequestCache(path)
    assert first.claim("k", lease_s=600).state == "mine"
    assert first.claim("k", lease_s=600).state == "mine"  # idempotent for its owner
    busy = second.claim("k", lease_s=600)
    assert busy.state == "busy" and f"pid {first.owner.pid}" in busy.holder
    _store(first, "k", "answer", "inv-1")
    shared = second.claim("k", lease_s=600)
    assert shared.state == "cached" and shared.cached.body["choices"][0]["message"]["content"] == (
        "answer"
    )
    assert [c.invocation for c in second.calls_for(["k"])] == ["inv-1"]
    first.close()
    second.close()


def test_a_released_claim_can_be_taken(tmp_path):
    path = tmp_path / "c.sqlite"
    first, second = RequestCache(path), RequestCache(path)
    assert first.claim("k", 600).state == "mine" and second.claim("k", 600).state == "busy"
    first.release("k")
    assert second.claim("k", 600).state == "mine"
    second.release_all()
    assert first.claim("k", 600).state == "mine"


def test_a_dead_processs_claim_is_taken_over_at_once(tmp_path):
    """A real process claims a key and dies (os._exit: no cleanup), as a killed judge does."""
    path = tmp_path / "c.sqlite"
    code = (
        f"from harness.openai_compat.cache import RequestCache\n"
        f"c = RequestCache({str(path)!r})\n"
        f"assert c.claim('k', lease_s=3600).state == 'mine'\n"
        f"import os; os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
    cache = RequestCache(path)
    assert cache.claim("k", lease_s=600).state == "mine"  # no wait for the hour-long lease


def test_a_reused_pid_does_not_keep_a_claim_alive(tmp_path):
    path = tmp_path / "c.sqlite"
    impostor = RequestCache(path)
    o = impostor.owner  # this very process's pid, but another start time: a reused pid
    impostor.owner = Owner(o.token, o.host, o.pid, o.started - 1000)
    assert impostor.claim("k", lease_s=3600).state == "mine"
    assert RequestCache(path).claim("k", lease_s=600).state == "mine"


def test_an_expired_lease_is_taken_over_and_both_paid_calls_are_recorded(tmp_path):
    path = tmp_path / "c.sqlite"
    slow, other = RequestCache(path), RequestCache(path)
    assert slow.claim("k", lease_s=0.05).state == "mine"
    time.sleep(0.2)
    assert other.claim("k", lease_s=600).state == "mine"
    kept = _store(other, "k", "second answer", "inv-2")
    late = _store(slow, "k", "first answer", "inv-1")  # paid too: booked, not kept
    assert late.call.id == kept.call.id and late.body == kept.body
    assert [c.invocation for c in other.calls_for(["k"])] == ["inv-2", "inv-1"]


def test_a_read_only_cache_that_does_not_exist_is_empty_and_creates_nothing(tmp_path):
    cache = RequestCache(tmp_path / "none" / "c.sqlite", read_only=True)
    assert cache.get_many(["k"]) == {} and cache.calls_for(["k"]) == []
    assert not (tmp_path / "none").exists()


# The judge's own cache before it moved to RequestCache (same file name, judge_cache.sqlite),
# as commit 153895a wrote it.
_OLD_JUDGE_SCHEMA = """CREATE TABLE judgments (
    key TEXT PRIMARY KEY, judge_model TEXT NOT NULL, template_sha256 TEXT NOT NULL,
    prompt_sha256 TEXT NOT NULL, response TEXT NOT NULL, verdict TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, attempts INTEGER NOT NULL,
    latency_s REAL NOT NULL, created_at TEXT NOT NULL, invocation TEXT NOT NULL)"""


def _old_judge_cache(path: Path) -> Path:
    import sqlite3

    db = sqlite3.connect(path)
    db.execute(_OLD_JUDGE_SCHEMA)
    db.execute(
        "INSERT INTO judgments VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        ("k", "gpt-4o", "t", "p", "Report 1", "A", 10, 2, 1, 0.5, "2024-01-01", "inv"),
    )
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize("read_only", [False, True], ids=["write", "read-only"])
def test_a_file_that_is_not_sqlite_is_a_one_line_error_and_left_alone(tmp_path, read_only):
    path = tmp_path / "judge_cache.sqlite"
    path.write_text("these are my notes, not a database\n" * 200)
    before = path.read_bytes()
    with pytest.raises(UserError) as err:
        RequestCache(path, read_only=read_only)
    message = str(err.value)
    assert message.startswith(f"{path}: not a chexbench request cache (")
    assert message.endswith("; pass another --cache") and "\n" not in message
    assert path.read_bytes() == before


def test_a_cache_folder_that_cannot_be_created_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")  # a file where the cache folder should be (works as root too)
    with pytest.raises(UserError, match=r"cannot open the request cache .*pass another --cache"):
        RequestCache(blocker / "judge_cache.sqlite")


@pytest.mark.parametrize("read_only", [False, True], ids=["write", "read-only"])
def test_a_judge_cache_of_the_earlier_schema_is_refused_not_read_as_empty(tmp_path, read_only):
    """Before: its judgments were treated as absent and paid for again."""
    import sqlite3

    path = _old_judge_cache(tmp_path / "judge_cache.sqlite")
    with pytest.raises(UserError) as err:
        RequestCache(path, read_only=read_only)
    message = str(err.value)
    assert message.startswith(f"{path}: a judge cache of an earlier chexbench")
    assert "move it aside" in message and "\n" not in message
    db = sqlite3.connect(path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"judgments"}  # nothing was added to it
    assert db.execute("SELECT count(*) FROM judgments").fetchone() == (1,)
    db.close()
