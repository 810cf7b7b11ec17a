"""`chexbench judge` end to end: inputs -> plan -> (dry run | calls) -> results, chart, ledger.

Nothing is written until every planned judgment exists; until then the cache holds all
finished work and rerunning the same command resumes where the last run stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness import __version__
from harness.data import file_sha256
from harness.defaults import BOOTSTRAP_SAMPLES, SEED
from harness.errors import UserError
from harness.judge.cache import CACHE_FILE, Judgment, default_cache_dir, judgment_from
from harness.judge.chart import write_chart
from harness.judge.pairs import (
    REFERENCE_NAME,
    RunSamples,
    against_reference,
    join_runs,
    load_run_samples,
)
from harness.judge.prompt import load_template
from harness.judge.runner import JudgeSettings, PlannedPair, plan_requests, run_requests
from harness.openai_compat.cache import RequestCache, now_iso
from harness.openai_compat.client import FatalAPIError, OpenAICompatClient, RetryPolicy
from harness.openai_compat.cost import estimate, ledger_totals, resolve_prices
from harness.openai_compat.endpoint import endpoint_host, redact_argv, resolve_base_url
from harness.openai_compat.secrets import read_api_key
from harness.results_io import results_id, write_results
from harness.results_schema import ModelInfo, Results, RunCard
from harness.run_card import git_commit, package_versions

log = logging.getLogger("chexbench.judge")


@dataclass
class JudgeConfig:
    runs: list[Path]
    task: str
    against_reference: bool = False
    names: list[str] | None = None
    judge_model: str = "gpt-4-0613"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    seed: int = 0
    max_tokens: int = 1024
    concurrency: int = 16
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    cache_dir: Path | None = None
    template: Path | None = None
    output: Path | None = None
    max_items: int | None = None
    sample_seed: int = 0
    bootstrap_b: int = BOOTSTRAP_SAMPLES
    bootstrap_seed: int = SEED
    price_in: float | None = None
    price_out: float | None = None
    est_output_tokens: int = 300
    dry_run: bool = False
    progress: bool = True
    command: list[str] | None = None


def _load_runs(cfg: JudgeConfig) -> list[RunSamples]:
    if cfg.names and len(cfg.names) != len(cfg.runs):
        raise UserError(f"--names gives {len(cfg.names)} names for {len(cfg.runs)} runs")
    runs = [
        load_run_samples(p, cfg.task, cfg.names[i] if cfg.names else None)
        for i, p in enumerate(cfg.runs)
    ]
    seen: dict[str, Path] = {}
    for r in runs:
        if r.name in seen or r.name == REFERENCE_NAME:
            raise UserError(
                f"two inputs are both named {r.name!r} ({seen.get(r.name)} and "
                f"{r.path}); give distinct --names"
            )
        seen[r.name] = r.path
    return runs


def _subsample(items_by_pair: list[PlannedPair], cfg: JudgeConfig) -> None:
    """Keep the same random `max_items` item ids in every pair (seeded, recorded)."""
    if cfg.max_items is None:
        return
    common = sorted(set.intersection(*[{i.item_id for i in p.items} for p in items_by_pair]))
    if cfg.max_items < len(common):
        rng = np.random.default_rng(cfg.sample_seed)
        keep = set(rng.choice(np.array(common, dtype=object), cfg.max_items, replace=False))
    else:
        keep = set(common)
    for p in items_by_pair:
        p.items = [i for i in p.items if i.item_id in keep]


def plan_pairs(cfg: JudgeConfig) -> tuple[list[RunSamples], list[PlannedPair]]:
    """The first run against each other run (Figure 3), or every run against the references."""
    runs = _load_runs(cfg)
    pairs: list[PlannedPair] = []
    if cfg.against_reference:
        for r in runs:
            pairs.append(
                PlannedPair(r.name, REFERENCE_NAME, against_reference(r), dropped=dict(r.excluded))
            )
    else:
        if len(runs) < 2:
            raise UserError(
                "--runs needs at least two samples files (or use --run FILE --against-reference)"
            )
        a = runs[0]
        for b in runs[1:]:
            items, only = join_runs(a, b)
            dropped = {
                **{f"{a.name}:{k}": v for k, v in a.excluded.items()},
                **{f"{b.name}:{k}": v for k, v in b.excluded.items()},
                **only,
            }
            pairs.append(PlannedPair(a.name, b.name, items, dropped=dropped))
    _subsample(pairs, cfg)
    return runs, pairs


def _run_id(cfg: JudgeConfig, template_sha: str, runs: list[RunSamples]) -> str:
    return results_id(
        "judge",
        {
            "judge_model": cfg.judge_model,
            "template": template_sha,
            "seed": cfg.seed,
            "max_tokens": cfg.max_tokens,
            "task": cfg.task,
            "against_reference": cfg.against_reference,
            "inputs": [(r.name, file_sha256(r.path)) for r in runs],
            "max_items": cfg.max_items,
            "sample_seed": cfg.sample_seed,
            "bootstrap": [cfg.bootstrap_b, cfg.bootstrap_seed],
        },
    )


def _print_dry_run(
    cfg: JudgeConfig, base_url: str, todo_prompts: list[str], cached: int, planned: int
) -> None:
    prices = resolve_prices(cfg.judge_model, cfg.price_in, cfg.price_out)
    est = estimate(todo_prompts, cached, cfg.judge_model, cfg.est_output_tokens, prices)
    print(f"judge model: {cfg.judge_model} at {endpoint_host(base_url)}")
    print(f"planned judgments: {planned} (items x 2 orders, identical prompts asked once)")
    print(f"cached: {cached}")
    print(f"calls to make: {est.calls}")
    print(
        f"estimated tokens: {est.prompt_tokens} in ({est.method}), "
        f"{est.completion_tokens} out ({cfg.est_output_tokens}/call assumed)"
    )
    if est.cost_usd is None:
        print(
            f"estimated cost: unknown (no list price for {cfg.judge_model!r}; "
            "pass --price-in/--price-out in USD per 1M tokens)"
        )
    else:
        print(
            f"estimated cost: ${est.cost_usd:.4f} at ${prices.input_per_1m}/"
            f"${prices.output_per_1m} per 1M tokens in/out"
        )


def run_judge(cfg: JudgeConfig) -> int:
    started = time.perf_counter()
    # The endpoint first: a URL carrying credentials is refused before anything is read.
    base_url = resolve_base_url(cfg.base_url)
    template = load_template(cfg.template)
    runs, pairs = plan_pairs(cfg)
    settings = JudgeSettings(cfg.judge_model, cfg.seed, cfg.max_tokens, base_url)
    requests = plan_requests(pairs, template, settings)
    cache_path = (
        Path(cfg.cache_dir or os.environ.get("CHEXBENCH_JUDGE_CACHE") or default_cache_dir())
        / CACHE_FILE
    )
    planned = sum(2 * len(p.items) for p in pairs)
    resolve_prices(cfg.judge_model, cfg.price_in, cfg.price_out)  # bad prices fail now

    # Look before touching anything: a dry run or a missing key must leave no trace.
    peek = RequestCache(cache_path, read_only=True)
    cached = {k: judgment_from(e) for k, e in peek.get_many(list(requests)).items()}
    peek.close()
    todo = [r for k, r in requests.items() if k not in cached]
    if cfg.dry_run:
        _print_dry_run(
            cfg, base_url, [r.body["messages"][0]["content"] for r in todo], len(cached), planned
        )
        return 0
    api_key = read_api_key(cfg.api_key_env) if todo else None
    if todo and not api_key:
        raise UserError(
            f"the judge API key is read only from the environment: set {cfg.api_key_env} "
            "(or name another variable with --api-key-env)"
        )

    # Unique per run (two runs of one process within a second must not share it).
    invocation = f"{now_iso()}#{os.getpid()}#{uuid.uuid4().hex[:8]}"
    client = None
    failed: dict[str, str] = {}
    new: dict[str, Judgment] = {}
    if todo:
        cache = RequestCache(cache_path)
        print(
            f"judging: {len(todo)} calls to make, {len(cached)} cached (cache: {cache.path})",
            file=sys.stderr,
        )
        client = OpenAICompatClient(base_url, api_key, cfg.policy)

        async def _go():
            try:
                return await run_requests(
                    todo, client, cache, cfg.concurrency, invocation, cfg.progress
                )
            finally:
                await client.close()

        try:
            outcome = asyncio.run(_go())
        except FatalAPIError as exc:
            raise UserError(f"{exc} (finished judgments are kept in {cache.path})") from None
        finally:
            cache.close()
        new = {k: judgment_from(e) for k, e in outcome.paid.items()}
        cached.update({k: judgment_from(e) for k, e in outcome.by_others.items()})
        failed = outcome.failed
    judgments = {**cached, **new}

    retries = dict(client.retries) if client else {}
    transport = client.transport if client else None  # None: nothing was asked this time
    if retries:
        print(
            "retries: " + ", ".join(f"{k} x{v}" for k, v in sorted(retries.items())),
            file=sys.stderr,
        )
    if failed:
        first = next(iter(failed.values()))
        print(
            f"error: {len(failed)} of {len(requests)} judgments failed after retries "
            f"(e.g. {first}); the {len(judgments)} finished ones are saved in {cache_path}: "
            "rerun the same command to resume",
            file=sys.stderr,
        )
        return 1

    ledger = RequestCache(cache_path, read_only=True)
    calls = ledger.calls_for(list(requests))
    ledger.close()
    return _write_outputs(
        cfg,
        base_url,
        template,
        requests,
        runs,
        pairs,
        judgments,
        calls,
        retries,
        transport,
        invocation,
        time.perf_counter() - started,
    )


def _write_outputs(
    cfg,
    base_url,
    template,
    requests,
    runs,
    pairs,
    judgments,
    calls,
    retries,
    transport,
    invocation,
    wall_s,
) -> int:
    # Imported here: the statistics stack is slow to import and only needed at the end.
    from harness.judge.outcome import pair_outcomes, pair_summary

    run_id = _run_id(cfg, template.sha256, runs)
    out_json = Path(cfg.output) if cfg.output else Path("results") / "judge" / f"{run_id}.json"
    stem = out_json.name.removesuffix(".json")
    samples_path = out_json.with_name(f"{stem}.samples.jsonl")
    ledger_path = out_json.with_name(f"{stem}.ledger.jsonl")
    chart_path = out_json.with_name(f"{stem}.png")

    summaries, sample_rows = [], []
    for pair in pairs:
        outcomes = pair_outcomes(pair, judgments)
        summaries.append(
            pair_summary(pair, outcomes, cfg.task, cfg.bootstrap_b, cfg.bootstrap_seed)
        )
        by_id = {o.item_id: o for o in outcomes}
        for item, k_ab, k_ba in zip(pair.items, pair.keys_ab, pair.keys_ba, strict=True):
            o = by_id[item.item_id]
            sample_rows.append(
                {
                    "task": cfg.task,
                    "item_id": item.item_id,
                    "cluster_id": item.cluster_id,
                    "model_a": pair.model_a,
                    "model_b": pair.model_b,
                    "verdict_ab": o.verdict_ab,
                    "verdict_ba": o.verdict_ba,
                    "outcome": o.outcome,
                    "position_flip": o.flipped,
                    "response_ab": judgments[k_ab].response,
                    "response_ba": judgments[k_ba].response,
                }
            )

    prices = resolve_prices(cfg.judge_model, cfg.price_in, cfg.price_out)
    # Every paid call behind these results, from the shared ledger: also calls whose answer
    # is not the one kept (a second payment after a lost claim, invalid usage).
    kept = {j.call.id for j in judgments.values()}
    ledger_rows = [
        {
            "call_id": c.id,
            "key": c.key,
            "prompt_sha256": requests[c.key].meta["prompt_sha256"],
            "judge_model": c.model,
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "usage_reported": c.usage_reported,
            "cost_usd": round(prices.cost(c.prompt_tokens, c.completion_tokens), 8)
            if prices and c.prompt_tokens is not None
            else None,
            "attempts": c.attempts,
            "latency_s": c.latency_s,
            "created_at": c.created_at,
            "invocation": c.invocation,
            "this_invocation": c.invocation == invocation,
            "answer_used": c.id in kept,
            "note": c.note,
        }
        for c in calls
    ]
    mine = [c for c in calls if c.invocation == invocation]

    clusters_everywhere = all(i.cluster_id for p in pairs for i in p.items)
    judge_block: dict[str, Any] = {
        "judge_model": cfg.judge_model,
        "base_url_host": endpoint_host(base_url),
        "template_sha256": template.sha256,
        "template_source": template.source,
        "seed": cfg.seed,
        "temperature": 0,
        "max_tokens": cfg.max_tokens,
        "task": cfg.task,
        "against_reference": cfg.against_reference,
        "inputs": [
            {
                "name": r.name,
                "file": str(r.path),
                "sha256": file_sha256(r.path),
                "excluded": r.excluded,
            }
            for r in runs
        ],
        "sampling": {"max_items": cfg.max_items, "seed": cfg.sample_seed},
        "aggregation": "both orders agree -> that verdict; orders disagree -> tie "
        "(position flip); an unparseable order -> item left out and counted",
        "pairs": summaries,
        "concurrency": cfg.concurrency,
        "retry_policy": cfg.policy.as_dict(),
        "retries": retries,
        "http_transport": transport,
        "cost": {
            "token_source": "usage reported by the server, per call",
            "prices_per_1m": (
                {"input": prices.input_per_1m, "output": prices.output_per_1m} if prices else None
            ),
            "all_judgments": ledger_totals(calls, prices),
            "this_invocation": ledger_totals(mine, prices),
            "cached_judgments": sum(
                1 for j in judgments.values() if j.call.invocation != invocation
            ),
        },
        "ledger_file": ledger_path.name,
        "chart_file": chart_path.name,
    }
    results = Results(
        run_id=run_id,
        kind="judge",
        source="reproduced",
        model=ModelInfo(name=pairs[0].model_a),
        run_card=RunCard(
            harness_version=__version__,
            harness_commit=git_commit(),
            packages=package_versions(),
            command=redact_argv(cfg.command),
            created_at=now_iso(),
            wall_time_s=round(wall_s, 3),
            seed=cfg.seed,
            bootstrap={
                "B": cfg.bootstrap_b,
                "seed": cfg.bootstrap_seed,
                "unit": "cluster" if clusters_everywhere else "item",
            },
            extra={"judge_model": cfg.judge_model, "template_sha256": template.sha256},
        ),
        samples_file=samples_path.name,
        judge=judge_block,
    )
    write_chart(summaries, cfg.judge_model, chart_path)
    write_results(results, out_json, {samples_path: sample_rows, ledger_path: ledger_rows})
    for s in summaries:
        print(
            f"{s['model_a']} vs {s['model_b']} (n={s['n']}): "
            f"win {s['win']['value']:.3f}  tie {s['tie']['value']:.3f}  "
            f"loss {s['loss']['value']:.3f}  position flips "
            f"{s['position_flip_rate']['value']:.3f}  unparseable items "
            f"{s['unparseable']['items']}"
            if s["n"]
            else f"{s['model_a']} vs {s['model_b']}: no parseable judgments"
        )
    print(f"wrote {out_json} (+ {samples_path.name}, {ledger_path.name}, {chart_path.name})")
    return 0
