"""Point-in-time identity: when each event became attributable to the user it is resolved to.

Clean events are resolved through the newest identity graph, so a visitor who logs in on day 20 brings
their anonymous history of days 1-19 along. A training row at cutoff ``t`` may only use what was known
at ``t``: an event stitched to its user by a link made at or after ``t`` does not count for that row
(``counted_at``), and a user whose pre-cutoff history includes such events is left out at ``t``
(``late_linked_users``), because their Feast snapshot at ``t`` was computed with that history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

STITCHED_AT = "stitched_at"
"""Column: time of the link that attributed the event to its user, when that link came after the event
(NaT: the event carried the user itself, or its alias was already linked when it happened)."""


@dataclass(frozen=True)
class AliasLinks:
    """One kind of alias's links as arrays: ``index`` (alias, unique), the linked ``users`` (str) and
    when (``times``, epoch ns)."""

    index: pd.Index
    users: np.ndarray
    times: np.ndarray

    @classmethod
    def of(cls, graph: pd.DataFrame, kind: str) -> "AliasLinks":
        """``alias -> (user_id, linked_at)`` for one kind of alias (one link per alias)."""
        part = graph.loc[graph["kind"] == kind, ["alias", "user_id", "linked_at"]].drop_duplicates("alias")
        index = pd.Index(part["alias"].to_numpy(dtype=object))
        index.is_unique  # noqa: B018  (computed once here, cached on the index, not once per lookup)
        times = epoch_ns(pd.to_datetime(part["linked_at"], utc=True))
        return cls(index, part["user_id"].astype(str).to_numpy(dtype=object), times)


@dataclass(frozen=True)
class GraphLinks:
    """The identity graph prepared for :func:`stitch_times`: built once, used for every part of the
    event store (preparing the whole graph per part cost more than the lookups themselves)."""

    anonymous: AliasLinks
    device: AliasLinks

    @classmethod
    def of(cls, graph: pd.DataFrame) -> "GraphLinks":
        """The anonymous and device links of ``graph``."""
        return cls(AliasLinks.of(graph, "anonymous"), AliasLinks.of(graph, "device"))


def stitch_times(events: pd.DataFrame, graph: pd.DataFrame | GraphLinks) -> pd.Series:
    """Per event (resolved through ``graph``), when a later link attributed it to its user; NaT otherwise.

    Paths: anonymous id → user, device id → user, anonymous id → device (bridge) → user (the later of
    the two links). The earliest path that reaches the event's own user counts; a path whose link is no
    later than the event means the event was attributable when it happened.

    Each distinct alias is looked up once and users are compared as integer codes, so the cost per
    event is a few array gathers (tests/unit/test_stitch_times_coded.py: the same times as looking up
    every event's aliases as strings).
    """
    links = graph if isinstance(graph, GraphLinks) else GraphLinks.of(graph)
    anon, device = links.anonymous, links.device
    u_code, u_distinct = pd.factorize(events["user_id"])  # missing: -1 (never equal to a linked user)
    if pd.api.types.infer_dtype(u_distinct, skipna=True) not in ("string", "empty"):  # compared as text
        u_code, u_distinct = pd.factorize(events["user_id"].astype("string"))
    user_index = pd.Index(np.asarray(u_distinct, dtype=object))

    def linked(table: AliasLinks, aliases: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per alias: its link's user (str or NaN), that user's code among the events' users (-1: none)
        and the link time (ns, NaT when unlinked)."""
        at = table.index.get_indexer(aliases) if len(table.index) else np.full(len(aliases), -1)
        found = at >= 0
        who = np.full(len(aliases), np.nan, dtype=object)
        who[found] = table.users[at[found]]
        when = np.full(len(aliases), NAT_NS, dtype=np.int64)
        when[found] = table.times[at[found]]
        code = np.full(len(aliases), -1, dtype=np.int64)
        code[found] = user_index.get_indexer(who[found])
        return who, code, when

    a_code, a_distinct = pd.factorize(events["anonymous_id"], use_na_sentinel=False)  # as Series.map: NaN looked up too
    a_user, a_user_code, a_time = linked(anon, np.asarray(a_distinct, dtype=object))
    bridge = np.array([isinstance(u, str) and u.startswith("device:") for u in a_user], dtype=bool)
    b_user_code = np.full(len(a_user), -1, dtype=np.int64)
    b_time = np.full(len(a_user), NAT_NS, dtype=np.int64)
    if bridge.any():
        via = np.array([u[len("device:"):] for u in a_user[bridge]], dtype=object)
        _, via_code, via_time = linked(device, via)
        b_user_code[bridge] = via_code
        both = (a_time[bridge] != NAT_NS) & (via_time != NAT_NS)  # the later of the two links; NaT if either is
        b_time[bridge] = np.where(both, np.maximum(a_time[bridge], via_time), NAT_NS)
    d_code, d_distinct = pd.factorize(events["device_id"], use_na_sentinel=False)
    _, d_user_code, d_time = linked(device, np.asarray(d_distinct, dtype=object))
    earliest = np.full(len(events), _NEVER, dtype=np.int64)
    for code, when in ((a_user_code[a_code], a_time[a_code]), (d_user_code[d_code], d_time[d_code]),
                       (b_user_code[a_code], b_time[a_code])):
        reaches = (code >= 0) & (code == u_code) & (when != NAT_NS)
        earliest = np.where(reaches, np.minimum(earliest, when), earliest)
    ts = epoch_ns(pd.to_datetime(events["timestamp"], utc=True))
    late = (earliest != _NEVER) & (ts != NAT_NS) & (earliest > ts)
    values = np.where(late, earliest, NAT_NS).view("datetime64[ns]")
    return pd.Series(pd.DatetimeIndex(values).tz_localize("UTC"), index=events.index, name=STITCHED_AT)


NAT_NS = np.iinfo(np.int64).min
"""NaT as epoch nanoseconds."""
_NEVER = np.iinfo(np.int64).max


def epoch_ns(values: pd.Series) -> np.ndarray:
    """Times as int64 epoch nanoseconds (UTC for zone-aware times); NaT as :data:`NAT_NS`."""
    return pd.DatetimeIndex(values).as_unit("ns").asi8


def with_stitch_times(events: pd.DataFrame, graph: pd.DataFrame | GraphLinks) -> pd.DataFrame:
    """``events`` with the :data:`STITCHED_AT` column. Only events carrying an anonymous or device id
    can have been attributed by a link; the others get NaT without a lookup. ``graph``: the identity
    graph, or :class:`GraphLinks` prepared once for several calls."""
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
