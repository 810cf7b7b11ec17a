"""The fairness analysis of one run, as a library: settings in, a results file out.

`chexbench fairness` and `chexbench demo` both call `fairness_report`; the settings default to
the paper's section 7 protocol (cardiomegaly Yes/No on frontal images, sex / race / age, 2000
balanced bootstrap samples).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.defaults import SEED
from harness.errors import UserError
from harness.fairness.protocol import (
    MIN_SUBJECTS,
    PAPER_ATTRIBUTES,
    PAPER_B,
    PAPER_GROUPS,
    PAPER_POSITIVE,
    PAPER_QUESTION,
)

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

    from harness.fairness.analysis import FairnessResult


@dataclass(frozen=True)
class FairnessSettings:
    attributes: tuple[str, ...] = PAPER_ATTRIBUTES
    groups: tuple[str, ...] = ()  # "ATTR=G1,G2" overrides
    bins: tuple[str, ...] = ()  # "ATTR=E1,E2" numeric bin edges
    id_column: str | None = None
    question: str | None = None  # regex; None: the paper's question
    task: str | None = None
    positive: str = PAPER_POSITIVE
    all_views: bool = False
    bootstrap_samples: int = PAPER_B
    seed: int = SEED
    per_stratum: str = "min"
    min_subjects: int = MIN_SUBJECTS

    @property
    def is_paper(self) -> bool:
        return (
            self.question is None
            and self.task is None
            and self.positive == PAPER_POSITIVE
            and tuple(self.attributes) == PAPER_ATTRIBUTES
            and not self.groups
            and not self.bins
            and not self.all_views
            and self.bootstrap_samples == PAPER_B
        )


@dataclass
class FairnessOutcome:
    path: Path  # fairness.json
    result: FairnessResult
    model_name: str
    excluded: dict[str, int] = field(default_factory=dict)


def fairness_report(
    run: Path, demographics: Path, output: Path, settings: FairnessSettings = FairnessSettings()
) -> FairnessOutcome:
    """Analyse `run` against `demographics`; writes fairness.json, .csv and .png to `output`."""
    from harness.data import file_sha256
    from harness.fairness.analysis import analyse, to_block
    from harness.fairness.demographics import load_demographics
    from harness.fairness.items import question_matcher, select_items
    from harness.fairness.plot import plot_figure6
    from harness.io import atomic_write_text
    from harness.results_io import results_id, write_results
    from harness.results_schema import ModelInfo, Results
    from harness.stats.run_files import analysis_run_card, load_run

    B = settings.bootstrap_samples
    if B < 100:
        raise UserError(f"--bootstrap-samples {B} is too few (use >= 100; paper: 2000)")
    attributes = list(settings.attributes)
    bins = {
        k: [float(e) for e in v.split(",")]
        for k, v in _pairs(settings.bins, "--bins", numeric=True).items()
    }
    # Custom bins make new group labels, so the paper's age groups no longer apply.
    groups = {a: list(PAPER_GROUPS[a]) for a in attributes if a in PAPER_GROUPS and a not in bins}
    groups.update({k: v.split(",") for k, v in _pairs(settings.groups, "--groups").items()})
    run_files = load_run(run)
    demo = load_demographics(demographics, attributes, settings.id_column, bins)
    items = select_items(
        run_files.rows,
        demo,
        attributes,
        where=str(run_files.samples_path),
        question=question_matcher(None, settings.question),
        positive=settings.positive,
        frontal_only=not settings.all_views,
        task=settings.task,
    )
    table = items.table
    result = analyse(
        table,
        attributes,
        groups,
        B=B,
        seed=settings.seed,
        per_stratum=settings.per_stratum,
        min_subjects=settings.min_subjects,
    )
    if items.unparseable:
        result.warnings.append(
            f"{items.unparseable} prediction(s) missing or unparseable: counted as wrong"
        )
    task = settings.task or (settings.question or PAPER_QUESTION)
    block = to_block(
        result,
        task=task,
        protocol="paper-section-7" if settings.is_paper else "custom",
        positive=settings.positive,
        n_items=len(table),
        n_subjects=int(table["subject"].nunique()),
        excluded=dict(items.excluded),
        unparseable=items.unparseable,
    )
    recorded = {
        "B": B,
        "seed": settings.seed,
        "unit": "item (balanced strata)",
        "per_stratum": settings.per_stratum,
    }
    model = (
        ModelInfo(**run_files.results["model"])
        if run_files.results
        else ModelInfo(name=run_files.name)
    )
    results = Results(
        run_id=results_id(  # every setting and the inputs' content: same id, same analysis
            "fairness",
            {
                "settings": asdict(settings),
                "inputs": [
                    file_sha256(p)
                    for p in dict.fromkeys((run_files.path, run_files.samples_path, demographics))
                ],
            },
        ),
        kind="fairness",
        source=run_files.source or "reproduced",
        model=model,
        run_card=analysis_run_card(
            settings.seed, recorded, [run_files.path, run_files.samples_path, demographics]
        ),
        fairness=block,
    )
    path = write_results(results, output / "fairness.json")
    atomic_write_text(output / "fairness.csv", group_frame(result).to_csv(index=False))
    plot_figure6(
        result,
        output / "fairness.png",
        f"{model.name}: {task} (F1, {B} balanced bootstrap samples)",
    )
    return FairnessOutcome(path, result, model.name, dict(items.excluded))


def group_frame(result: FairnessResult) -> pd.DataFrame:
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for name, attr in result.attributes.items():
        for g, s in attr.groups.items():
            rows.append(
                {
                    "attribute": name,
                    "group": g,
                    "f1_mean": s.f1_mean,
                    "f1_std": s.f1_std,
                    "f1_ci_low": s.f1_ci[0],
                    "f1_ci_high": s.f1_ci[1],
                    "f1_observed": s.f1_observed,
                    "n_subjects": s.n_subjects,
                    "n_items": s.n_items,
                    "n_positive": s.n_positive,
                    "n_negative": s.n_negative,
                    "per_stratum": attr.per_stratum,
                }
            )
    return pd.DataFrame(rows)


def rich_table(result: FairnessResult, model: str) -> Table:
    """Every name in it (model, attributes, groups) comes from files, so goes through
    `user_text`."""
    from rich.table import Table

    from harness.tables import user_text

    table = Table(
        title=f"{user_text(model)}: subgroup F1, balanced bootstrap (B={result.B}, seed {result.seed})"
    )
    for col in (
        "attribute",
        "group",
        "F1 mean ± std",
        "95% CI",
        "subjects",
        "items (+/-)",
        "gap best-worst [95% CI]",
    ):
        table.add_column(col, justify="left" if col in ("attribute", "group") else "right")
    for name, attr in result.attributes.items():
        gap = attr.gap
        gap_text = (
            "" if gap is None else (f"{gap['value']:.3f} [{gap['ci'][0]:.3f}, {gap['ci'][1]:.3f}]")
        )
        for i, (g, s) in enumerate(attr.groups.items()):
            few = s.n_subjects < MIN_SUBJECTS
            table.add_row(
                user_text(name) if i == 0 else "",
                user_text(g),
                f"{s.f1_mean:.3f} ± {s.f1_std:.3f}",
                f"[{s.f1_ci[0]:.3f}, {s.f1_ci[1]:.3f}]",
                f"[yellow]{s.n_subjects}[/yellow]" if few else str(s.n_subjects),
                f"{s.n_items} ({s.n_positive}/{s.n_negative})",
                gap_text if i == 0 else "",
            )
        extra = {**({"unknown": attr.unknown} if attr.unknown else {}), **attr.not_analysed}
        if extra:
            table.add_row(
                "",
                "[dim]not analysed[/dim]",
                "[dim]" + ", ".join(f"{user_text(k)}: {v}" for k, v in extra.items()) + "[/dim]",
                "",
                "",
                "",
                "",
            )
    return table


def _pairs(specs: tuple[str, ...] | list[str], flag: str, numeric: bool = False) -> dict[str, str]:
    out = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"{flag} {spec!r}: expected ATTR=V1,V2")
        if numeric:
            try:
                [float(e) for e in value.split(",")]
            except ValueError as exc:
                raise UserError(f"{flag} {spec!r}: edges must be numbers") from exc
        out[key.strip()] = value.strip()
    return out
