"""Point-in-time identity: when each event became attributable to the user it is resolved to.

Clean events are resolved through the newest identity graph, so a visitor who logs in on day 20 brings
their anonymous history of days 1-19 along. A training row at cutoff ``t`` may only use what was known
at ``t``: an event stitched to its user by a link made at or after ``t`` does not count for that row
(``counted_at``), and a user whose pre-cutoff history includes such events is left out at ``t``
(``late_linked_users``), because their Feast snapshot at ``t`` was computed with that history.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STITCHED_AT = "stitched_at"
"""Column: time of the link that attributed the event to its user, when that link came after the event
(NaT: the event carried the user itself, or its alias was already linked when it happened)."""


def _lookup(graph: pd.DataFrame, kind: str) -> pd.DataFrame:
    """``alias -> (user_id, linked_at)`` for one kind of alias (one link per alias)."""
    part = graph.loc[graph["kind"] == kind, ["alias", "user_id", "linked_at"]]
    return part.drop_duplicates("alias").set_index("alias")


def stitch_times(events: pd.DataFrame, graph: pd.DataFrame) -> pd.Series:
    """Per event (resolved through ``graph``), when a later link attributed it to its user; NaT otherwise.

    Paths: anonymous id → user, device id → user, anonymous id → device (bridge) → user (the later of
    the two links). The earliest path that reaches the event's own user counts; a path whose link is no
    later than the event means the event was attributable when it happened.
    """
    graph = graph.assign(linked_at=pd.to_datetime(graph["linked_at"], utc=True),
                         user_id=graph["user_id"].astype(str))
    anon, device = _lookup(graph, "anonymous"), _lookup(graph, "device")
    user = events["user_id"].astype("string")
    a_user = events["anonymous_id"].map(anon["user_id"]).astype("string")
    a_time = events["anonymous_id"].map(anon["linked_at"])
    via = a_user.where(a_user.str.startswith("device:").fillna(False)).str.slice(len("device:"))
    b_time = pd.concat([a_time, via.map(device["linked_at"])], axis=1).max(axis=1, skipna=False)
    d_user = events["device_id"].map(device["user_id"]).astype("string")
    paths = [(a_user, a_time), (d_user, events["device_id"].map(device["linked_at"])),
             (via.map(device["user_id"]).astype("string"), b_time)]
    times = pd.concat([t.where(u.eq(user).fillna(False)) for u, t in paths], axis=1)
    earliest = pd.to_datetime(times.min(axis=1), utc=True)
    ts = pd.to_datetime(events["timestamp"], utc=True)
    return earliest.where(earliest > ts).astype("datetime64[ns, UTC]").rename(STITCHED_AT)


def with_stitch_times(events: pd.DataFrame, graph: pd.DataFrame) -> pd.DataFrame:
    """``events`` with the :data:`STITCHED_AT` column. Only events carrying an anonymous or device id
    can have been attributed by a link; the others get NaT without a lookup."""
    aliased = np.zeros(len(events), dtype=bool)
    for name in ("anonymous_id", "device_id"):
        if name in events:
            aliased |= events[name].notna().to_numpy()
    values = np.full(len(events), np.datetime64("NaT"), dtype="datetime64[ns]")
    if aliased.any():
        found = stitch_times(events.loc[aliased], graph)  # datetime64[ns, UTC]
        values[aliased] = found.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    times = pd.DatetimeIndex(values).tz_localize("UTC")  # tz-aware even when every value is NaT
    return events.assign(**{STITCHED_AT: pd.Series(times, index=events.index)})


def counted_at(events: pd.DataFrame, cutoff: pd.Timestamp) -> np.ndarray:
    """Which events count for rows at ``cutoff``: not attributed by a link made at or after it.
    Events without the column (no identity information) all count."""
    if STITCHED_AT not in events:
        return np.ones(len(events), dtype=bool)
    return ~(events[STITCHED_AT] >= cutoff).to_numpy(dtype=bool)


def late_linked_users(events: pd.DataFrame, cutoff: pd.Timestamp) -> pd.Index:
    """Users with history before ``cutoff`` that only a link made at or after ``cutoff`` attributed to them
    (their snapshot at the cutoff includes it, so their row at the cutoff would leak)."""
    if STITCHED_AT not in events:
        return pd.Index([])
    late = (events["timestamp"] < cutoff) & (events[STITCHED_AT] >= cutoff)
    return pd.Index(events.loc[late, "user_id"].unique())
