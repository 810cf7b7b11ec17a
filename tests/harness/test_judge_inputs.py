"""Bad judge inputs fail with file, line and item, before any call is made."""

from __future__ import annotations

import json

import pytest
from helpers.openai_server import text_rows, write_samples

from harness.cli import main as cli_main
from harness.errors import UserError
from harness.judge.pairs import against_reference, join_runs, load_run_samples


def main(argv: list[str]) -> int:
    """`chexbench judge ...` in this process."""
    return cli_main(["judge", *argv])


def test_duplicate_ids_name_both_lines(tmp_path):
    rows = text_rows(3, lambda i: "x")
    rows.append(dict(rows[1]))
    f = tmp_path / "a.samples.jsonl"
    write_samples(f, rows)
    with pytest.raises(
        UserError,
        match=r"a\.samples\.jsonl:4: .*duplicate item "
        r"findings_generation/1 \(first at .*:2\)",
    ):
        load_run_samples(f, "findings_generation")


def test_missing_prediction_names_file_line_item(tmp_path):
    rows = text_rows(2, lambda i: "x")
    del rows[1]["prediction"]
    f = tmp_path / "a.samples.jsonl"
    write_samples(f, rows)
    with pytest.raises(
        UserError,
        match=r":2: task findings_generation, item "
        r"findings_generation/1: 'prediction' must be a string",
    ):
        load_run_samples(f, "findings_generation")


def test_empty_references_are_dropped_and_counted_other_tasks_skipped(tmp_path):
    rows = text_rows(4, lambda i: "x", reference=lambda i: "" if i == 2 else f"r{i}")
    rows += text_rows(2, lambda i: "y", task="chexbench_findings_summarization")
    f = tmp_path / "a.samples.jsonl"
    write_samples(f, rows)
    run = load_run_samples(f, "findings_generation")
    assert sorted(run.rows) == [
        "findings_generation/0",
        "findings_generation/1",
        "findings_generation/3",
    ]
    assert run.excluded == {"empty_reference": 1}
    assert run.name == "a"
    ref_items = against_reference(run)
    assert [i.prediction_b for i in ref_items] == ["r0", "r1", "r3"]


def test_model_name_comes_from_results_json_beside_samples(tmp_path):
    f = tmp_path / "run1.samples.jsonl"
    write_samples(f, text_rows(1, lambda i: "x"))
    (tmp_path / "run1.json").write_text(json.dumps({"model": {"name": "CheXagent"}}))
    assert load_run_samples(f, "findings_generation").name == "CheXagent"


def test_runs_with_different_references_are_refused(tmp_path):
    fa, fb = tmp_path / "a.samples.jsonl", tmp_path / "b.samples.jsonl"
    write_samples(fa, text_rows(3, lambda i: "x"))
    write_samples(
        fb,
        text_rows(
            4, lambda i: "y", reference=lambda i: "other" if i == 1 else f"reference findings {i}"
        ),
    )
    a, b = load_run_samples(fa, "findings_generation"), load_run_samples(fb, "findings_generation")
    with pytest.raises(UserError, match=r"item findings_generation/1: the references differ"):
        join_runs(a, b)
    write_samples(fb, text_rows(4, lambda i: "y"))
    items, only = join_runs(a, load_run_samples(fb, "findings_generation"))
    assert len(items) == 3 and only == {"only_in_b": 1}


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--run", "{a}", "--task", "findings_generation"], "add --against-reference"),
        (["--runs", "{a}", "{a}", "--task", "view_classification"], "not a text task"),
        (["--runs", "{a}", "--task", "findings_generation"], "at least two"),
        (["--runs", "{a}", "{a}", "--task", "findings_generation"], "both named"),
        (["--runs", "{a}", "{missing}", "--task", "findings_generation"], "not found"),
        (
            [
                "--runs",
                "{a}",
                "{a}",
                "--names",
                "x",
                "y",
                "--task",
                "findings_generation",
                "--concurrency",
                "0",
            ],
            "--concurrency: must be at least 1",
        ),
    ],
)
def test_cli_errors_exit_2_with_a_message(tmp_path, capsys, argv, message):
    a = tmp_path / "a.samples.jsonl"
    write_samples(a, text_rows(2, lambda i: "x"))
    argv = [s.format(a=a, missing=tmp_path / "nope.jsonl") for s in argv]
    assert main([*argv, "--cache", str(tmp_path / "c"), "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_missing_key_is_a_clear_error_and_dry_run_needs_none(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CHEXBENCH_TEST_KEY", raising=False)
    a, b = tmp_path / "a.samples.jsonl", tmp_path / "b.samples.jsonl"
    write_samples(a, text_rows(2, lambda i: "x"))
    write_samples(b, text_rows(2, lambda i: "y"))
    common = [
        "--runs",
        str(a),
        str(b),
        "--task",
        "findings_generation",
        "--api-key-env",
        "CHEXBENCH_TEST_KEY",
        "--cache",
        str(tmp_path / "c"),
        "--base-url",
        "http://127.0.0.1:9/v1",
    ]
    assert main(common) == 2
    assert "set CHEXBENCH_TEST_KEY" in capsys.readouterr().err
    assert main([*common, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "calls to make: 4" in out and "estimated cost: $" in out
    assert not (tmp_path / "c").exists()  # a dry run creates nothing


def test_recorded_command_masks_url_credentials():
    from harness.openai_compat.endpoint import endpoint_host, redact_argv, resolve_base_url

    argv = [
        "chexbench",
        "judge",
        "--base-url",
        "https://user:s3cret@judge.example:8443/v1?key=abc",
        "--judge-model",
        "gpt-4",
    ]
    red = redact_argv(argv)
    assert "s3cret" not in " ".join(red) and "abc" not in " ".join(red)
    assert red[3] == "https://***@judge.example:8443/v1?***"
    assert red[:3] == argv[:3] and red[4:] == argv[4:]
    assert endpoint_host("https://judge.example:8443/v1") == "judge.example:8443"
    assert endpoint_host(resolve_base_url(None, env={})) == "api.openai.com"


def test_a_cache_that_is_not_a_request_cache_exits_2_with_one_line(tmp_path, capsys):
    a, b = tmp_path / "a.samples.jsonl", tmp_path / "b.samples.jsonl"
    write_samples(a, text_rows(2, lambda i: "x"))
    write_samples(b, text_rows(2, lambda i: "y"))
    (tmp_path / "c").mkdir()
    cache = tmp_path / "c" / "judge_cache.sqlite"
    cache.write_bytes(b"\x00not sqlite" * 100)
    argv = ["--runs", str(a), str(b), "--task", "findings_generation", "--cache"]
    assert main([*argv, str(tmp_path / "c"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(cache) in err and "pass another --cache" in err
