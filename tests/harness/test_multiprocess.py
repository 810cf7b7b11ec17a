"""Data-parallel `chexbench run --num-processes 2` (CPU, gloo) equals a single-process run.

One 2-process run through the real launcher (accelerate -> torch elastic -> two ranks) is
compared with a single-process run of the same command: every sample row (log-probs within
1e-6, predictions and generated text identical) and every metric with its CI. A single-process
rerun over the 2-process run's per-rank journals must resume all of it and give the same rows.

On a machine with a GPU, a model whose layers execute on two devices (as `device_map="auto"`
places a large model over several GPUs) must score like the same model on one device. The
harness's heavy imports stay inside the tests so that this part runs where only torch,
transformers and lm-eval are installed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.errors import UserError
from harness.io import read_jsonl
from harness.multiprocess import DataParallel

TASKS = [
    "chexbench_view_classification_mimic_cxr",
    "chexbench_visual_question_answering_rad_restruct",
    "chexbench_findings_generation",
]


def _spec(data: Path, output: Path):
    from harness.runner import RunConfig, RunOptions, RunSpec

    return RunSpec(
        RunConfig(
            model="chexagent",
            model_args={"pretrained": "smoke"},
            data=str(data),
            tasks=tuple(TASKS),
            max_gen_toks=8,
            bootstrap_samples=200,
            text_metrics="rouge",
        ),
        RunOptions(output=str(output), batch_size=8, show_progress=False),
    )


def _cli(data: Path, output: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "harness.cli",
        "run",
        "--model",
        "chexagent",
        "--model-args",
        "pretrained=smoke",
        "--data",
        str(data),
        "--tasks",
        ",".join(TASKS),
        "--output",
        str(output),
        "--batch-size",
        "8",
        "--max-gen-toks",
        "8",
        "--bootstrap-samples",
        "200",
        "--text-metrics",
        "rouge",
        "--num-processes",
        "2",
    ]


def _assert_same_rows(rows: list[dict], ref: list[dict]) -> None:
    assert [(r["task"], r["doc_id"]) for r in rows] == [(r["task"], r["doc_id"]) for r in ref]
    for row, want in zip(rows, ref, strict=True):
        where = f"{want['task']} doc {want['doc_id']}"
        if "logprobs" in want:
            assert row["logprobs"] == pytest.approx(want["logprobs"], abs=1e-6), where
            rest = {k: v for k, v in row.items() if k != "logprobs"}
            assert rest == {k: v for k, v in want.items() if k != "logprobs"}, where
        else:
            assert row == want, where  # generated text, reference and ROUGE-L


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    from harness.phantom import generate_phantom

    out = tmp_path_factory.mktemp("phantom")
    return generate_phantom(out, n_per_pair=2, seed=0, n_text=2, n_fairness=0).data_json


@pytest.mark.slow
def test_two_processes_equal_one(phantom, tmp_path):
    from harness.runner import run_benchmark

    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    # The 2-process run goes in the background while this process makes the reference.
    proc = subprocess.Popen(
        _cli(phantom, tmp_path / "dp"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        ref_path = run_benchmark(_spec(phantom, tmp_path / "single")).results
        log, _ = proc.communicate(timeout=400)
    finally:
        proc.kill()
    assert proc.returncode == 0, log[-4000:]
    ref_dir = ref_path.parent
    (dp_dir,) = [p for p in (tmp_path / "dp").iterdir() if p.is_dir() and p.name != ".journal"]
    assert dp_dir.name == ref_dir.name, "the process count must not change the run id"
    (dp_journals,) = (tmp_path / "dp" / ".journal").iterdir()
    (ref_journals,) = (tmp_path / "single" / ".journal").iterdir()
    assert dp_journals.name == ref_journals.name

    # Each rank journaled its own shard, and between them every request exactly once.
    shards = [read_jsonl(dp_journals / f"journal.rank{k}.jsonl") for k in (0, 1)]
    assert not (dp_journals / "journal.jsonl").exists()
    assert all(shards), "a rank scored nothing: the docs were not sharded"
    keys = [row["key"] for shard in shards for row in shard]
    ref_keys = [row["key"] for row in read_jsonl(ref_journals / "journal.jsonl")]
    assert sorted(set(keys)) == sorted(ref_keys)
    assert not set(r["key"] for r in shards[0]) & set(r["key"] for r in shards[1])

    ref_rows = read_jsonl(ref_dir / "samples.jsonl")
    assert {r["task"] for r in ref_rows} == set(TASKS)
    _assert_same_rows(read_jsonl(dp_dir / "samples.jsonl"), ref_rows)

    ref = json.loads((ref_dir / "results.json").read_text())
    got = json.loads((dp_dir / "results.json").read_text())
    assert got["subtasks"] == ref["subtasks"]  # values, seeded bootstrap CIs, n, exclusions
    assert got["groups"] == ref["groups"]
    assert got["run_card"]["extra"]["num_processes"] == 2
    assert ref["run_card"]["extra"]["num_processes"] == 1
    # The engine counters are the two ranks' sums: every request scored once, none resumed.
    assert got["run_card"]["extra"]["engine"]["requests_scored"] == len(ref_keys)

    # A single-process rerun over the 2-process journals resumes everything.
    resumed_out = tmp_path / "resumed"
    shutil.copytree(dp_journals, resumed_out / ".journal" / dp_journals.name)
    again = json.loads(run_benchmark(_spec(phantom, resumed_out)).results.read_text())
    assert again["run_card"]["extra"]["engine"]["requests_scored"] == 0
    assert again["run_card"]["extra"]["requests_resumed"] == len(ref_keys)
    _assert_same_rows(read_jsonl(resumed_out / dp_dir.name / "samples.jsonl"), ref_rows)
    assert again["subtasks"] == ref["subtasks"]


def test_rank_placement_and_refusals(phantom, tmp_path):
    single = DataParallel()
    assert single.journal_path(tmp_path) == tmp_path / "journal.jsonl"
    assert (
        DataParallel(rank=1, world_size=2, local_rank=1).journal_path(tmp_path)
        == tmp_path / "journal.rank1.jsonl"
    )
    rank1 = DataParallel(rank=1, world_size=2, local_rank=1)
    with pytest.raises(UserError, match="device_map"):
        rank1.model_args("chexagent", {"pretrained": "smoke", "device_map": "auto"})
    if not torch.cuda.is_available():
        assert rank1.model_args("chexagent", {"pretrained": "smoke"}) == {"pretrained": "smoke"}
    # lm-eval cannot give a rank zero docs of a task: refuse before loading any model.
    config = dataclasses.replace(_spec(phantom, tmp_path).config, limit=1)
    with pytest.raises(UserError, match=r"at least 2 items per task.*view_classification"):
        rank1.check_shards(config, TASKS)
    single.check_shards(config, TASKS)  # one process needs one doc


# ----- one model over several devices (device_map) ---------------------------------------------
def _engine_outputs(adapter) -> tuple[list, list[str], float]:
    from model_adapters.engine import CheXbenchLM

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(3)]
    options = [" left", " right", " both sides", " no effusion"]
    scored = [
        (f"Where is the effusion? Case {i}.", o, {"visual": [img]})
        for i, img in enumerate(images)
        for o in options
    ]
    prompts = [
        (
            f"Describe the findings. Case {i}.",
            {"until": ["\n"], "max_gen_toks": 8},
            {"visual": [img]},
        )
        for i, img in enumerate(images)
    ]
    lm = CheXbenchLM(adapter, batch_size=2, show_progress=False)
    naive = lm.score_naive(scored[0][0], scored[0][1], [images[0]])
    return lm.loglikelihood(scored), lm.generate_until(prompts), naive[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_model_split_across_devices_scores_like_one_device():
    """The vision side and the first decoder layer run on the GPU, the rest of the decoder and
    the LM head on the CPU: the KV cache then spans two devices and the logits come off the
    second one, which is what a large model sharded over GPUs does to the engine."""
    from accelerate import dispatch_model

    from model_adapters.chexagent import CheXagentAdapter

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    ref = _engine_outputs(CheXagentAdapter(pretrained="smoke", device="cpu", dtype="float32"))

    adapter = CheXagentAdapter(pretrained="smoke", device="cuda:0", dtype="float32")
    n_layers = len(adapter.model.language_model.model.layers)
    placement = {
        "query_tokens": 0,
        "vision_model": 0,
        "qformer": 0,
        "language_projection": 0,
        "language_model.model.embed_tokens": 0,
        "language_model.model.rotary_emb": 0,
        "language_model.model.norm": "cpu",
        "language_model.lm_head": "cpu",
        **{
            f"language_model.model.layers.{i}": 0 if i < n_layers // 2 else "cpu"
            for i in range(n_layers)
        },
    }
    # main_device="cpu": modules placed on the CPU run there (not GPU offload).
    dispatch_model(
        adapter.model, device_map=placement, main_device="cpu", skip_keys="past_key_values"
    )
    text = adapter.model.language_model
    assert text.model.embed_tokens.weight.device.type == "cuda"
    assert text.lm_head.weight.device.type == "cpu"
    assert adapter.device == text.model.embed_tokens.weight.device

    scores, texts, naive = _engine_outputs(adapter)
    assert [s[0] for s in scores] == pytest.approx([s[0] for s in ref[0]], abs=1e-4)
    assert [s.n_tokens for s in scores] == [s.n_tokens for s in ref[0]]
    assert texts == ref[1]
    assert naive == pytest.approx(ref[2], abs=1e-4)
    assert scores[0][0] == pytest.approx(naive, abs=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_map_auto_through_from_pretrained(tmp_path):
    """`device_map="auto"` goes through transformers' loader (one GPU here: all on it)."""
    from helpers.tiny_release import write_tiny_blip2

    from model_adapters.blip2 import Blip2Adapter

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    folder = str(write_tiny_blip2(tmp_path / "blip2"))
    ref = _engine_outputs(Blip2Adapter(pretrained=folder, device="cpu", dtype="float32"))
    adapter = Blip2Adapter(pretrained=folder, device_map="auto", dtype="float32")
    assert adapter.device.type == "cuda"
    scores, texts, _ = _engine_outputs(adapter)
    assert [s[0] for s in scores] == pytest.approx([s[0] for s in ref[0]], abs=1e-4)
    assert texts == ref[1]
