"""Downloads: the overview as CSV and any chart as PNG.

PNG goes through kaleido, which drives a headless Chromium; it finds the system browser
(Debian's `chromium`) on its own and works offline. Rendering takes seconds, so the page
calls it only when the download button is pressed.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def overview_csv(wide: pd.DataFrame) -> bytes:
    """Percent values with one decimal, the (Task, Dataset) index as the first two columns."""
    return wide.round(1).reset_index().to_csv(index=False).encode("utf-8")


def figure_png(fig: go.Figure, width: int = 1100, height: int | None = None) -> bytes:
    """The chart as a PNG, or RuntimeError saying what to install."""
    height = height or int(fig.layout.height or 550)
    try:
        return fig.to_image(format="png", width=width, height=height, scale=2)
    except (ValueError, RuntimeError, OSError, ImportError) as exc:
        raise RuntimeError(
            "PNG export needs `pip install kaleido>=1.0` and a Chromium browser "
            f"(`apt-get install chromium`): {exc}"
        ) from exc
