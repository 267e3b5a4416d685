"""Identity stitching: anonymous and device ids are linked to known users; the graph is kept."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd

GRAPH_COLUMNS = ("alias", "kind", "user_id", "linked_at", "event_id")
_ALIAS_FIELDS = {"anonymous": "anonymous_id", "device": "device_id"}


def empty_graph() -> pd.DataFrame:
    """An identity graph with no links."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in GRAPH_COLUMNS})


def links_from(events: pd.DataFrame) -> pd.DataFrame:
    """Alias → user links carried by events that know both (identify/login events, signed-in rows)."""
    frames = []
    for kind, field in _ALIAS_FIELDS.items():
        both = events[field].notna() & events["user_id"].notna()
        part = events.loc[both, [field, "user_id", "timestamp", "event_id"]]
        part = part.rename(columns={field: "alias", "timestamp": "linked_at"})
        part["kind"] = kind
        frames.append(part)
    links = pd.concat(frames, ignore_index=True) if frames else empty_graph()
    return links.loc[:, list(GRAPH_COLUMNS)]


def merge_links(graph: pd.DataFrame, new_links: pd.DataFrame) -> pd.DataFrame:
    """Add new links; an alias keeps its earliest link (later conflicting claims are ignored)."""
    parts = [g for g in (graph, new_links) if not g.empty]
    if not parts:
        return empty_graph()
    combined = pd.concat(parts, ignore_index=True)
    combined = combined.sort_values(["kind", "alias", "linked_at"], kind="stable")
    return combined.drop_duplicates(["kind", "alias"], keep="first").reset_index(drop=True)


def resolve(events: pd.DataFrame, graph: pd.DataFrame) -> pd.DataFrame:
    """Fill ``user_id`` from the graph; unlinked visitors keep a prefixed alias as their id."""
    out = events.copy()
    user = out["user_id"].astype(object)
    for kind, field in _ALIAS_FIELDS.items():
        lookup = graph.loc[graph["kind"] == kind].set_index("alias")["user_id"]
        user = user.where(user.notna(), out[field].map(lookup))
    for prefix, field in (("anon:", "anonymous_id"), ("device:", "device_id")):
        user = user.where(user.notna(), prefix + out[field].astype(object).where(out[field].notna(), ""))
        user = user.where(user != prefix, None)
    out["user_id"] = user
    return out


def load_graph(path: Path) -> pd.DataFrame:
    """The stored identity graph (empty when none)."""
    return pd.read_parquet(path) if path.exists() else empty_graph()


def save_graph(graph: pd.DataFrame, path: Path) -> None:
    """Store the graph atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    graph.astype({"alias": str, "kind": str, "user_id": str, "event_id": str}).to_parquet(tmp, index=False)
    os.replace(tmp, path)
