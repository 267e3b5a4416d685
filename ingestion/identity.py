"""Identity stitching: anonymous and device ids are linked to known users; the graph is kept."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from base.durable import replace_durably
from base.text_values import text_array

GRAPH_COLUMNS = ("alias", "kind", "user_id", "linked_at", "event_id", "batch_id")
"""One merge per row: ``alias`` (of ``kind``) was linked to ``user_id`` at ``linked_at`` by ``event_id``."""
CONFLICT_COLUMNS = ("alias", "kind", "user_id", "claimed_by", "claimed_at", "event_id", "batch_id")
"""An alias already linked to ``user_id`` that a later event (``event_id``) claimed for ``claimed_by``."""
_ALIAS_FIELDS = {"anonymous": "anonymous_id", "device": "device_id"}


def empty_graph() -> pd.DataFrame:
    """An identity graph with no links."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in GRAPH_COLUMNS})


@dataclass(frozen=True)
class IdentityColumns:
    """The columns stitching reads, as Arrow arrays (from a pandas frame or an Arrow table)."""

    user: pa.Array
    anonymous: pa.Array
    device: pa.Array
    timestamp: pa.Array
    event_id: pa.Array

    @classmethod
    def of(cls, events: pd.DataFrame | pa.Table) -> "IdentityColumns":
        """The identity columns of ``events`` (a missing alias column counts as all null)."""
        n = len(events)

        names = events.column_names if isinstance(events, pa.Table) else list(events.columns)

        def get(name: str) -> pa.Array:
            if name not in names:
                return pa.nulls(n, pa.string())
            col = events[name]
            if isinstance(col, pa.ChunkedArray):
                return col.combine_chunks()
            return text_array(col) if name != "timestamp" else pa.array(col, from_pandas=True)

        return cls(get("user_id"), get("anonymous_id"), get("device_id"), get("timestamp"), get("event_id"))

    def alias(self, kind: str) -> pa.Array:
        """The alias column of ``kind`` (``anonymous`` or ``device``)."""
        return self.anonymous if kind == "anonymous" else self.device


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as numpy (null counts as False)."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _valid(values: pa.Array) -> np.ndarray:
    return _mask(pc.is_valid(values))


def _first_rows(rows: np.ndarray, keys: list[pa.Array], timestamp: pa.Array) -> np.ndarray:
    """Of ``rows``, the earliest row per distinct key (ties: the first in order), ordered by time."""
    if not len(rows):
        return rows
    codes = np.zeros(len(rows), dtype=np.int64)
    for key in keys:
        encoded = pc.dictionary_encode(key.take(pa.array(rows)))
        codes = codes * (len(encoded.dictionary) + 1) + encoded.indices.to_numpy(zero_copy_only=False)
    times = pc.cast(timestamp.take(pa.array(rows)), pa.int64()).to_numpy(zero_copy_only=False)
    order = np.lexsort((np.arange(len(rows)), times, codes))
    first = np.ones(len(order), dtype=bool)
    first[1:] = codes[order][1:] != codes[order][:-1]
    chosen = order[first]
    return rows[chosen[np.lexsort((chosen, times[chosen]))]]


def _link_frame(cols: IdentityColumns, rows: np.ndarray, kind: str, alias: pa.Array, user: pa.Array,
                batch_id: str | np.ndarray) -> pd.DataFrame:
    """Graph rows for the links carried by ``rows``."""
    take = pa.array(rows)
    batch = batch_id[rows] if isinstance(batch_id, np.ndarray) else batch_id
    return pd.DataFrame({"alias": alias.take(take).to_pandas(), "kind": kind, "user_id": user.take(take).to_pandas(),
                         "linked_at": cols.timestamp.take(take).to_pandas(),
                         "event_id": cols.event_id.take(take).to_pandas(), "batch_id": batch})


def links_of(cols: IdentityColumns, batch_id: str | np.ndarray, among: np.ndarray | None = None) -> pd.DataFrame:
    """Alias → user links of the rows ``among`` (all rows when None) that carry both."""
    user_ok = _valid(cols.user) if among is None else among & _valid(cols.user)
    frames = []
    for kind in _ALIAS_FIELDS:
        alias = cols.alias(kind)
        rows = np.flatnonzero(user_ok & _valid(alias))
        # one link per (alias, user): the earliest; distinct users per alias survive (conflicts)
        frames.append(_link_frame(cols, _first_rows(rows, [alias, cols.user], cols.timestamp), kind, alias,
                                  cols.user, batch_id))
    links = pd.concat(frames, ignore_index=True)
    links = links.sort_values("linked_at", kind="stable")
    return links.loc[:, list(GRAPH_COLUMNS)].reset_index(drop=True)


def link_carriers(cols: IdentityColumns) -> np.ndarray:
    """Rows that can link an alias: a user with an anonymous or device id, or both aliases (a bridge)."""
    anonymous, device = _valid(cols.anonymous), _valid(cols.device)
    return (_valid(cols.user) & (anonymous | device)) | (anonymous & device)


def links_from(events: pd.DataFrame | pa.Table, batch_id: str | np.ndarray = "") -> pd.DataFrame:
    """Alias → user links carried by events that know both (identify/login events, signed-in rows).

    ``batch_id`` names the batch of every link, or per event row (an array) for a group of batches.
    """
    if not len(events):
        return empty_graph()
    return links_of(IdentityColumns.of(events), batch_id)


POINTER_PREFIXES = ("anon:", "device:")
"""A link whose ``user_id`` starts with one of these points at another alias (a bridge), not a user."""


def _starts(arr: pa.Array, prefixes: str | tuple[str, ...]) -> np.ndarray:
    hit = np.zeros(len(arr), dtype=bool)
    for prefix in (prefixes,) if isinstance(prefixes, str) else prefixes:
        hit |= _mask(pc.starts_with(arr, prefix))
    return hit


def pointer_mask(values: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """True where an Arrow id column holds a visitor alias (``anon:…``/``device:…``), False for nulls."""
    hit = pc.starts_with(values, POINTER_PREFIXES[0])
    for prefix in POINTER_PREFIXES[1:]:
        hit = pc.or_(hit, pc.starts_with(values, prefix))
    return pc.fill_null(hit, False)


def is_pointer(values: pd.Series) -> pd.Series:
    """True where a graph ``user_id`` is a pointer to another alias (False for nulls)."""
    return pd.Series(_starts(text_array(values), POINTER_PREFIXES), index=values.index)


def merge_links(graph: pd.DataFrame, new_links: pd.DataFrame) -> pd.DataFrame:
    """Add new links; an alias keeps its earliest link to a user (later conflicting claims are
    ignored); a bridge to another alias only stands until the alias is linked to a user directly.
    The result is sorted by (kind, alias), one row per alias."""
    if not graph.empty and not new_links.empty:
        merged = _merge_into_sorted(graph, _merge_sorting(new_links))
        if merged is not None:
            return merged
    parts = [g for g in (graph, new_links) if not g.empty]
    if not parts:
        return empty_graph()
    combined = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
    return _merge_sorting(combined)


_LINK_ORDER = ("kind", "alias", "pointer", "linked_at", "user_id")
"""The graph's sort key: an alias's rows together, a direct link before a bridge, then the earliest."""


def _merge_sorting(links: pd.DataFrame) -> pd.DataFrame:
    """One row per (kind, alias), sorted: the earliest link wins; two claims at the same instant are
    settled by user id, so the result does not depend on the order the batches arrive in (then by
    order in ``links``). Sorted by Arrow (a stable multi-key sort; UTF-8 byte order is Python's string
    order): pandas' sort of a group's millions of object strings was most of a large ingest's stitching."""
    if links.empty:
        return links.reset_index(drop=True)
    try:
        user = text_array(links["user_id"])
        keys = pa.table({"kind": text_array(links["kind"]), "alias": text_array(links["alias"]),
                         "pointer": pointer_mask(user), "linked_at": pa.array(links["linked_at"], from_pandas=True),
                         "user_id": user})
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column Arrow cannot type: pandas' sort
        return _merge_sorting_pandas(links)
    if keys["kind"].null_count or keys["alias"].null_count:  # pandas counts two nulls as one alias
        return _merge_sorting_pandas(links)
    order = pc.sort_indices(keys, sort_keys=[(c, "ascending", "at_end") for c in _LINK_ORDER]).to_numpy()
    first = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        taken = pa.array(order)
        kind, alias = (keys[c].take(taken).combine_chunks() for c in ("kind", "alias"))
        n = len(order) - 1
        first[1:] = _mask(pc.or_(pc.not_equal(kind.slice(1), kind.slice(0, n)),
                                 pc.not_equal(alias.slice(1), alias.slice(0, n))))
    return links.take(order[first]).reset_index(drop=True)


def _merge_sorting_pandas(links: pd.DataFrame) -> pd.DataFrame:
    """:func:`_merge_sorting` by pandas (for columns Arrow cannot type)."""
    links = links.assign(_pointer=is_pointer(links["user_id"]))
    links = links.sort_values(["kind", "alias", "_pointer", "linked_at", "user_id"], kind="stable")
    return links.drop_duplicates(["kind", "alias"], keep="first").drop(columns="_pointer").reset_index(drop=True)


def _alias_positions(graph: pd.DataFrame, links: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """Where each of ``links``' (kind, alias) is, or would be inserted, in ``graph`` sorted by (kind,
    alias) with one row per alias: (positions, found). None when ``graph`` is not such a graph."""
    kinds, aliases = graph["kind"].to_numpy(dtype=object), graph["alias"].to_numpy(dtype=object)
    pos = np.zeros(len(links), dtype=np.int64)
    found = np.zeros(len(links), dtype=bool)
    want_kind, want_alias = links["kind"].to_numpy(dtype=object), links["alias"].to_numpy(dtype=object)
    lo = 0
    for kind in sorted(set(kinds.tolist()) | set(want_kind.tolist())):
        hi = lo + int(np.count_nonzero(kinds[lo:] == kind)) if lo < len(kinds) and kinds[lo] == kind else lo
        block = aliases[lo:hi]
        if not bool(np.all(kinds[lo:hi] == kind)) or (len(block) > 1 and not bool(np.all(block[1:] > block[:-1]))):
            return None  # kinds not grouped, aliases unsorted, or an alias twice
        rows = np.flatnonzero(want_kind == kind)
        if len(rows):
            at = np.searchsorted(block, want_alias[rows]) if len(block) else np.zeros(len(rows), dtype=np.int64)
            hit = at < len(block)
            hit[hit] = block[at[hit]] == want_alias[rows][hit]
            pos[rows], found[rows] = lo + at, hit
        lo = hi
    return (pos, found) if lo == len(kinds) else None  # kinds out of order: not a sorted graph


def _in_graph(graph: pd.DataFrame, links: pd.DataFrame, inverse: bool = False) -> np.ndarray:
    """Which ``links`` name an alias of ``graph`` (``inverse``: which ``graph`` rows have an alias that
    ``links`` name); by binary search in a sorted graph, else by a hash join."""
    if graph.empty or links.empty:
        return np.zeros(len(links if not inverse else graph), dtype=bool)
    located = _alias_positions(graph, links)
    if located is not None:
        pos, found = located
        if not inverse:
            return found
        out = np.zeros(len(graph), dtype=bool)
        out[pos[found]] = True
        return out
    left, right = (graph, links) if inverse else (links, graph)
    keys = right.loc[:, ["kind", "alias"]].drop_duplicates()
    hit = left.loc[:, ["kind", "alias"]].merge(keys, on=["kind", "alias"], how="left", indicator=True)
    return (hit["_merge"] == "both").to_numpy()


def _merge_into_sorted(graph: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame | None:
    """:func:`merge_links` without sorting the whole graph (the graph grows by a group's links; sorting
    it all again made an ingest quadratic): ``new`` (one sorted row per alias) replaces the graph rows it
    beats and the new aliases are inserted in order. None when ``graph`` is not sorted with one row per
    alias, or a compared value is missing (the caller sorts everything)."""
    located = _alias_positions(graph, new)
    if located is None:
        return None
    pos, found = located
    old = graph.iloc[pos[found]]
    cand = new.loc[found]
    for col in ("user_id", "linked_at"):
        if old[col].isna().any() or cand[col].isna().any():
            return None
    old_key = list(zip(is_pointer(old["user_id"]).tolist(), old["linked_at"].tolist(), old["user_id"].tolist()))
    new_key = list(zip(is_pointer(cand["user_id"]).tolist(), cand["linked_at"].tolist(), cand["user_id"].tolist()))
    wins = np.fromiter((n < o for n, o in zip(new_key, old_key)), dtype=bool, count=len(old_key))  # ties: the graph's
    out = graph.loc[:, list(GRAPH_COLUMNS)]
    if wins.any():
        out = out.copy()
        at = pos[found][wins]
        for i, col in enumerate(GRAPH_COLUMNS):
            out.iloc[at, i] = cand[col].array[wins]
    added = new.loc[~found, list(GRAPH_COLUMNS)]
    if added.empty:
        return out.reset_index(drop=True)
    # graph row i sorts at 2i+1, a new alias inserted before graph row p at 2p (new rows are sorted already)
    order = np.argsort(np.concatenate([2 * np.arange(len(out)) + 1, 2 * pos[~found]]), kind="stable")
    both = pd.concat([out, added], ignore_index=True)
    return both.iloc[order].reset_index(drop=True)


def _bridges(cols: IdentityColumns, batch_id: str | np.ndarray, among: np.ndarray | None = None) -> pd.DataFrame:
    """Links from an anonymous id to the device it was seen with, for events with no known user (of
    the rows ``among``, all when None)."""
    carrying = ~_valid(cols.user) & _valid(cols.anonymous) & _valid(cols.device)
    rows = np.flatnonzero(carrying if among is None else carrying & among)
    rows = _first_rows(rows, [cols.anonymous], cols.timestamp)
    pointer = pc.binary_join_element_wise("device:", cols.device, "")
    return _link_frame(cols, rows, "anonymous", cols.anonymous, pointer, batch_id).loc[:, list(GRAPH_COLUMNS)]


def conflicts_from(graph: pd.DataFrame, new_links: pd.DataFrame, previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """Claims on an alias for a different user than ``graph`` (already merged) links it to: new links
    that lost, and links of the ``previous`` graph that an earlier claim arriving later displaced
    (a bridge replaced by a direct link is not a conflict)."""
    claims = new_links
    if previous is not None and not previous.empty and not new_links.empty:
        # only an alias the new links name can have changed hands
        previous = previous.loc[_in_graph(previous, new_links, inverse=True)]
        claims = pd.concat([new_links, previous.loc[~is_pointer(previous["user_id"])]], ignore_index=True)
    if claims.empty or graph.empty:
        return empty_conflicts()
    winner = graph.loc[:, ["kind", "alias", "user_id"]].rename(columns={"user_id": "linked"})
    claims = claims.merge(winner, on=["kind", "alias"], how="inner")
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


class _Lookups:
    """The graph as Arrow lookups: alias → linked id, per alias kind."""

    def __init__(self, graph: pd.DataFrame) -> None:
        self._by_kind = {}
        for kind in _ALIAS_FIELDS:
            part = graph.loc[graph["kind"] == kind]
            self._by_kind[kind] = (text_array(part["alias"]), text_array(part["user_id"]))

    def find(self, kind: str, keys: pa.Array) -> pa.Array:
        """The id each key is linked to (null when the key is not in the graph)."""
        aliases, users = self._by_kind[kind]
        if not len(aliases):
            return pa.nulls(len(keys), pa.string())
        return users.take(pc.index_in(keys, value_set=aliases))


def graph_lookups(graph: pd.DataFrame) -> _Lookups:
    """The graph prepared for :func:`resolve_users` (build it once to resolve many parts)."""
    return _Lookups(graph)


def resolve_users(cols: IdentityColumns, graph: pd.DataFrame | _Lookups) -> pa.Array:
    """Each event's user: its own id, else its aliases' through the graph (bridges followed); unlinked
    visitors keep a prefixed alias (``anon:…`` or ``device:…``) as their id. ``graph``: the graph, or
    its :func:`graph_lookups`."""
    lookups = graph if isinstance(graph, _Lookups) else _Lookups(graph)
    user = pc.coalesce(cols.user, lookups.find("anonymous", cols.anonymous), lookups.find("device", cols.device))
    for _ in range(3):  # follow bridges: visitor → device → user
        via = np.flatnonzero(_starts(user, "device:"))
        if not len(via):
            break
        current = user.take(pa.array(via))
        target = lookups.find("device", pc.utf8_slice_codeunits(current, len("device:")))
        moved = _mask(pc.and_(pc.is_valid(target), pc.not_equal(target, current)))
        if not moved.any():
            break
        values = np.asarray(user.to_numpy(zero_copy_only=False), dtype=object)
        values[via[moved]] = np.asarray(target.to_numpy(zero_copy_only=False), dtype=object)[moved]
        user = pa.array(values, type=pa.string(), from_pandas=True)
    visitor = pc.binary_join_element_wise("anon:", cols.anonymous, "")
    device = pc.binary_join_element_wise("device:", cols.device, "")
    return pc.coalesce(user, visitor, device)


def resolve(events: pd.DataFrame, graph: pd.DataFrame) -> pd.DataFrame:
    """Fill ``user_id`` from the graph; unlinked visitors keep a prefixed alias as their id."""
    out = events.copy(deep=False)
    out["user_id"] = pd.Series(resolve_users(IdentityColumns.of(events), graph).to_pandas(), index=events.index,
                               dtype=object)
    return out


def stitch_users(cols: IdentityColumns, graph: pd.DataFrame, batch_id: str | np.ndarray = "", rounds: int = 3,
                 links: pd.DataFrame | None = None, among: np.ndarray | None = None) -> tuple[pa.Array, pd.DataFrame]:
    """Grow ``graph`` with the events' links and resolve their users; returns (users, graph).

    Links are followed transitively: an event carrying an anonymous id and a device id already
    linked to a user links the anonymous id too (repeated up to ``rounds`` times, vectorised).
    ``batch_id`` is one name or one per row; ``links`` are the events' own links when known;
    only the rows ``among`` (all when None) link anything, every row is resolved.
    """
    graph = merge_links(graph, links_of(cols, batch_id, among) if links is None else links)
    graph = merge_links(graph, _bridges(cols, batch_id, among))
    users = resolve_users(cols, graph)
    bridges = ~_valid(cols.user) & _valid(cols.anonymous) & _valid(cols.device)
    if among is not None:
        bridges &= among
    for _ in range(rounds if bridges.any() else 0):  # only events carrying two aliases link one to the other
        known = bridges & _valid(users) & ~_starts(users, POINTER_PREFIXES)
        inferred = links_of(IdentityColumns(users, cols.anonymous, cols.device, cols.timestamp, cols.event_id),
                          batch_id, among=known)
        fresh = inferred.loc[~_in_graph(graph, inferred), list(GRAPH_COLUMNS)]
        if fresh.empty:
            break
        graph = merge_links(graph, fresh)
        users = resolve_users(cols, graph)
    return users, graph


def related_mask(graph: pd.DataFrame, cols: IdentityColumns) -> np.ndarray:
    """Which rows of ``graph`` (sorted, one per alias) stitching ``cols`` can read or change: the
    aliases the events carry, and the devices they point at (bridges followed as :func:`resolve_users`
    follows them)."""
    wanted = np.zeros(len(graph), dtype=bool)
    if graph.empty:
        return wanted
    kinds, aliases = graph["kind"], graph["alias"]
    by_kind = {kind: (kinds == kind).to_numpy() for kind in _ALIAS_FIELDS}
    for kind in _ALIAS_FIELDS:
        values = pc.drop_null(pc.unique(cols.alias(kind))).to_numpy(zero_copy_only=False)
        wanted |= by_kind[kind] & aliases.isin(values).to_numpy()
    for _ in range(3):  # visitor -> device -> user: the devices the wanted rows point at (any kind)
        pointing = graph["user_id"].loc[wanted]
        targets = pointing.loc[is_pointer(pointing)].str.removeprefix("device:")
        more = by_kind["device"] & ~wanted & aliases.isin(targets.to_numpy()).to_numpy()
        if not more.any():
            break
        wanted |= more
    return wanted


def _splice(graph: pd.DataFrame, at: np.ndarray, sub: pd.DataFrame, grown: pd.DataFrame) -> pd.DataFrame | None:
    """``graph`` with its rows at positions ``at`` (``sub``, in the graph's order) replaced by ``grown``
    (``sub`` after stitching: sorted, one row per alias, every alias of ``sub`` kept) and grown's new
    aliases inserted in order; the same graph as merging ``grown`` into ``graph`` (no other row can
    change), without comparing or re-sorting what is already settled. None when ``grown`` is not such
    a result (the caller merges)."""
    located = _alias_positions(sub, grown)
    if located is None:
        return None
    pos, found = located
    if int(found.sum()) != len(sub):
        return None
    out = graph.loc[:, list(GRAPH_COLUMNS)].copy()
    if found.any():
        rows = at[pos[found]]
        kept = grown.loc[found]
        for i, col in enumerate(GRAPH_COLUMNS):
            out.iloc[rows, i] = kept[col].array
    added = grown.loc[~found, list(GRAPH_COLUMNS)]
    if added.empty:
        return out.reset_index(drop=True)
    placed = _alias_positions(graph, added)
    if placed is None or placed[1].any():  # a new alias the graph already has: not a subgraph's result
        return None
    # graph row i sorts at 2i+1, a new alias inserted before graph row p at 2p (new rows are sorted already)
    order = np.argsort(np.concatenate([2 * np.arange(len(out)) + 1, 2 * placed[0]]), kind="stable")
    return pd.concat([out, added], ignore_index=True).iloc[order].reset_index(drop=True)


def stitch_group(cols: IdentityColumns, graph: pd.DataFrame, batch_id: str | np.ndarray, links: pd.DataFrame,
                 among: np.ndarray | None = None) -> tuple[pa.Array, pd.DataFrame, pd.DataFrame]:
    """:func:`stitch_users` and :func:`conflicts_from` on the rows of ``graph`` the events relate to,
    spliced back into the whole graph once; returns (users, graph, new conflicts). The same result as on
    the whole graph (no other row can be read or change), without rebuilding lookups over a graph of
    millions of aliases several times per group."""
    wanted = related_mask(graph, cols)
    sub = graph.loc[wanted].reset_index(drop=True)
    users, grown = stitch_users(cols, sub, batch_id, links=links, among=among)
    new = conflicts_from(grown, links, previous=sub)
    spliced = _splice(graph, np.flatnonzero(wanted), sub, grown) if not graph.empty else None
    return users, spliced if spliced is not None else merge_links(graph, grown), new


def stitch(events: pd.DataFrame, graph: pd.DataFrame, batch_id: str = "", rounds: int = 3,
           links: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Grow ``graph`` with the batch's links and resolve its events; returns (events, graph)."""
    users, graph = stitch_users(IdentityColumns.of(events), graph, batch_id, rounds, links)
    out = events.copy(deep=False)
    out["user_id"] = pd.Series(users.to_pandas(), index=events.index, dtype=object)
    return out, graph


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
    replace_durably(tmp, path)


def save_graph(graph: pd.DataFrame, path: Path) -> None:
    """Store the graph atomically."""
    save_table(graph, path)


def conflicts_path(graph_path: Path) -> Path:
    """Where the conflicts of the graph at ``graph_path`` are kept."""
    return graph_path.with_name("conflicts.parquet")
