"""The Figure 3-style stacked bar chart: for each opponent, how often A wins, ties, loses."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from harness.io import atomic_write_bytes

COLOURS = {"win": "#2e7d32", "tie": "#9e9e9e", "loss": "#c62828"}


def write_chart(pairs: list[dict[str, Any]], judge_model: str, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{p['model_a']}\nvs {p['model_b']}\n(n={p['n']})" for p in pairs]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.8 * len(pairs) + 1.5), 4.5), dpi=150)
    bottoms = [0.0] * len(pairs)
    same_a = len({p["model_a"] for p in pairs}) == 1
    legend = {
        "win": f"{pairs[0]['model_a']} better" if same_a else "first model better",
        "tie": "tie (incl. position flips)",
        "loss": "opponent better" if same_a else "second model better",
    }
    for outcome in ("win", "tie", "loss"):
        values = [100 * (p[outcome]["value"] or 0.0) for p in pairs]
        bars = ax.bar(
            labels, values, bottom=bottoms, color=COLOURS[outcome], width=0.6, label=legend[outcome]
        )
        for bar, v, b in zip(bars, values, bottoms, strict=True):
            if v >= 4:
                ax.text(
                    bar.get_x() + bar.get_width() / 2,
                    b + v / 2,
                    f"{v:.0f}%",
                    ha="center",
                    va="center",
                    color="white",
                    fontsize=9,
                )
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of items")
    ax.set_title(f"Pairwise judging by {judge_model}", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
