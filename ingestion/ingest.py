"""Ingest the inbox: read → raw-shape gate → canonicalise → stitch → row gate → dedupe → batch gate →
clean store. Each file is one batch with its own ledger record and accounting.

Files are processed in commit groups (``validation.group_rows`` rows): each GX suite runs once per
group on a vectorised table (the group's canonical rows, one profile row per batch, one per raw
file) rather than once per file, identities are stitched once over the whole group, and the group's
clean events are written as one file per day. A group commits when its ledger line (the records of
all its batches) is appended; anything a crash leaves behind before that is removed on the next run
and the files are processed again.

Rows travel as Arrow tables from the reader to the Parquet writer; only what pandas must see (the
narrow frame Great Expectations checks, the rows that go to the quarantine) is converted.

One :class:`IngestRun` holds what every group of a run shares (the event-id index, the identity
graph, one Great Expectations session) so nothing is re-read or re-built per group.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ingestion.canonical import MissingColumns, canonicalise_table
from ingestion.frames import renumber_series
from ingestion.event_store import EventIdIndex, id_hashes, write_batch, write_id_hashes
from ingestion.identity import (
    IdentityColumns,
    link_carriers,
    conflicts_path,
    links_of,
    load_conflicts,
    load_graph,
    merge_conflicts,
    save_table,
    stitch_group,
)
from ingestion.ledger import BatchRecord, append_torn_safe, read_ledger
from ingestion.manifest import InboxManifest
from ingestion.api_log import seal_all
from ingestion.outliers import outlier_reasons
from ingestion.privacy import admitted
from ingestion.isolated_reader import DEFAULT_READER, IsolatedReader
from ingestion.readers import RawBatch
from ingestion.rollback import committed_names, roll_back
from base.config import ChannelConfig, Settings
from base.paths import DataPaths
from base.progress import step
from base.writer_lock import writer_lock
from validation.quarantine import quarantine_frame, top_reasons, write_quarantine

if TYPE_CHECKING:
    from validation.gate import GateSession, Failure

GATE_COLUMNS = ("event_id", "user_id", "event_type", "channel", "timestamp", "amount", "currency", "quantity")
"""Columns the row gate reads (only these become pandas, for Great Expectations)."""
CATEGORIES = ("user_id", "event_type", "channel", "currency")
"""Gate columns handed to pandas as categoricals (few distinct values; no Python string per row)."""


@dataclass
class IngestSummary:
    """Totals over the batches processed in one run, and where the time went."""

    batches: list[BatchRecord] = field(default_factory=list)
    skipped_files: int = 0
    messages: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    data_docs: Path | None = None

    def total(self, name: str) -> int:
        """Sum of one counter over the batches."""
        return sum(getattr(b, name) for b in self.batches)


@dataclass(frozen=True)
class PendingFile:
    """A file in a channel folder that the ledger has not seen (by content hash)."""

    channel: str
    cfg: ChannelConfig
    path: Path
    digest: str


def pending_files(settings: Settings, paths: DataPaths) -> list[PendingFile]:
    """Files in the inbox whose content hash is not in the ledger yet (each content once). A file is
    hashed once: the inbox manifest remembers the digest of every file by its size, time and inode,
    so a run reads only what is new."""
    done = {r.sha256 for r in read_ledger(paths.ledger)}
    seal_all(paths.event_log(settings.serving.event_log))  # the service's live log segments become files
    manifest = InboxManifest.load(paths.inbox_manifest)
    pending, seen = [], set()
    for name, cfg in settings.channels.items():
        for path in sorted(settings.data_dir.glob(cfg.path)):
            if not path.is_file():
                continue
            digest = manifest.digest(path)
            if digest in done or digest in seen:
                continue
            seen.add(digest)
            pending.append(PendingFile(name, cfg, path, digest))
    manifest.save()
    return pending


def _read_rejects(raw: RawBatch, source: str, batch_id: str) -> pd.DataFrame:
    """Quarantine records for rows the reader could not read (bad bytes, bad JSON, wrong field count)."""
    frame = pd.DataFrame({"source_file": source, "source_row": [r[0] for r in raw.rejects],
                          "text": [r[2] for r in raw.rejects]})
    return quarantine_frame(frame, batch_id=batch_id, check="readable_row", column=None,
                            reason=pd.Series([f"{source} row {r[0]}: {r[1]}" for r in raw.rejects], dtype=object))


def _mapping_rejects(rejects: pd.DataFrame, source: str, batch_id: str) -> pd.DataFrame:
    rej = rejects.assign(source_file=source)
    return quarantine_frame(rej.drop(columns=["check", "column", "reason"]), batch_id=batch_id,
                            check="canonical_mapping", column=None, reason=rej["reason"]).assign(
        column=rej["column"].to_numpy())


@dataclass
class Staged:
    """One file on its way through a commit group (what its ledger record will say, and its rows)."""

    item: PendingFile
    batch_id: str
    source: str
    released_from: str
    raw: RawBatch
    rows_read: int
    quarantined: list[pd.DataFrame] = field(default_factory=list)
    status: str = "accepted"
    message: str = ""
    events: pa.Table | None = None
    """Canonical, stitched events (positions 0..n-1) while the batch is still in the gate."""
    duplicates: int = 0
    outliers: int = 0
    accepted_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    """Positions in ``events`` of the rows that go to the clean store."""
    accepted_hashes: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    """64-bit hashes of the accepted event ids (for the run's event-id index)."""
    held_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    """Positions in ``events`` of the rows the gate and the outlier rule sent to the quarantine."""
    outlier_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    """Positions of rows the outlier rule sent to the quarantine."""
    outlier_records: pd.DataFrame | None = None
    """Rows the outlier rule moved to quarantine (``outliers.action: quarantine``)."""

    def fail(self, message: str) -> None:
        """The whole batch is quarantined (its rows are recorded by the caller)."""
        self.status, self.message, self.events = "batch_quarantined", message, None


@dataclass(frozen=True)
class GroupIdentity:
    """What stitching a commit group started from: its rows' identity columns, each row's batch, and
    the run's graph and conflicts before the group (so the group can be stitched again)."""

    cols: IdentityColumns
    batch: np.ndarray
    sizes: np.ndarray
    """Rows per batch, in group order."""
    graph: pd.DataFrame
    conflicts: pd.DataFrame


def group_name(batch_ids: list[str]) -> str:
    """Name of a commit group (its event files are ``date=DAY/<name>.parquet``)."""
    return batch_ids[0] if len(batch_ids) == 1 else f"{batch_ids[0]}+{len(batch_ids) - 1}"


class IngestRun:
    """State shared by the groups of one run; :meth:`commit_group` processes and commits files together.
    Files are parsed in the run's reader worker (:mod:`ingestion.isolated_reader`); :meth:`close` stops it."""

    def __init__(self, settings: Settings, *, gate: "GateSession | None" = None, with_docs: bool = True,
                 reader: str = DEFAULT_READER) -> None:
        self.settings = settings
        self.paths = DataPaths(settings.data_dir)
        self.reader = IsolatedReader(settings.validation.limits, reader)
        self.rolled_back = roll_back(self.paths, committed_names(read_ledger(self.paths.ledger)))
        self.index = EventIdIndex.load(self.paths.events, self.paths.event_ids)
        self.graph = load_graph(self.paths.identity_graph)
        self.conflicts = load_conflicts(conflicts_path(self.paths.identity_graph))
        self._saved = (self.graph, self.conflicts)
        self._gate = gate
        self._with_docs = with_docs
        self.timings: dict[str, float] = {"read": 0.0, "canonicalise": 0.0, "stitch+dedupe": 0.0, "gate raw": 0.0,
                                          "gate": 0.0, "write": 0.0, "data docs": 0.0}

    @property
    def gate(self) -> "GateSession":
        """The run's GX session (created on first use: importing GX takes seconds)."""
        if self._gate is None:
            from validation.gate import GateSession

            self._gate = GateSession(base_currency=self.settings.base_currency,
                                     context_root=self.paths.gx if self._with_docs else None,
                                     keep_runs=self.settings.validation.keep_runs,
                                     timestamps=self.settings.validation.timestamps,
                                     stored=newest_stored_day(self.paths.events))
        return self._gate

    def _lap(self, name: str, started: float) -> float:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - started
        return now

    def source_name(self, path: Path) -> str:
        """How the file is named in the ledger and quarantine (relative to the data directory)."""
        root = self.settings.data_dir
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    def read(self, item: PendingFile, *, batch_id: str | None = None, released_from: str = "") -> Staged:
        """Read one file (never raises for bad content: unreadable rows become quarantine records)."""
        t = time.perf_counter()
        return self._staged(item, self.reader.read(item.path, item.cfg), t, batch_id=batch_id,
                            released_from=released_from)

    def read_all(self, items: Iterable[PendingFile]) -> Iterator[Staged]:
        """Read files in order, the worker reading ahead of the caller (:meth:`IsolatedReader.read_all`);
        ``items`` may be lazy (the door hands files on as it scrubs them)."""
        sent: deque[PendingFile] = deque()

        def requests() -> Iterator[tuple[Path, ChannelConfig]]:
            for item in items:
                sent.append(item)
                yield item.path, item.cfg

        t = time.perf_counter()
        for raw in self.reader.read_all(requests()):
            yield self._staged(sent.popleft(), raw, t)
            t = time.perf_counter()

    def _staged(self, item: PendingFile, raw: RawBatch, started: float, *, batch_id: str | None = None,
                released_from: str = "") -> Staged:
        batch_id = batch_id or f"{item.channel}-{item.digest[:16]}"
        source = self.source_name(item.path)
        staged = Staged(item, batch_id, source, released_from, raw, rows_read=raw.table.num_rows + len(raw.rejects))
        if raw.rejects:
            staged.quarantined.append(_read_rejects(raw, source, batch_id))
        if raw.error is not None:
            staged.status, staged.message = "batch_quarantined", raw.error
        self._lap("read", started)
        return staged

    def batch(self, item: PendingFile, *, batch_id: str | None = None, released_from: str = "") -> BatchRecord:
        """Process one file end to end and commit it to the ledger on its own (re-runnable after a crash)."""
        return self.commit_group([self.read(item, batch_id=batch_id, released_from=released_from)])[0]

    def commit_group(self, group: list[Staged]) -> list[BatchRecord]:
        """Gate, write and commit read files together: one GX run per suite, one file per day, one ledger line."""
        name = group_name([s.batch_id for s in group])
        self._gate_raw(group, name)
        t = time.perf_counter()
        for staged in group:
            self._canonicalise(staged)
        t = self._lap("canonicalise", t)
        live = [s for s in group if s.events is not None]
        stitched = self._stitch(live)
        self._lap("stitch+dedupe", t)
        self._gate_events(live, name)
        if stitched is not None:
            t = time.perf_counter()
            self._unlink_held(live, stitched)
            self._lap("stitch+dedupe", t)
        return self._commit(group, name)

    def _gate_raw(self, group: list[Staged], name: str) -> None:
        """The raw-shape suite on one profile row per readable file; failing files are quarantined whole."""
        from validation.gate import RAW_SUITE
        from validation.raw_suite import raw_profile

        t = time.perf_counter()
        todo = [s for s in group if s.status == "accepted" and s.raw.table.num_rows]
        verdicts = self.gate.check_profiles(RAW_SUITE, [raw_profile(s.raw.table, s.item.cfg) for s in todo],
                                            run_name=name)
        for staged, failures in zip(todo, verdicts):
            if failures:
                message = f"{staged.source}: raw shape check failed: " + "; ".join(f.describe() for f in failures)
                self._quarantine_raw(staged, "raw_shape", message)
        self._lap("gate raw", t)

    def _quarantine_raw(self, staged: Staged, check: str, message: str) -> None:
        staged.quarantined.append(quarantine_frame(staged.raw.rows.assign(source_file=staged.source),
                                                   batch_id=staged.batch_id, check=check, column=None, reason=message))
        staged.fail(message)

    def _canonicalise(self, staged: Staged) -> None:
        """Map the raw rows onto canonical events (unmappable rows are quarantined)."""
        if staged.status != "accepted" or not staged.raw.table.num_rows:
            return
        item = staged.item
        try:
            mapped = canonicalise_table(staged.raw.table, item.channel, item.cfg, self.settings, staged.source,
                                        file_digest=item.digest)
        except MissingColumns as e:
            self._quarantine_raw(staged, "required_columns", str(e))
            return
        except Exception as e:  # noqa: BLE001 - one file that breaks the mapping must not stop its group
            self._quarantine_raw(staged, "canonical_mapping", f"{staged.source}: cannot map: {type(e).__name__}: {e}")
            return
        if not mapped.rejects.empty:
            staged.quarantined.append(_mapping_rejects(mapped.rejects, staged.source, staged.batch_id))
        staged.events = mapped.events

    def _stitch(self, group: list[Staged], among: np.ndarray | None = None,
                before: "GroupIdentity | None" = None) -> "GroupIdentity | None":
        """Re-key aliases through the graph grown by the whole group's links (kept in memory until the
        group commits): a visitor's events are stored under the user even when the login came in a
        later file of the same group. ``among`` limits the rows whose links count; ``before`` is an
        earlier stitch of the same group to redo (batches that failed since are left as they are)."""
        if before is None:
            if not group:
                return None
            sizes = np.asarray([len(s.events) for s in group])  # type: ignore[arg-type]
            batch = np.repeat(np.asarray([s.batch_id for s in group], dtype=object), sizes)
            cols = IdentityColumns.of(pa.concat_tables([s.events for s in group]))  # type: ignore[misc]
            before = GroupIdentity(cols, batch, sizes, self.graph, self.conflicts)
        links = links_of(before.cols, before.batch, among)
        users, graph, new = stitch_group(before.cols, before.graph, before.batch, links, among)
        self.conflicts = merge_conflicts(before.conflicts, new) if not new.empty else before.conflicts
        self.graph = graph
        for staged, start, size in zip(group, np.cumsum([0, *before.sizes[:-1]]), before.sizes):
            if staged.events is not None:
                at = staged.events.schema.get_field_index("user_id")
                staged.events = staged.events.set_column(at, "user_id", users.slice(int(start), int(size)))
        return before

    def _unlink_held(self, group: list[Staged], stitched: "GroupIdentity") -> None:
        """Quarantined rows link nothing: when a row the gate quarantined carries a link (a user and an
        alias, or both aliases), the group is stitched again without the quarantined rows."""
        held = np.zeros(int(stitched.sizes.sum()), dtype=bool)
        for staged, start in zip(group, np.cumsum([0, *stitched.sizes[:-1]])):
            held[start + staged.held_rows] = True
        if held.any() and (link_carriers(stitched.cols) & held).any():
            self._stitch(group, among=~held, before=stitched)

    def _gate_events(self, group: list[Staged], name: str) -> None:
        """Row gate on the group's rows, then dedupe and outliers per batch, then the batch gate.

        Rows that fail a row check are quarantined and never claim an event id, so a valid
        re-delivery of the same event is still admitted. A batch that fails a batch-level check
        claims no ids either: the later batches of the group are deduplicated again without it.
        """
        from validation.gate import BATCHES_SUITE, failed_rows, row_reasons

        if not group:
            return
        t = time.perf_counter()
        bounds = np.cumsum([0] + [len(s.events) for s in group])  # type: ignore[arg-type]
        table = pa.concat_tables([s.events for s in group])  # type: ignore[misc]
        ids = table["event_id"].to_numpy()
        hashes = id_hashes(ids)
        stored = self.index.contains_hashes(hashes)
        t = self._lap("stitch+dedupe", t)
        rows = gate_frame(table, ids)
        failures, _ = self.gate.check_rows(rows, run_name=name)
        reasons = row_reasons(rows, failures)
        t = self._lap("gate", t)
        bad = failed_rows(len(rows), failures)
        owner = np.repeat(np.arange(len(group)), np.diff(bounds))
        excluded: set[int] = set()
        while True:
            keep = ~bad & ~stored & ~_claimed(hashes, owner, ~bad & ~np.isin(owner, list(excluded)), ~bad)
            profiles, kept = [], []
            for i, staged in enumerate(group):
                part = slice(bounds[i], bounds[i + 1])
                profile, final = self._batch_rows(staged, bad[part], keep[part], hashes[part])
                profiles.append(profile)
                kept.append(final)
            t = self._lap("stitch+dedupe", t)
            verdicts = self.gate.check_profiles(BATCHES_SUITE, profiles, run_name=name)
            t = self._lap("gate", t)
            failed = [i for i, v in enumerate(verdicts) if v and i not in excluded]
            if not failed:
                break
            excluded.add(failed[0])  # earlier batches are final; later ones are deduplicated again
        for i, staged in enumerate(group):
            part = slice(bounds[i], bounds[i + 1])
            held = self._split(staged, kept[i], bad[part], tuple(r.iloc[part] for r in reasons), verdicts[i])
            staged.accepted_hashes = hashes[part][staged.accepted_rows]
            staged.held_rows = np.concatenate([held, staged.outlier_rows]).astype(np.int64)
        self._lap("gate", t)

    def _batch_rows(self, staged: Staged, bad: np.ndarray, keep: np.ndarray,
                    hashes: np.ndarray) -> tuple[dict, np.ndarray]:
        """Apply the outlier rule to one batch's new rows (``keep``); its profile and the rows that were
        not dropped as duplicates or outliers (``bad`` rows included, they go on to the quarantine)."""
        from validation.profiles import batch_profile

        events = staged.events
        assert events is not None
        staged.duplicates = int((~bad & ~keep).sum())
        amount = pc.fill_null(events["amount"], np.nan).to_numpy()
        priced = np.flatnonzero(keep & ~np.isnan(amount))  # the rule only looks at amounts
        kinds = events["event_type"].take(pa.array(priced)).to_numpy(zero_copy_only=False)
        reasons = outlier_reasons(pd.DataFrame({"event_type": kinds, "amount": amount[priced]}),
                                  self.settings.outliers)
        flags = (reasons != "").to_numpy()
        staged.outliers = int(flags.sum())
        quarantine = self.settings.outliers.action == "quarantine" and flags.any()
        out_rows = priced[flags] if quarantine else np.empty(0, dtype=np.int64)
        final = keep.copy()
        final[out_rows] = False
        staged.outlier_rows = out_rows
        flagged = np.zeros(len(events), dtype=bool)
        flagged[priced[flags]] = True
        staged.events = events.set_column(events.schema.get_field_index("is_outlier"), "is_outlier",
                                          pa.array(flagged))
        staged.outlier_records = (quarantine_frame(_rows(staged.events, out_rows), batch_id=staged.batch_id,
                                                   check="outlier_rule", column="amount",
                                                   reason=renumber_series(reasons[flags]))
                                  if quarantine else None)
        profile = batch_profile(staged.events, final, id_hashes=hashes)
        profile["rows"] = int(final.sum() + bad.sum())  # rows that reach the gate, as a per-file gate saw them
        return profile, final | bad

    def _split(self, staged: Staged, reach: np.ndarray, bad: np.ndarray, reasons: tuple[pd.Series, ...],
               batch: "list[Failure]") -> np.ndarray:
        """Accepted rows and quarantine records of one batch (every row that reached the gate when the
        batch failed); only the quarantined rows become pandas. Returns the quarantined positions."""
        from validation.gate import assemble

        events = staged.events
        assert events is not None
        held = np.flatnonzero(reach if batch else bad)
        picked = tuple(renumber_series(r.iloc[held]) for r in reasons)
        _, records, failed = assemble(_rows(events, held), picked, batch, staged.batch_id)  # type: ignore[arg-type]
        staged.quarantined += [r for r in (staged.outlier_records, records) if r is not None and not r.empty]
        staged.accepted_rows = np.flatnonzero(reach & ~bad) if not failed else np.empty(0, dtype=np.int64)
        if failed:
            staged.fail(f"{staged.source}: " + "; ".join(dict.fromkeys(f.describe() for f in batch)))
        return held

    def _commit(self, group: list[Staged], name: str) -> list[BatchRecord]:
        """Write quarantine and clean events, keep the identity graph, then append the group's ledger line."""
        t = time.perf_counter()
        records = []
        now = datetime.now(timezone.utc).isoformat()
        for s in group:
            held = pd.concat(s.quarantined, ignore_index=True) if s.quarantined else pd.DataFrame()
            write_quarantine(held, self.paths.quarantine, s.batch_id)
            status, message = s.status, s.message
            if status == "accepted" and len(held):
                whole = not len(s.accepted_rows) and not s.duplicates  # every row read was quarantined
                status = "quarantined" if whole else "partially_quarantined"
                if whole:
                    message = f"{s.source}: all {len(held)} rows quarantined: " + "; ".join(top_reasons(held))
            records.append(BatchRecord(
                batch_id=s.batch_id, channel=s.item.channel, file=s.source, sha256=s.item.digest,
                rows_read=s.rows_read, accepted=len(s.accepted_rows), quarantined=len(held), duplicates=s.duplicates,
                status=status, message=message, processed_at=now, outliers=s.outliers,
                released_from=s.released_from, group=name if len(group) > 1 else ""))
        accepted = [s for s in group if len(s.accepted_rows)]
        write_batch([s.events for s in accepted], self.paths.events, name,  # type: ignore[misc]
                    rows=[s.accepted_rows for s in accepted])
        stored = np.concatenate([s.accepted_hashes for s in group])
        if len(stored):
            write_id_hashes(stored, self.paths.event_ids, name)
        self._save_identity()
        append_torn_safe(self.paths.ledger, records if len(records) > 1 else records[0])  # the commit point
        self.index.add_hashes(stored)
        self._lap("write", t)
        return records

    def _save_identity(self) -> None:
        """Keep the grown graph and the recorded conflicts (claims on aliases linked to someone else)."""
        graph, conflicts = self._saved
        if len(graph) != len(self.graph) or not graph.equals(self.graph):
            save_table(self.graph, self.paths.identity_graph)
        if self.conflicts is not conflicts:
            save_table(self.conflicts, conflicts_path(self.paths.identity_graph))
        self._saved = (self.graph, self.conflicts)

    def finish(self) -> Path | None:
        """Build Data Docs for the run's validations (once, not per group); the index page."""
        if self._gate is None:
            return None
        t = time.perf_counter()
        docs = self._gate.build_docs()
        self._lap("data docs", t)
        return docs

    def close(self) -> None:
        """Stop the reader worker."""
        self.reader.close()


def newest_stored_day(events_root: Path) -> pd.Timestamp | None:
    """The start of the newest day partition of the clean store (None when empty): a lower reference for
    the timestamp bounds, so a file of only implausibly old rows is caught after good data arrived."""
    days = sorted(f.name[5:] for f in events_root.glob("date=*") if any(f.glob("*.parquet"))) \
        if events_root.exists() else []
    return pd.Timestamp(days[-1], tz="UTC") if days else None


def _claimed(hashes: np.ndarray, owner: np.ndarray, claims: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rows whose event id an earlier row already claimed: an earlier claiming row (``claims``) of any
    batch, or an earlier ``valid`` row of the same batch (a row that failed a check claims nothing).
    Only ids that occur more than once are looked at."""
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    same = ordered[1:] == ordered[:-1]
    shared = np.zeros(len(hashes), dtype=bool)
    shared[1:] |= same
    shared[:-1] |= same
    rows = np.sort(order[shared])  # rows whose id occurs more than once, in their order
    out = np.zeros(len(hashes), dtype=bool)
    if len(rows):
        out[rows] = _claimed_among(hashes[rows], owner[rows], claims[rows], valid[rows])
    return out


def _claimed_among(hashes: np.ndarray, owner: np.ndarray, claims: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """:func:`_claimed` on rows in their order (pandas hash tables; few rows)."""
    frame = pd.DataFrame({"h": hashes, "owner": owner})
    if claims.all():
        return frame["h"].duplicated(keep="first").to_numpy()
    position = np.arange(len(hashes))
    claimed = pd.Series(position[claims], index=hashes[claims])  # positions ascend: the first is the min
    first = claimed[~claimed.index.duplicated(keep="first")]
    earlier = pd.Series(hashes).map(first).to_numpy(dtype="float64", na_value=np.inf) < position
    firsts = frame.loc[valid].assign(first=position[valid]).drop_duplicates(["h", "owner"])  # first valid row
    first_valid = frame.merge(firsts, on=["h", "owner"], how="left")["first"]
    return earlier | (first_valid.to_numpy(dtype="float64", na_value=np.inf) < position)


def _rows(events: pa.Table, positions: np.ndarray) -> pd.DataFrame:
    """Some rows of ``events`` as pandas (positions 0..k-1): only rows that go to the quarantine."""
    return events.take(pa.array(positions, type=pa.int64())).to_pandas()


def gate_frame(events: pa.Table, event_ids: np.ndarray) -> pd.DataFrame:
    """The columns the row gate checks, as pandas: ``event_ids`` as given (already Python strings for
    hashing), low-cardinality text as categoricals, numbers and times as numpy."""
    columns: dict[str, Any] = {}
    for name in GATE_COLUMNS:
        if name == "event_id":
            columns[name] = event_ids
        elif name in CATEGORIES:
            columns[name] = pc.dictionary_encode(events[name]).to_pandas()
        else:
            columns[name] = events[name].to_pandas()
    return pd.DataFrame(columns)


def ingest(settings: Settings, progress: Any | None = None, *, with_docs: bool = True,
           gate: "GateSession | None" = None, reader: str = DEFAULT_READER) -> IngestSummary:
    """Ingest every new file in the channel folders; files already in the ledger are skipped.

    ``with_docs=False`` keeps GX in memory (no Data Docs); ``gate`` reuses a caller's GX session;
    ``reader`` is the ``module:function`` the reader worker calls (tests provoke hangs and crashes).
    """
    with writer_lock(settings.data_dir, "persona ingest", wait=settings.validation.lock_wait_seconds):
        run = IngestRun(settings, gate=gate, with_docs=with_docs, reader=reader)
        try:
            return _ingest(run, progress)
        finally:
            run.close()


def _ingest(run: IngestRun, progress: Any | None) -> IngestSummary:
    settings = run.settings
    pending = pending_files(settings, run.paths)
    if pending:
        run.reader.start()  # the worker starts while the door scrubs
    admitted_files = admitted(settings, pending)  # personal data scrubbed at the door, file by file
    summary = IngestSummary()
    undone = {k: v for k, v in run.rolled_back.items() if v}
    if undone:
        summary.messages.append("rolled back what a crashed run left uncommitted: "
                                + ", ".join(f"{v} {k}" for k, v in undone.items()))
    limit = settings.validation.group_rows
    with step(progress, "ingest + validate", total=len(pending)) as advance:
        group: list[Staged] = []

        def commit() -> None:
            for record in run.commit_group(group):
                summary.batches.append(record)
                if record.message:
                    summary.messages.append(record.message if record.message.startswith(record.file)
                                            else f"{record.file}: {record.message}")
            advance(len(group))
            group.clear()

        for staged in run.read_all(admitted_files):
            group.append(staged)
            if sum(s.rows_read for s in group) >= limit:
                commit()
        if group:
            commit()
    summary.data_docs = run.finish()
    summary.timings = {k: round(v, 3) for k, v in run.timings.items()}
    return summary
