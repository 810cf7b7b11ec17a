"""Plotly figures for the leaderboard. Each takes a tidy frame from `leaderboard.tables`.

Plotly renders a subset of HTML in every text it draws (trace names, axis categories,
titles, hover text: `<a href>` becomes a live link), so every string from a results file goes
through `_esc` (HTML-escaped; plotly shows the entities as the characters), and names reach
hover text as data (`%{fullData.name}`), never as template text.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from harness.safe_text import printable
from leaderboard.loader import PROVENANCE_HELP
from leaderboard.provenance import FLAG_HELP

OUTCOME_COLORS = {"win": "#2e7d32", "tie": "#9e9e9e", "loss": "#c62828"}
PALETTE = px.colors.qualitative.Safe + px.colors.qualitative.Pastel
# No template: the page renders with Streamlit's plotly theme, and validating a template per
# figure costs more than building the figure.
_LAYOUT = dict(
    font=dict(size=13),
    margin=dict(l=10, r=10, t=50, b=10),
    legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
)


def _esc(text: object) -> str:
    return html.escape(printable(text), quote=False)


def _esc_all(values: pd.Series) -> list[str]:
    return [_esc(v) for v in values]


def _ci_text(lo: float, hi: float) -> str:
    return "no CI" if np.isnan(lo) else f"95% CI {lo * 100:.1f}–{hi * 100:.1f}"


def task_bars(long: pd.DataFrame, task_title: str, metric: str) -> go.Figure:
    """One task: datasets on the x axis, one bar per model, 95% CI error bars where known."""
    frame = long[long["Task"] == task_title]
    traces = []
    for i, (label, part) in enumerate(frame.groupby("label", sort=False)):
        pct = part["value"] * 100
        traces.append(
            go.Bar(
                x=_esc_all(part["Dataset"]),
                y=pct,
                name=_esc(label),
                marker_color=PALETTE[i % len(PALETTE)],
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=(part["hi"] * 100 - pct).fillna(0),
                    arrayminus=(pct - part["lo"] * 100).fillna(0),
                    thickness=1.2,
                ),
                customdata=np.column_stack(
                    [
                        [_ci_text(lo, hi) for lo, hi in zip(part["lo"], part["hi"], strict=True)],
                        part["n"].astype(str),
                    ]
                ),
                hovertemplate="%{x}: %{y:.1f}<br>%{customdata[0]}<br>n=%{customdata[1]}"
                "<extra>%{fullData.name}</extra>",
            )
        )
    return go.Figure(
        traces,
        layout=dict(
            **_LAYOUT,
            barmode="group",
            title=_esc(f"{task_title} · {metric}"),
            yaxis=dict(title=_esc(f"{metric} (%)"), range=[0, 100]),
            height=460,
        ),
    )


def judge_bars(frame: pd.DataFrame) -> go.Figure:
    """Figure 3: stacked win / tie / loss shares per model pair, CI in the hover."""
    data = frame.assign(
        row=[_esc(f"{p} · {t}") for p, t in zip(frame["pair"], frame["task"], strict=True)]
    )
    traces = []
    for outcome in ("win", "tie", "loss"):
        part = data[data["outcome"] == outcome]
        traces.append(
            go.Bar(
                y=part["row"],
                x=part["value"] * 100,
                name=outcome,
                orientation="h",
                marker_color=OUTCOME_COLORS[outcome],
                text=(part["value"] * 100).round(0),
                customdata=[
                    _ci_text(lo, hi) for lo, hi in zip(part["lo"], part["hi"], strict=True)
                ],
                hovertemplate=f"%{{y}}: %{{x:.1f}}%<br>%{{customdata}}<extra>{outcome}</extra>",
            )
        )
    return go.Figure(
        traces,
        layout=dict(
            **_LAYOUT,
            barmode="stack",
            title="LLM judge: win / tie / loss",
            xaxis=dict(title="share of comparisons (%)", range=[0, 100]),
            height=160 + 40 * data["row"].nunique(),
        ),
    )


def fairness_bars(frame: pd.DataFrame) -> go.Figure:
    """Figure 6: F1 per subgroup, grouped by attribute, bootstrap std as error bars."""
    traces = []
    for i, (attribute, part) in enumerate(frame.groupby("attribute", sort=False)):
        traces.append(
            go.Bar(
                x=[[_esc(attribute)] * len(part), _esc_all(part["group"])],
                y=part["f1_mean"],
                name=_esc(attribute),
                marker_color=PALETTE[i % len(PALETTE)],
                error_y=dict(type="data", array=part["f1_std"].fillna(0)),
                customdata=np.column_stack(
                    [part["n_subjects"].astype(str), part["n_items"].astype(str)]
                ),
                hovertemplate="%{x}: F1 %{y:.3f}<br>subjects %{customdata[0]}, items "
                "%{customdata[1]}<extra></extra>",
            )
        )
    return go.Figure(
        traces,
        layout=dict(
            **_LAYOUT,
            title="Subgroup F1 (mean ± std over bootstrap samples)",
            yaxis=dict(title="F1", range=[0, 1]),
            showlegend=False,
            height=420,
        ),
    )


def delta_forest(frame: pd.DataFrame, a: str, b: str) -> go.Figure:
    """Compare view: delta per subtask with its CI, zero line for "no difference"."""
    data = frame.copy()
    has_ci = data["ci_lo"].notna()
    fig = go.Figure(
        go.Scatter(
            x=data["delta"],
            y=_esc_all(data["row"]),
            mode="markers",
            error_x=dict(
                type="data",
                symmetric=False,
                array=np.where(has_ci, data["ci_hi"] - data["delta"], 0),
                arrayminus=np.where(has_ci, data["delta"] - data["ci_lo"], 0),
            ),
            marker=dict(size=10, color=np.where(data["delta"] >= 0, "#1565c0", "#c62828")),
            hovertext=data["ci_source"],
        )
    )
    fig.add_vline(x=0, line_dash="dash", line_color="#757575")
    fig.update_layout(
        **_LAYOUT,
        showlegend=False,
        title=_esc(f"{a} minus {b} (points)"),
        yaxis_autorange="reversed",
        xaxis_title="delta (percentage points)",
        height=120 + 28 * len(data),
    )
    return fig


def provenance_legend() -> str:
    """Column labels read "model · provenance · flags"; this says what each one means."""
    return (
        "Provenance: "
        + "; ".join(f"*{name}*: {text}" for name, text in PROVENANCE_HELP.items())
        + ". Flags: "
        + "; ".join(f"*{name}*: {text}" for name, text in FLAG_HELP.items())
        + "."
    )
