"""Figure 4 of the paper: one row per task, one column per attribute, scores on -10..10."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.reader_study.design import ATTRIBUTES, TASK_TITLES


def write_figure(tasks: dict[str, dict[str, Any]], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    from harness.io import atomic_write_bytes

    names = list(tasks)
    fig, axes = plt.subplots(
        len(names),
        len(ATTRIBUTES),
        figsize=(4 * len(ATTRIBUTES), 1.9 * len(names) + 0.9),
        squeeze=False,
        sharex=True,
    )
    for i, task in enumerate(names):
        t = tasks[task]
        x_name, y_name = t["x"], t["y"]
        for j, attr in enumerate(ATTRIBUTES):
            ax = axes[i][j]
            ax.axvspan(-10, 0, color="#d9e6f2", zorder=0)
            ax.axvspan(0, 10, color="#f6e2d3", zorder=0)
            ax.axvline(0, color="#555", lw=0.8)
            for per in t["by_reader"].values():
                v = per[attr]["value"]
                if v is not None:
                    ax.plot(v, 0.45, "o", color="#777", ms=4, alpha=0.7, zorder=2)
            m = t["attributes"][attr]
            if m["value"] is not None:
                lo, hi = m["ci"] or (m["value"], m["value"])
                ax.errorbar(
                    m["value"],
                    0,
                    xerr=[[m["value"] - lo], [hi - m["value"]]],
                    fmt="s",
                    color="#b2182b",
                    capsize=4,
                    zorder=3,
                )
                ax.annotate(
                    f"{m['value']:+.1f}",
                    (m["value"], 0),
                    textcoords="offset points",
                    xytext=(0, -14),
                    ha="center",
                    fontsize=8,
                )
            ax.set_xlim(-10.5, 10.5)
            ax.set_ylim(-0.6, 0.9)
            ax.set_yticks([])
            ax.set_xticks([-10, -5, 0, 5, 10])
            if i == 0:
                ax.set_title(attr.capitalize())
            if j == 0:
                ax.set_ylabel(TASK_TITLES.get(task, task), rotation=0, ha="right", va="center")
            if i == len(names) - 1:
                ax.set_xticklabels(
                    ["-10\nsignif.", "-5\nslightly", "0\nneither", "+5\nslightly", "+10\nsignif."],
                    fontsize=7,
                )
                ax.set_xlabel(f"\u2190 {y_name}        {x_name} \u2192", fontsize=8)
    fig.suptitle(
        "Reader study: mean preference (square: two-way bootstrap 95% CI; dots: readers)",
        fontsize=10,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
