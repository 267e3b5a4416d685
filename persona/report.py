"""``persona report``: one self-contained HTML file (plotly.js inlined, no network needed to open it).

Charts: segment sizes over time; segment migration between the last two updates (Sankey); model
metrics per version (champion, challengers, baselines, from MLflow); drift per feature (PSI of the
newest check); data quality per ingested batch (ledger); top feature importances of the champions;
and a table of the users whose persona changed most. Written to
``<data>/reports/persona-report-<UTC time>.html`` (atomically); :func:`latest_report_path` finds the
newest, which the service serves at ``GET /report``.
"""

from __future__ import annotations

import html
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from base.config import Settings
from base.paths import REPORT_PREFIX, DataPaths

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D", "#BAB0AC")


def reports_dir(settings: Settings) -> Path:
    """Where reports are written."""
    return DataPaths(settings.data_dir).reports


def latest_report_path(settings: Settings) -> Path | None:
    """The newest report, or None before the first ``persona report``."""
    return DataPaths(settings.data_dir).latest_report()


# --------------------------------------------------------------------------- charts


def _colors(names: list[str]) -> dict[str, str]:
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(sorted(names))}


def segment_sizes_chart(sizes: pd.DataFrame) -> Any:
    """Stacked bars: users per segment as of each batch update."""
    import plotly.graph_objects as go

    fig = go.Figure()
    colors = _colors(list(sizes.columns))
    labels = [f"{t:%Y-%m-%d %H:%M}" for t in sizes.index]
    for seg in sizes.columns:
        fig.add_bar(name=seg, x=labels, y=sizes[seg].tolist(), marker_color=colors[seg])
    fig.update_layout(barmode="stack", title="Segment sizes over time (as of each update's features)",
                      xaxis_title="update (feature time)", yaxis_title="users", xaxis_type="category")
    return fig


def migration_chart(matrix: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None) -> Any:
    """Sankey of segment moves (left: segment at ``start``, right: at ``end``)."""
    import plotly.graph_objects as go

    left, right = [str(s) for s in matrix.index], [str(s) for s in matrix.columns]
    colors = _colors(sorted(set(left) | set(right)))
    labels = [f"{s} ({int(matrix.loc[s].sum())})" for s in matrix.index] + \
             [f"{s} ({int(matrix[s].sum())})" for s in matrix.columns]
    src, dst, val, link_colors = [], [], [], []
    for i, a in enumerate(matrix.index):
        for j, b in enumerate(matrix.columns):
            v = int(matrix.loc[a, b])
            if v > 0:
                src.append(i), dst.append(len(left) + j), val.append(v)
                link_colors.append(_rgba(colors.get(str(a), "#999999"), 0.35 if a == b else 0.7))
    fig = go.Figure(go.Sankey(
        node={"label": labels, "pad": 14, "thickness": 16,
              "color": [colors.get(s, "#999999") for s in left + right]},
        link={"source": src, "target": dst, "value": val, "color": link_colors},
    ))
    when = f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M}" if start is not None and end is not None else ""
    fig.update_layout(title=f"Segment migration between the last two updates {when}")
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[k:k + 2], 16) for k in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def model_metrics(settings: Settings) -> pd.DataFrame:
    """Every registered version's primary metric and its baselines', with the alias it holds."""
    from training.gate import baseline_scores
    from training.targets import TARGETS
    from training.registry import client, versions

    ml = settings.ml
    c = client(ml)
    rows = []
    for t in TARGETS:
        key = t.key
        found = versions(ml, key)
        if not found:
            continue
        held = {str(v): a for a, v in c.get_registered_model(ml.model_name(key)).aliases.items()}
        primary = t.primary(ml.gate)
        for mv in sorted(found, key=lambda m: int(m.version)):
            metrics = c.get_run(mv.run_id).data.metrics
            role = held.get(str(mv.version), "archived")
            rows.append({"target": key, "metric": primary, "version": f"v{mv.version}", "role": role,
                         "value": metrics.get(f"eval_{primary}", np.nan), "kind": "model"})
            for base, value in sorted(baseline_scores(dict(metrics), primary).items()):
                rows.append({"target": key, "metric": primary, "version": f"v{mv.version}", "role": base,
                             "value": value, "kind": "baseline"})
    return pd.DataFrame(rows)


def model_metrics_chart(frame: pd.DataFrame) -> Any:
    """Per target: each version's primary metric (colored by champion/challenger/archived) beside baselines."""
    from plotly.subplots import make_subplots

    targets = list(dict.fromkeys(frame["target"]))
    fig = make_subplots(rows=1, cols=len(targets), subplot_titles=[
        f"{t}: {frame.loc[frame['target'] == t, 'metric'].iloc[0]} (lower is better)" for t in targets])
    role_colors = {"champion": "#54A24B", "challenger": "#F58518", "archived": "#BAB0AC"}
    base_names = sorted(set(frame.loc[frame["kind"] == "baseline", "role"]))
    base_colors = {b: PALETTE[(i + 4) % len(PALETTE)] for i, b in enumerate(base_names)}
    shown: set[str] = set()
    for col, t in enumerate(targets, start=1):
        part = frame.loc[frame["target"] == t]
        for role in ("champion", "challenger", "archived"):
            rows = part.loc[(part["kind"] == "model") & (part["role"] == role)]
            if rows.empty:
                continue
            fig.add_bar(x=rows["version"], y=rows["value"], name=role, marker_color=role_colors[role],
                        legendgroup=role, showlegend=role not in shown, row=1, col=col)
            shown.add(role)
        for base in base_names:
            rows = part.loc[(part["kind"] == "baseline") & (part["role"] == base)]
            if rows.empty:
                continue
            fig.add_scatter(x=rows["version"], y=rows["value"], mode="markers", name=f"baseline {base}",
                            marker={"symbol": "line-ew-open", "size": 22, "line": {"width": 3},
                                    "color": base_colors[base]},
                            legendgroup=base, showlegend=base not in shown, row=1, col=col)
            shown.add(base)
    fig.update_layout(title="Model metrics per version on its evaluation window: champion vs challengers vs baselines "
                            "(log scale)", barmode="group")
    fig.update_xaxes(type="category", categoryorder="category ascending")
    fig.update_yaxes(type="log")
    return fig


def drift_chart(result: Any) -> Any:
    """Horizontal bars: PSI per feature and model output of the newest check, with the thresholds."""
    import plotly.graph_objects as go

    items = sorted({**{f"output: {k}": v for k, v in result.outputs.items()}, **result.features}.items(),
                   key=lambda kv: kv[1])
    names, values = [k for k, _ in items], [v for _, v in items]
    colors = ["#E45756" if v >= result.alert else "#F58518" if v >= result.warn else "#4C78A8" for v in values]
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h", marker_color=colors, name="PSI"))
    for x, label in ((result.warn, "warn"), (result.alert, "alert")):
        fig.add_vline(x=x, line_dash="dash", line_color="#666", annotation_text=f"{label} {x}")
    fig.update_layout(title=f"Drift per feature: PSI of {result.window} vs reference {', '.join(result.reference)} "
                            f"(champions spend v{result.champions.get('spend')}, churn v{result.champions.get('churn')})",
                      xaxis_title="population stability index", height=max(420, 18 * len(names) + 120))
    return fig


def data_quality_chart(batches: list[Any]) -> Any:
    """Stacked bars per ingested batch: accepted, quarantined and duplicate rows."""
    import plotly.graph_objects as go

    labels = [f"{b.file} [{b.batch_id[:8]}]" for b in batches]
    fig = go.Figure()
    for name, color in (("accepted", "#54A24B"), ("quarantined", "#E45756"), ("duplicates", "#F58518")):
        fig.add_bar(name=name, x=labels, y=[getattr(b, name) for b in batches], marker_color=color)
    fig.update_layout(barmode="group", title="Data quality per ingested batch (rows read = accepted + quarantined "
                                             "+ duplicates; log scale)", yaxis_title="rows", yaxis_type="log")
    fig.update_xaxes(type="category", tickangle=-45)
    return fig


def importances(models: dict[str, Any], top: int = 15) -> dict[str, pd.Series]:
    """Gain importance of each champion's top features (share of total gain)."""
    out = {}
    for key, m in models.items():
        gain = np.asarray(m.booster.feature_importance(importance_type="gain"), dtype=float)
        series = pd.Series(gain / max(gain.sum(), 1e-12), index=m.booster.feature_name())
        out[f"{key} v{m.ref.version}"] = series.sort_values(ascending=False).head(top)
    return out


def importance_chart(found: dict[str, pd.Series]) -> Any:
    """One horizontal bar chart per champion: its top features by gain."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(found), subplot_titles=list(found), horizontal_spacing=0.18)
    for col, (name, series) in enumerate(found.items(), start=1):
        s = series.sort_values()
        fig.add_bar(x=s.to_numpy(), y=s.index.tolist(), orientation="h", name=name, showlegend=False,
                    marker_color=PALETTE[col % len(PALETTE)], row=1, col=col)
    fig.update_layout(title="Top feature importances of the champions (share of total gain)", height=520)
    return fig


def most_changed(history: pd.DataFrame, top: int) -> pd.DataFrame:
    """Users whose persona changed most: segment changes first, then the size of the spend move."""
    if history.empty:
        return pd.DataFrame()
    rows = history.sort_values(["user_id", "event_timestamp", "scored_at"], kind="stable")
    g = rows.groupby("user_id", sort=False)
    seg_changes = g["segment"].agg(lambda s: int((s != s.shift()).iloc[1:].sum()))
    frame = pd.DataFrame({
        "segment changes": seg_changes,
        "records": g.size(),
        "first segment": g["segment"].first(),
        "current segment": g["segment"].last(),
        "spend first": g["predicted_spend"].first(),
        "spend now": g["predicted_spend"].last(),
        "churn first": g["churn_risk"].first(),
        "churn now": g["churn_risk"].last(),
        "last change": g["event_timestamp"].last(),
    })
    frame["spend move"] = (frame["spend now"] - frame["spend first"]).abs()
    frame = frame.loc[frame["records"] > 1]
    return frame.sort_values(["segment changes", "spend move"], ascending=False).head(top)


# --------------------------------------------------------------------------- page


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{margin-bottom:4px} .muted{color:#666} .chart{border:1px solid #ddd;border-radius:6px;margin:18px 0;padding:6px}
table{border-collapse:collapse;font-size:13px;width:100%} th,td{border-bottom:1px solid #eee;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left} .summary li{margin:2px 0} .empty{padding:18px;color:#a33}
"""


def _figure_html(fig: Any, height: int = 460) -> str:
    h = int(fig.layout.height or height)
    return fig.to_html(full_html=False, include_plotlyjs=False, default_height=f"{h}px", default_width="100%",
                       config={"displaylogo": False, "responsive": True})


def _section(title: str, body: str) -> str:
    return f'<section><h2>{html.escape(title)}</h2><div class="chart">{body}</div></section>'


def _empty(message: str) -> str:
    return f'<div class="empty">{html.escape(message)}</div>'


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return _empty("no persona has changed yet (run `persona update` after new data arrives)")
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in ["user", *frame.columns])
    body = []
    for user, row in frame.iterrows():
        cells = [html.escape(str(user))]
        for v in row:
            cells.append(f"{v:.3f}" if isinstance(v, float) else (f"{v:%Y-%m-%d}" if isinstance(v, pd.Timestamp)
                                                               else html.escape(str(v))))
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<table id="most-changed"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _summary(settings: Settings) -> str:
    from persona.update import read_runs

    runs = read_runs(settings)
    if not runs:
        return "<p class='muted'>No update has run yet.</p>"
    last = runs[-1]
    items = [f"last update: {html.escape(last['started_at'])} ({last['seconds']:.1f}s), snapshot {last.get('snapshot_day')}",
             f"events in: {last['events_in']} from {last['files_in']} file(s)",
             f"personas changed: {last['personas_changed']} of {last['users_scored']} scored "
             f"({last['segment_changes']} changed segment)",
             f"drift: {html.escape((last.get('drift') or {}).get('reason', 'not checked'))}",
             f"models trained: {html.escape(', '.join(last['trained']) or 'none')}; "
             f"promoted: {html.escape(', '.join(last['promoted']) or 'none')}"]
    items += [f"gate {html.escape(k)}: {html.escape(v)}" for k, v in last.get("gate", {}).items()]
    return f"<ul class='summary'>{''.join(f'<li>{i}</li>' for i in items)}</ul><p class='muted'>{len(runs)} update(s) so far.</p>"


def build_report(settings: Settings) -> str:
    """The report's HTML (every chart, plotly.js inlined once)."""
    from plotly.offline import get_plotlyjs

    from ingestion.ledger import read_ledger
    from scoring.drift import drift_history
    from scoring.history import migration, read_history, segment_sizes, update_times
    from base.paths import DataPaths

    sections = []
    sizes = segment_sizes(settings)
    sections.append(_section("Segment sizes over time", _figure_html(segment_sizes_chart(sizes)) if not sizes.empty
                             else _empty("no personas recorded yet (run `persona update`)")))
    times = update_times(settings)
    if times:
        start = times[-2] if len(times) > 1 else times[-1] - pd.Timedelta(seconds=1)
        matrix = migration(settings, start, times[-1])
        body = _figure_html(migration_chart(matrix, start if len(times) > 1 else None, times[-1]), 520)
    else:
        body = _empty("no updates recorded yet")
    sections.append(_section("Migration between the last two updates", body))
    metrics = model_metrics(settings)
    sections.append(_section("Model metrics per version", _figure_html(model_metrics_chart(metrics)) if not metrics.empty
                             else _empty("no registered models (run `persona train`)")))
    from persona.report_models import champion_table

    sections.append(_section("Champions beside every baseline, and which fit serves", champion_table(settings)))
    checks = drift_history(settings)
    sections.append(_section("Drift per feature", _figure_html(drift_chart(checks[-1])) if checks
                             else _empty("no drift check yet (run `persona update`)")))
    batches = read_ledger(DataPaths(settings.data_dir).ledger)
    sections.append(_section("Data quality per batch", _figure_html(data_quality_chart(batches)) if batches
                             else _empty("no ingested batches")))
    from persona.update import _champions

    models = _champions(settings.ml)
    sections.append(_section("Top feature importances", _figure_html(importance_chart(importances(models))) if models
                             else _empty("no champion models")))
    changed = most_changed(read_history(settings), settings.update.report_top_users)
    sections.append(_section(f"Users whose persona changed most (top {settings.update.report_top_users})", _table(changed)))
    now = datetime.now(timezone.utc)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Persona report {now:%Y-%m-%d %H:%M} UTC</title><style>{_STYLE}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>Persona report</h1><p class='muted'>generated {now:%Y-%m-%d %H:%M:%S} UTC from "
        f"{html.escape(str(settings.data_dir))}</p>{_summary(settings)}{''.join(sections)}</body></html>"
    )


def write_report(settings: Settings) -> Path:
    """Write the report atomically; returns its path."""
    folder = reports_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{REPORT_PREFIX}{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}.html"
    tmp = folder / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        tmp.write_text(build_report(settings), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
