"""Person: search by user id or by e-mail (entered in clear, hashed on the server, never stored); the
current persona with its drivers, the persona timeline, recent events, linked identities."""

from __future__ import annotations

from typing import Any

import pandas as pd

from base.config import Settings
from base.paths import DataPaths
from studio import charts
from studio.context import Req
from studio.html import error, esc, options, page, rows_table, table


def hash_email(email: str, settings: Settings) -> str | None:
    """The e-mail's pseudonym as the clean store keeps it."""
    from ingestion.canonical import hash_pii

    return hash_pii(pd.Series([email]), settings.hash_salt, "email").iloc[0]


def identities(settings: Settings, user: str) -> pd.DataFrame:
    """The pseudonymous identities stitched to the user."""
    import pyarrow.dataset as ds

    path = DataPaths(settings.data_dir).identity_graph
    if not path.exists():
        return pd.DataFrame()
    return ds.dataset(str(path), format="parquet").to_table(
        columns=["kind", "alias", "linked_at"], filter=ds.field("user_id") == user).to_pandas()


def person(r: Req) -> str:
    """The person page."""
    q, kind = r.q("q"), r.q("kind", "id")
    form = (f"<form method='get' action='{r.base}/person'><select name='kind'>{options(['id', 'email'], kind)}"
            f"</select> <input name='q' size='40' value='{esc(q)}' placeholder='user id or e-mail' required> "
            "<button>find</button></form>")
    if not q:
        return page("Person", form, r.base, r.caller.name)
    agg = r.hooks.cache.get(r.settings)
    user: str | None = q
    if kind == "email":
        user = agg.user_of_email(hash_email(q, r.settings)) if agg is not None else None
        if user is None:
            return page("Person", form + error("no user has this e-mail (it was hashed and looked up; "
                                               "nothing was stored)"), r.base, r.caller.name)
    assert user is not None
    history = agg.timeline(user) if agg is not None else pd.DataFrame()
    row = agg.person(user) if agg is not None else None
    live = r.hooks.personas([user])[0] if r.hooks.personas is not None else None
    if row is None and history.empty and (live is None or live.cold_start):
        return page("Person", form + error(f"unknown user {user!r}: no persona recorded"), r.base, r.caller.name)
    parts = [form, f"<h2 id='user'>{esc(user)}</h2>", _current(row, live)]
    if not history.empty:
        parts.append(charts.to_html(charts.timeline_chart(history), height=320))
        parts.append(table(history[["event_timestamp", "segment", "predicted_spend", "churn_risk", "source"]]
                           .iloc[::-1].head(30), "timeline"))
    events = agg.events(user) if agg is not None else pd.DataFrame()
    parts.append("<h2>Recent events</h2>" + table(events, "events"))
    parts.append("<h2>Linked identities</h2>" + table(identities(r.settings, user), "identities"))
    return page("Person", "".join(parts), r.base, r.caller.name, charts=not history.empty)


def _current(row: dict[str, Any] | None, live: Any) -> str:
    out = []
    if live is not None and not live.cold_start:
        out.append(f"<div class='card' id='live'><b>Persona now</b> (as the service answers): segment "
                   f"<b>{esc(live.segment)}</b>, predicted spend {live.predicted_spend:,.2f} over "
                   f"{live.horizon_days} days, churn risk {live.churn_risk:.1%}</div>")
        for model, drivers in live.drivers.items():
            out.append(f"<h3>Drivers of {esc(model)}</h3>" + rows_table(
                ["feature", "value", "contribution"], [(d.feature, d.value, d.contribution) for d in drivers]))
    if row is not None:
        out.append(f"<div class='card'><b>Last recorded persona</b> (update of {esc(row.get('feature_timestamp'))}): "
                   f"segment <b>{esc(row['segment'])}</b>, predicted spend {row['predicted_spend']:,.2f}, "
                   f"churn risk {row['churn_risk']:.1%}</div>")
    return "".join(out)
