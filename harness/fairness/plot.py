"""The Figure 6-style picture: per-attribute panels of subgroup F1 (mean +- std)."""

from __future__ import annotations

import io
from pathlib import Path

from harness.fairness.analysis import FairnessResult
from harness.io import atomic_write_bytes


def plot_figure6(result: FairnessResult, path: str | Path, title: str) -> Path:
    """One panel per attribute, a bar per subgroup with its bootstrap std as the error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attrs = [a for a in result.attributes.values() if a.groups]
    fig, axes = plt.subplots(
        1, max(1, len(attrs)), figsize=(3.2 * max(1, len(attrs)), 3.4), sharey=True, squeeze=False
    )
    colors = plt.get_cmap("tab10").colors
    for ax, attr in zip(axes[0], attrs, strict=False):
        names = list(attr.groups)
        means = [attr.groups[g].f1_mean for g in names]
        stds = [attr.groups[g].f1_std for g in names]
        ax.bar(
            range(len(names)),
            means,
            yerr=stds,
            capsize=4,
            color=[colors[i % len(colors)] for i in range(len(names))],
            alpha=0.85,
        )
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([f"{g}\n(n={attr.groups[g].n_subjects})" for g in names], fontsize=8)
        gap = attr.gap
        sub = (
            ""
            if gap is None
            else (f"\ngap {gap['value']:.2f} [{gap['ci'][0]:.2f}, {gap['ci'][1]:.2f}]")
        )
        ax.set_title(f"{attr.name.capitalize()}{sub}", fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("F1 (balanced bootstrap, mean ± std)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
