"""Printed tables shaped like the paper's (Table 2 for perception, Tables 3/4 for text).

Every string that comes from a results file (model names, metric names, reasons) goes
through `user_text`: Rich would otherwise read "[/bold]" in a model name as markup (and crash)
or "[link=...]" as a live link, and a terminal would obey an ANSI escape in it.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.safe_text import printable
from harness.taxonomy import DATASET_BY_SLUG, PERCEPTION_SUBTASKS, TASK_BY_SLUG


def wide_console() -> Console:
    """A console for tables: the terminal's width, or 160 columns in logs and pipes (rich would
    otherwise squeeze tables into 80)."""
    probe = Console()
    return probe if probe.is_terminal else Console(width=160)


def user_text(text: Any) -> str:
    """Text from a file, safe inside Rich markup: control characters shown as escapes,
    square brackets escaped."""
    return escape(printable(text))


def fmt_metric(m: dict[str, Any] | None, scale: float = 100.0) -> str:
    """ "57.1 [52.0, 61.8]" (percent with its 95% CI), or why it is missing."""
    if not m:
        return "—"
    if m.get("value") is None:
        return "n/a"
    text = f"{m['value'] * scale:.1f}"
    if m.get("ci"):
        lo, hi = m["ci"]
        text += f" [{lo * scale:.1f}, {hi * scale:.1f}]"
    return text


def perception_table(results: dict[str, Any], title: str | None = None) -> Table:
    model = user_text(results["model"]["name"])
    table = Table(title=title or f"Image perception — {model} (accuracy %, 95% CI)")
    for col in ("Task", "Dataset", "n", "acc_chexbench", "acc", "acc_norm"):
        table.add_column(col, justify="left" if col in ("Task", "Dataset") else "right")
    last_task = None
    for sub in PERCEPTION_SUBTASKS:
        res = results["subtasks"].get(sub.name)
        if res is None:
            continue
        task_title = sub.task.title if sub.task.slug != last_task else ""
        last_task = sub.task.slug
        table.add_row(
            task_title,
            sub.dataset.title,
            str(res["n"]),
            *(fmt_metric(res["metrics"].get(r)) for r in ("acc_chexbench", "acc", "acc_norm")),
        )
    for name, group in results.get("groups", {}).items():
        slug = name.removeprefix("chexbench_")
        label = TASK_BY_SLUG[slug].title if slug in TASK_BY_SLUG else "Perception (mean of tasks)"
        table.add_row(
            f"[bold]{label}[/bold]",
            "mean",
            "",
            *(fmt_metric(group["metrics"].get(r)) for r in ("acc_chexbench", "acc", "acc_norm")),
        )
    return table


def text_table(results: dict[str, Any]) -> Table | None:
    """Metrics as rows and the text tasks as columns (Tables 3 and 4 side by side)."""
    text = {n: r for n, r in results["subtasks"].items() if r["kind"] == "text"}
    if not text:
        return None
    names = sorted({m for r in text.values() for m in r["metrics"]})
    table = Table(title=f"Text tasks — {user_text(results['model']['name'])} (score x100, 95% CI)")
    table.add_column("Metric")
    for r in text.values():
        ds = (
            DATASET_BY_SLUG[r["dataset"]].title if r["dataset"] in DATASET_BY_SLUG else r["dataset"]
        )
        task = TASK_BY_SLUG[r["task"]].title if r["task"] in TASK_BY_SLUG else r["task"]
        table.add_column(f"{user_text(task)}\n{user_text(ds)}, n={r['n']}", justify="right")
    for m in names:
        cells = []
        for r in text.values():
            cell = fmt_metric(r["metrics"].get(m))
            cells.append(f"[bold]{cell}[/bold]" if m == r.get("headline") else cell)
        table.add_row(user_text(m), *cells)
    return table


def print_results(results: dict[str, Any], console: Console | None = None) -> None:
    console = console or wide_console()
    if results["model"].get("smoke"):
        console.print("[yellow]Smoke model: random weights, its accuracy is chance by design.[/]")
    if results.get("run_card", {}) and results["run_card"].get("synthetic"):
        console.print(
            "[yellow]Synthetic phantom data: these numbers say nothing about real radiographs.[/]"
        )
    if any(r["kind"] == "perception" for r in results["subtasks"].values()):
        console.print(perception_table(results))
    table = text_table(results)
    if table is not None:
        console.print(table)
        reasons = {
            m["unavailable"]
            for r in results["subtasks"].values()
            for m in r["metrics"].values()
            if m.get("value") is None and m.get("unavailable")
        }
        for reason in sorted(reasons):
            console.print(f"[dim]n/a: {user_text(reason)}[/]")
    excluded = {n: r["excluded_reasons"] for n, r in results["subtasks"].items() if r["excluded"]}
    if excluded:
        console.print(f"Excluded items: {user_text(excluded)}")
