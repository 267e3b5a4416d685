"""The studio's charts, drawn with plotly like the report (plotly.js is served by the studio itself)."""

from __future__ import annotations

from typing import Any

import pandas as pd

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D", "#BAB0AC")


def _colors(names: list[str]) -> dict[str, str]:
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(sorted(names))}


def to_html(fig: Any, height: int = 380) -> str:
    """A figure as a div (plotly.js loaded once by the page)."""
    fig.update_layout(margin={"l": 50, "r": 20, "t": 50, "b": 50}, template="plotly_white")
    return fig.to_html(full_html=False, include_plotlyjs=False, default_height=f"{height}px", default_width="100%",
                       config={"displaylogo": False, "responsive": True})


def sizes_chart(sizes: dict[str, dict[str, int]]) -> Any:
    """Stacked bars: users per segment as of each update."""
    import plotly.graph_objects as go

    frame = pd.DataFrame(sizes).T.fillna(0)
    fig = go.Figure()
    colors = _colors(list(frame.columns))
    for seg in frame.columns:
        fig.add_bar(name=seg, x=list(frame.index), y=frame[seg].tolist(), marker_color=colors[seg])
    fig.update_layout(barmode="stack", title="Segment sizes over time", xaxis_type="category",
                      xaxis_title="update (feature time)", yaxis_title="users")
    return fig


def migration_chart(matrix: pd.DataFrame, start: str, end: str) -> Any:
    """Heatmap of users by segment at ``start`` (rows) and at ``end`` (columns)."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(z=matrix.to_numpy(), x=[str(c) for c in matrix.columns],
                               y=[str(i) for i in matrix.index], colorscale="Blues",
                               text=matrix.to_numpy(), texttemplate="%{text}"))
    fig.update_layout(title=f"Migration {start} → {end}", xaxis_title=f"segment at {end}",
                      yaxis_title=f"segment at {start}")
    return fig


def profile_chart(profiles: list[dict[str, Any]]) -> Any:
    """Grouped bars: each segment's feature means as a multiple of the population's."""
    import plotly.graph_objects as go

    fig = go.Figure()
    colors = _colors([p["segment"] for p in profiles])
    for p in profiles:
        feats = [f for f, v in p["features"].items() if v["population"]]
        fig.add_bar(name=p["segment"], x=feats, marker_color=colors[p["segment"]],
                    y=[(p["features"][f]["segment"] or 0) / p["features"][f]["population"] for f in feats])
    fig.update_layout(barmode="group", title="Segment profiles: feature mean ÷ population mean",
                      yaxis_title="× population")
    return fig


def timeline_chart(history: pd.DataFrame) -> Any:
    """One user's predictions over time, each point labelled with its segment."""
    from plotly.subplots import make_subplots

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x = [f"{t:%Y-%m-%d %H:%M}" for t in history["event_timestamp"]]
    fig.add_scatter(x=x, y=history["predicted_spend"].tolist(), name="predicted spend", mode="lines+markers",
                    text=history["segment"].tolist(), hovertemplate="%{y} (%{text})")
    fig.add_scatter(x=x, y=history["churn_risk"].tolist(), name="churn risk", mode="lines+markers",
                    secondary_y=True)
    fig.update_layout(title="Persona timeline")
    return fig
