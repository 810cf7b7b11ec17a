"""`chexbench compare RUN_A RUN_B [RUN...]`: is one model really better, and where?

Two runs: per-subtask and per-text-metric deltas with paired bootstrap CIs, exact McNemar /
permutation p-values and Holm correction. Three or more: a rank table with rank intervals.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.commands import args as common
from harness.defaults import BOOTSTRAP_SAMPLES, PERMUTATIONS
from harness.errors import UserError

if TYPE_CHECKING:
    from rich.table import Table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="paired comparison of runs (deltas, CIs, McNemar, Holm) or rank table",
        description="Compare runs on the items they all scored. Two runs: deltas (A - B) with "
        "paired bootstrap CIs, exact McNemar for accuracy, sign-flip permutation "
        "tests for text metrics, Holm-corrected. More runs: ranks with intervals.",
    )
    p.add_argument(
        "runs",
        nargs="+",
        type=Path,
        help="results JSON files (their samples JSONL is read from beside them)",
    )
    common.add_output(
        p, None, "comparison results JSON (default: ./comparison-<id>.json)", type=Path
    )
    common.add_bootstrap(p)
    common.add_seed(p)
    p.add_argument(
        "--permutations",
        type=common.positive_int,
        default=PERMUTATIONS,
        help="sign flips for the permutation test of continuous metrics",
    )
    p.add_argument(
        "--unit",
        choices=("cluster", "item"),
        default="cluster",
        help="resampling unit: the row's cluster_id (patient/study) or the item",
    )
    p.add_argument(
        "--alpha", type=common.probability, default=0.05, help="significance level for the table"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so `chexbench --help` and other commands do not pay for scipy/statsmodels.
    from rich.console import Console

    from harness.data import file_sha256
    from harness.results_io import results_id, write_results
    from harness.results_schema import ModelInfo, Results
    from harness.stats.comparison import compare_pair, rank_runs
    from harness.stats.run_files import analysis_run_card, load_run
    from harness.tables import user_text

    B = args.bootstrap_samples
    if len(args.runs) < 2:
        raise UserError("compare needs at least two runs")
    if B < 100:
        raise UserError(
            f"--bootstrap-samples {B} is too few for a 95% percentile CI "
            f"(use >= 100; default {BOOTSTRAP_SAMPLES})"
        )
    runs = [load_run(p) for p in args.runs]
    settings = {"B": B, "seed": args.seed, "unit": args.unit}
    block: dict[str, Any]
    if len(runs) == 2:
        block = compare_pair(runs[0], runs[1], B, args.seed, args.permutations, args.unit)
        name = f"{runs[0].name} vs {runs[1].name}"
    else:
        block = rank_runs(runs, B, args.seed, args.unit)
        name = "ranking of " + ", ".join(r.name for r in runs)
    sources = {r.source for r in runs}
    source = sources.pop() if len(sources) == 1 and None not in sources else "reproduced"
    run_id = results_id(
        "compare",
        {
            "inputs": [
                file_sha256(p) for r in runs for p in dict.fromkeys((r.path, r.samples_path))
            ],
            **settings,
            "permutations": args.permutations,
        },
    )
    results = Results(
        run_id=run_id,
        kind="comparison",
        source=source,
        model=ModelInfo(name=name),
        run_card=analysis_run_card(
            args.seed,
            settings,
            [r.path for r in runs] + [r.samples_path for r in runs if r.samples_path != r.path],
        ),
        comparison=block,
    )
    out = write_results(results, args.output or Path(f"comparison-{run_id.split('-', 1)[1]}.json"))
    console = Console(width=max(Console().width, 140))  # tables stay readable in logs
    if len(runs) == 2:
        console.print(pair_table(block, args.alpha))
        um = block["unmatched"]
        if um["only_a"] or um["only_b"]:
            console.print(
                f"[yellow]items scored by only one run (left out): "
                f"A {um['only_a']}, B {um['only_b']}[/yellow]"
            )
    else:
        for family, ranking in block["rankings"].items():
            console.print(rank_rich_table(family, ranking))
    console.print(f"wrote {user_text(str(out))}")
    return 0


def pair_table(block: dict[str, Any], alpha: float) -> Table:
    from rich.table import Table

    from harness.tables import user_text

    a, b = user_text(block["run_a"]["name"]), user_text(block["run_b"]["name"])
    table = Table(
        title=f"{a} (A) vs {b} (B): delta = A - B, {block['B']} bootstrap samples, "
        f"seed {block['seed']}, Holm over {block['family_size']} tests"
    )
    for col in ("subtask", "metric", "n", "A", "B", "delta", "95% CI", "test", "p", "p (Holm)"):
        table.add_column(col, justify="left" if col in ("subtask", "metric", "test") else "right")
    for r in block["rows"]:
        scale, fmt = (100, "{:.1f}") if r["metric"] == "acc_chexbench" else (1, "{:.3f}")
        style = (
            "bold green"
            if r["p_holm"] < alpha and r["delta"] > 0
            else ("bold red" if r["p_holm"] < alpha else None)
        )
        table.add_row(
            user_text(r["subtask"].removeprefix("chexbench_")),
            user_text(r["metric"]),
            str(r["n"]),
            fmt.format(scale * r["a"]),
            fmt.format(scale * r["b"]),
            fmt.format(scale * r["delta"]),
            f"[{fmt.format(scale * r['ci'][0])}, {fmt.format(scale * r['ci'][1])}]",
            r["test"].split("/")[0],
            f"{r['p']:.3g}",
            f"{r['p_holm']:.3g}",
            style=style,
        )
    return table


def rank_rich_table(family: str, ranking: dict[str, Any]) -> Table:
    from rich.table import Table

    from harness.tables import user_text

    better = "higher" if ranking["higher_is_better"] else "lower"
    table = Table(
        title=f"{user_text(family)}: mean over {len(ranking['members'])} subtask(s), "
        f"{better} is better; rank interval = 95% bootstrap"
    )
    for col in ("rank", "run", "score", "95% CI", "rank interval"):
        table.add_column(col, justify="left" if col == "run" else "right")
    pct = family.startswith("perception")
    fmt = (lambda x: f"{100 * x:.1f}") if pct else (lambda x: f"{x:.3f}")
    for r in ranking["rows"]:
        lo, hi = r["rank_ci"]
        table.add_row(
            str(r["rank"]),
            user_text(r["run"]),
            fmt(r["score"]),
            f"[{fmt(r['ci'][0])}, {fmt(r['ci'][1])}]",
            str(lo) if lo == hi else f"{lo}-{hi}",
        )
    return table
