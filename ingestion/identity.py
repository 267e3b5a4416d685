"""Identity stitching: anonymous and device ids are linked to known users; the graph is kept."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

GRAPH_COLUMNS = ("alias", "kind", "user_id", "linked_at", "event_id", "batch_id")
"""One merge per row: ``alias`` (of ``kind``) was linked to ``user_id`` at ``linked_at`` by ``event_id``."""
CONFLICT_COLUMNS = ("alias", "kind", "user_id", "claimed_by", "claimed_at", "event_id", "batch_id")
"""An alias already linked to ``user_id`` that a later event (``event_id``) claimed for ``claimed_by``."""
_ALIAS_FIELDS = {"anonymous": "anonymous_id", "device": "device_id"}


def empty_graph() -> pd.DataFrame:
    """An identity graph with no links."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in GRAPH_COLUMNS})


def links_from(events: pd.DataFrame, batch_id: str = "") -> pd.DataFrame:
    """Alias → user links carried by events that know both (identify/login events, signed-in rows)."""
    frames = []
    for kind, field in _ALIAS_FIELDS.items():
        both = events[field].notna() & events["user_id"].notna()
        part = events.loc[both, [field, "user_id", "timestamp", "event_id"]]
        part = part.rename(columns={field: "alias", "timestamp": "linked_at"})
        part["kind"] = kind
        frames.append(part)
    links = pd.concat(frames, ignore_index=True) if frames else empty_graph()
    # one link per (alias, user): the earliest; distinct users per alias survive (conflicts)
    links = links.sort_values("linked_at", kind="stable").drop_duplicates(["kind", "alias", "user_id"])
    links["batch_id"] = batch_id
    return links.loc[:, list(GRAPH_COLUMNS)].reset_index(drop=True)


POINTER_PREFIXES = ("anon:", "device:")
"""A link whose ``user_id`` starts with one of these points at another alias (a bridge), not a user."""


def starts_with(values: pd.Series, prefixes: str | tuple[str, ...]) -> pd.Series:
    """True where the value, as text, starts with one of ``prefixes`` (False for nulls); through Arrow
    when the values are strings, else like ``values.astype(str).str.startswith(prefixes)``."""
    try:
        arr = pa.array(values.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return values.astype(str).str.startswith(prefixes)
    hit = np.zeros(len(arr), dtype=bool)
    for prefix in (prefixes,) if isinstance(prefixes, str) else prefixes:
        hit |= pc.fill_null(pc.starts_with(arr, prefix), False).to_numpy(zero_copy_only=False)
    return pd.Series(hit, index=values.index)


def is_pointer(values: pd.Series) -> pd.Series:
    """True where a graph ``user_id`` is a pointer to another alias."""
    return starts_with(values, POINTER_PREFIXES)


def merge_links(graph: pd.DataFrame, new_links: pd.DataFrame) -> pd.DataFrame:
    """Add new links; an alias keeps its earliest link to a user (later conflicting claims are
    ignored); a bridge to another alias only stands until the alias is linked to a user directly."""
    parts = [g for g in (graph, new_links) if not g.empty]
    if not parts:
        return empty_graph()
    combined = pd.concat(parts, ignore_index=True)
    combined["_pointer"] = is_pointer(combined["user_id"])
    # the earliest link wins; two claims at the same instant are settled by user id, so the result
    # does not depend on the order the batches arrive in
    combined = combined.sort_values(["kind", "alias", "_pointer", "linked_at", "user_id"], kind="stable")
    combined = combined.drop_duplicates(["kind", "alias"], keep="first").drop(columns="_pointer")
    return combined.reset_index(drop=True)


def bridges_from(events: pd.DataFrame, batch_id: str = "") -> pd.DataFrame:
    """Links from an anonymous id to the device it was seen with, for events with no known user."""
    both = events["user_id"].isna() & events["anonymous_id"].notna() & events["device_id"].notna()
    part = events.loc[both, ["anonymous_id", "device_id", "timestamp", "event_id"]]
    links = pd.DataFrame({"alias": part["anonymous_id"], "kind": "anonymous",
                          "user_id": "device:" + part["device_id"].astype(str), "linked_at": part["timestamp"],
                          "event_id": part["event_id"], "batch_id": batch_id})
    links = links.sort_values("linked_at", kind="stable").drop_duplicates(["kind", "alias"])
    return links.loc[:, list(GRAPH_COLUMNS)].reset_index(drop=True)


def conflicts_from(graph: pd.DataFrame, new_links: pd.DataFrame) -> pd.DataFrame:
    """New links that claim an alias for a different user than ``graph`` (already merged) links it to."""
    if new_links.empty or graph.empty:
        return empty_conflicts()
    winner = graph.loc[:, ["kind", "alias", "user_id"]].rename(columns={"user_id": "linked"})
    claims = new_links.merge(winner, on=["kind", "alias"], how="inner")
    claims = claims.loc[claims["user_id"] != claims["linked"]]
    claims = claims.sort_values("linked_at", kind="stable").drop_duplicates(["kind", "alias", "user_id"])
    out = claims.rename(columns={"user_id": "claimed_by", "linked": "user_id", "linked_at": "claimed_at"})
    return out.loc[:, list(CONFLICT_COLUMNS)].reset_index(drop=True)


def empty_conflicts() -> pd.DataFrame:
    """A conflict table with no rows."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in CONFLICT_COLUMNS})


def merge_conflicts(known: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Known conflicts plus new ones; the same claim recorded twice (a re-run) is kept once."""
    parts = [c for c in (known, new) if not c.empty]
    if not parts:
        return empty_conflicts()
    both = pd.concat(parts, ignore_index=True)
    return both.drop_duplicates(["kind", "alias", "claimed_by", "event_id"]).reset_index(drop=True)


def resolve(events: pd.DataFrame, graph: pd.DataFrame) -> pd.DataFrame:
    """Fill ``user_id`` from the graph; unlinked visitors keep a prefixed alias as their id."""
    out = events.copy(deep=False)
    user = out["user_id"].astype(object)
    lookups = {kind: graph.loc[graph["kind"] == kind].set_index("alias")["user_id"] for kind in _ALIAS_FIELDS}
    for kind, field in _ALIAS_FIELDS.items():
        user = user.where(user.notna(), out[field].map(lookups[kind]))
    for _ in range(3):  # follow bridges: visitor → device → user
        via = starts_with(user, "device:").to_numpy()
        if not via.any():
            break
        current = pd.Series(user.to_numpy(dtype=object)[via])
        target = current.astype(str).str.slice(len("device:")).map(lookups["device"])
        moved = (target.notna() & (target != current)).to_numpy()
        if not moved.any():
            break
        values = user.to_numpy(dtype=object).copy()
        values[np.flatnonzero(via)[moved]] = target.to_numpy(dtype=object)[moved]
        user = pd.Series(values, index=user.index)
    for prefix, field in (("anon:", "anonymous_id"), ("device:", "device_id")):
        missing = user.isna().to_numpy()
        if missing.any():  # only the rows still without a user get the prefixed alias
            alias = out[field][missing].astype(object)
            values = user.to_numpy(dtype=object).copy()
            values[missing] = (prefix + alias.where(alias.notna(), "")).to_numpy(dtype=object)
            user = pd.Series(values, index=user.index)
        user = user.where(user != prefix, None)
    out["user_id"] = user
    return out


def stitch(events: pd.DataFrame, graph: pd.DataFrame, batch_id: str = "", rounds: int = 3,
           links: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Grow ``graph`` with the batch's links and resolve its events; returns (events, graph).

    Links are followed transitively: an event carrying an anonymous id and a device id already
    linked to a user links the anonymous id too (repeated up to ``rounds`` times, vectorised).
    ``links`` are the batch's own links when the caller already has them.
    """
    graph = merge_links(graph, links_from(events, batch_id) if links is None else links)
    graph = merge_links(graph, bridges_from(events, batch_id))
    resolved = resolve(events, graph)
    bridges = events["user_id"].isna() & events["anonymous_id"].notna() & events["device_id"].notna()
    for _ in range(rounds if bridges.any() else 0):  # only events carrying two aliases link one to the other
        part = resolved.loc[bridges]
        known = part["user_id"].notna() & ~starts_with(part["user_id"], ("anon:", "device:"))
        inferred = links_from(part.loc[known], batch_id)
        fresh = inferred.merge(graph[["kind", "alias"]], on=["kind", "alias"], how="left", indicator=True)
        fresh = fresh.loc[fresh["_merge"] == "left_only", list(GRAPH_COLUMNS)]
        if fresh.empty:
            break
        graph = merge_links(graph, fresh)
        resolved = resolve(events, graph)
    return resolved, graph


def load_graph(path: Path) -> pd.DataFrame:
    """The stored identity graph (empty when none)."""
    if not path.exists():
        return empty_graph()
    graph = pd.read_parquet(path)
    return graph.assign(batch_id=graph.get("batch_id", "")).loc[:, list(GRAPH_COLUMNS)]


def load_conflicts(path: Path) -> pd.DataFrame:
    """Recorded identity conflicts (empty when none)."""
    return pd.read_parquet(path) if path.exists() else empty_conflicts()


def save_table(table: pd.DataFrame, path: Path) -> None:
    """Store the graph or the conflicts atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    text = {c: str for c in table.columns if c not in ("linked_at", "claimed_at")}
    table.astype(text).to_parquet(tmp, index=False)
    os.replace(tmp, path)


def save_graph(graph: pd.DataFrame, path: Path) -> None:
    """Store the graph atomically."""
    save_table(graph, path)


def conflicts_path(graph_path: Path) -> Path:
    """Where the conflicts of the graph at ``graph_path`` are kept."""
    return graph_path.with_name("conflicts.parquet")
