"""Overview: segment sizes over time, migration between any two updates, segment profiles, drift and
data-quality status, model versions in use (all from the aggregates stored at update time)."""

from __future__ import annotations

import pandas as pd

from studio import charts
from studio.context import Req
from studio.html import error, esc, options, page, rows_table

NO_DATA = ("<p>No aggregates yet: they are computed by <code>persona update</code> "
           "(after the first scoring of personas).</p>")


def overview(r: Req) -> str:
    """The overview page."""
    agg = r.hooks.cache.get(r.settings)
    if agg is None:
        return page("Overview", NO_DATA, r.base, r.caller.name)
    ov = agg.overview
    parts = [(f"<p>{ov['users']:,} users with a persona · features as of {esc(ov['feature_time'])} · "
              f"aggregates built {esc(ov['built_at'])}</p>")]
    if ov["sizes"]:
        parts.append(charts.to_html(charts.sizes_chart(ov["sizes"])))
    parts.append(_migration(r, agg.by_update, ov["updates"]))
    parts.append("<h2>Segment profiles</h2>")
    if ov["profiles"]:
        parts.append(rows_table(["segment", "users", "spend share", "mean predicted spend", "mean churn risk"],
                                [(p["segment"], p["users"], f"{p['spend_share']:.1%}", p["mean_spend"], p["churn_risk"])
                                 for p in ov["profiles"]], "profiles"))
        parts.append(charts.to_html(charts.profile_chart(ov["profiles"])))
    parts.append("<h2>Drift</h2>" + _drift(ov.get("drift")))
    q = ov["quality"]
    parts.append(f"<h2>Data quality</h2><p>{q['batches']} batches, {q['rows_read']:,} rows read, "
                 f"{q['accepted']:,} accepted, {q['quarantined']:,} quarantined ({q['quarantined_share']:.2%}), "
                 f"{q['duplicates']:,} duplicates</p>")
    cols = ["batch", "channel", "status", "rows", "accepted", "quarantined", "duplicates", "at"]
    parts.append(rows_table(cols, [tuple(b[c] for c in cols) for b in q["recent"]], "quality"))
    parts.append("<h2>Model versions in use</h2>" + rows_table(
        ["target", "version", "users"], [(t, v, n) for t, found in ov["versions"].items() for v, n in found.items()],
        "versions"))
    return page("Overview", "".join(parts), r.base, r.caller.name, charts=True)


def _migration(r: Req, by_update: pd.DataFrame, updates: list[str]) -> str:
    if not updates:
        return ""
    start, end = r.q("from", updates[-2] if len(updates) > 1 else updates[0]), r.q("to", updates[-1])
    form = (f"<h2>Migration</h2><form method='get' action='{r.base}/'>from <select name='from'>"
            f"{options(updates, start)}</select> to <select name='to'>{options(updates, end)}</select> "
            "<button>show</button></form>")
    if start not in updates or end not in updates:
        return form + error(f"pick two updates from the lists (got {start!r} → {end!r})")
    after = by_update[end].dropna()
    matrix = pd.crosstab(by_update[start].reindex(after.index).fillna("(new)").rename("from"), after.rename("to"))
    return form + charts.to_html(charts.migration_chart(matrix, start, end), height=420)


def _drift(d: dict | None) -> str:
    if not d:
        return "<p class='muted'>no drift check yet</p>"
    status = "DRIFT" if d["drifted_features"] or d["drifted_outputs"] else "no drift"
    return (f"<p><b>{status}</b> on {esc(d['window'])} (checked {esc(d['checked_at'])}): {esc(d['reason'])}</p>"
            + rows_table(["feature", "PSI"], d["top"]))
