"""Ingest the inbox: read → canonicalise → stitch → dedupe → gate → clean store, one batch per file.

One :class:`IngestRun` holds what every batch of a run shares (the event-id index, the identity
graph, one Great Expectations session) so nothing is re-read or re-built per batch. A batch commits
when its ledger record is appended; anything a crash leaves behind before that is removed on the
next run and the file is processed again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ingestion.canonical import MissingColumns, canonicalise
from ingestion.event_store import EventIdIndex, remove_uncommitted, write_batch
from ingestion.identity import (
    conflicts_from,
    conflicts_path,
    links_from,
    load_conflicts,
    load_graph,
    merge_conflicts,
    save_table,
    stitch,
)
from ingestion.ledger import BatchRecord, append_torn_safe, file_digest, read_ledger
from ingestion.outliers import outlier_reasons
from ingestion.readers import RawBatch, read_channel_file
from persona.config import ChannelConfig, Settings
from persona.paths import DataPaths
from persona.progress import step
from validation.quarantine import quarantine_frame, write_quarantine

if TYPE_CHECKING:
    from validation.gate import GateSession


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
    """Files in the inbox whose content hash is not in the ledger yet (each content once)."""
    done = {r.sha256 for r in read_ledger(paths.ledger)}
    pending, seen = [], set()
    for name, cfg in settings.channels.items():
        for path in sorted(settings.data_dir.glob(cfg.path)):
            if not path.is_file():
                continue
            digest = file_digest(path)
            if digest in done or digest in seen:
                continue
            seen.add(digest)
            pending.append(PendingFile(name, cfg, path, digest))
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


class IngestRun:
    """State shared by the batches of one run; :meth:`batch` processes and commits one file."""

    def __init__(self, settings: Settings, *, gate: "GateSession | None" = None, with_docs: bool = True) -> None:
        self.settings = settings
        self.paths = DataPaths(settings.data_dir)
        ledger = read_ledger(self.paths.ledger)
        remove_uncommitted(self.paths.events, {r.batch_id for r in ledger})
        self.index = EventIdIndex.load(self.paths.events)
        self.graph = load_graph(self.paths.identity_graph)
        self.conflicts = load_conflicts(conflicts_path(self.paths.identity_graph))
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
                                     context_root=self.paths.gx if self._with_docs else None)
        return self._gate

    def _lap(self, name: str, started: float) -> float:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - started
        return now

    def source_name(self, path: Path) -> str:
        """How the file is named in the ledger and quarantine (relative to the data directory)."""
        root = self.settings.data_dir
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    def batch(self, item: PendingFile, *, batch_id: str | None = None, released_from: str = "") -> BatchRecord:
        """Process one file end to end and commit it to the ledger (re-runnable after a crash)."""
        channel, cfg, settings = item.channel, item.cfg, self.settings
        batch_id = batch_id or f"{channel}-{item.digest[:16]}"
        source = self.source_name(item.path)
        t = time.perf_counter()
        raw = read_channel_file(item.path, cfg)
        t = self._lap("read", t)
        quarantined = [_read_rejects(raw, source, batch_id)] if raw.rejects else []
        rows_read = len(raw.rows) + len(raw.rejects)
        message, status = raw.error or "", "accepted"
        duplicates = outliers = 0
        accepted = pd.DataFrame()
        if raw.error is not None:
            status = "batch_quarantined"
        elif not raw.rows.empty:
            failures = self._check_raw(raw.rows, channel, cfg, batch_id)
            t = time.perf_counter()
            mapped = None
            if failures:
                message = f"{source}: raw shape check failed: " + "; ".join(failures)
            else:
                try:
                    mapped = canonicalise(raw.rows, channel, cfg, settings, source)
                except MissingColumns as e:
                    message = str(e)
            if mapped is None:
                status = "batch_quarantined"
                check = "raw_shape" if failures else "required_columns"
                quarantined.append(quarantine_frame(raw.rows.assign(source_file=source), batch_id=batch_id,
                                                    check=check, column=None, reason=message))
            else:
                t = self._lap("canonicalise", t)
                if not mapped.rejects.empty:
                    quarantined.append(_mapping_rejects(mapped.rejects, source, batch_id))
                links = links_from(mapped.events, batch_id)
                events, duplicates, graph = self._stitch_dedupe(mapped.events, links, batch_id)
                events, outliers, flagged_out = self._outliers(events, batch_id)
                if not flagged_out.empty:
                    quarantined.append(flagged_out)
                t = self._lap("stitch+dedupe", t)
                gate = self.gate.check_events(events.reset_index(drop=True), batch_id=batch_id)
                t = self._lap("gate", t)
                if not gate.quarantined.empty:
                    quarantined.append(gate.quarantined)
                accepted = gate.accepted
                if gate.batch_failed:
                    status, message = "batch_quarantined", f"{source}: " + "; ".join(gate.failures)
                self._save_identity(graph, links)
                t = self._lap("stitch+dedupe", t)
        t = time.perf_counter()
        records = pd.concat(quarantined, ignore_index=True) if quarantined else pd.DataFrame()
        write_quarantine(records, self.paths.quarantine, batch_id)
        write_batch(accepted, self.paths.events, batch_id)
        if status == "accepted" and len(records):
            status = "partially_quarantined"
        record = BatchRecord(
            batch_id=batch_id, channel=channel, file=source, sha256=item.digest, rows_read=rows_read,
            accepted=len(accepted), quarantined=len(records), duplicates=duplicates, status=status,
            message=message, processed_at=datetime.now(timezone.utc).isoformat(), outliers=outliers,
            released_from=released_from,
        )
        append_torn_safe(self.paths.ledger, record)  # the commit point
        if len(accepted):
            self.index.add(accepted["event_id"])
        self._lap("write", t)
        return record

    def _check_raw(self, rows: pd.DataFrame, channel: str, cfg: ChannelConfig, batch_id: str) -> list[str]:
        """The channel's raw-shape GX suite on the columns it checks."""
        from validation.raw_suite import checked_columns, shape_sample

        t = time.perf_counter()
        try:
            present = [c for c in checked_columns(cfg) if c in rows.columns]
            return self.gate.check_raw(shape_sample(rows.loc[:, present]), channel=channel, cfg=cfg,
                                       batch_id=batch_id)
        finally:
            self._lap("gate raw", t)

    def _stitch_dedupe(self, events: pd.DataFrame, links: pd.DataFrame,
                       batch_id: str) -> tuple[pd.DataFrame, int, pd.DataFrame]:
        """Re-key aliases through the graph grown by this batch; drop ids seen in the batch or the store."""
        events, graph = stitch(events, self.graph, batch_id, links=links)
        unique = events.drop_duplicates("event_id", keep="first")
        unique = unique.loc[~self.index.contains(unique["event_id"])]
        return unique, len(events) - len(unique), graph

    def _outliers(self, events: pd.DataFrame, batch_id: str) -> tuple[pd.DataFrame, int, pd.DataFrame]:
        """Apply the outlier rule: flag rows (``is_outlier``) or move them to quarantine."""
        cfg = self.settings.outliers
        reasons = outlier_reasons(events, cfg)
        flagged = (reasons != "").to_numpy()
        events = events.assign(is_outlier=flagged)
        if cfg.action == "flag" or not flagged.any():
            return events, int(flagged.sum()), pd.DataFrame()
        out = quarantine_frame(events.loc[flagged], batch_id=batch_id, check="outlier_rule", column="amount",
                               reason=reasons[flagged])
        return events.loc[~flagged], int(flagged.sum()), out

    def _save_identity(self, graph: pd.DataFrame, links: pd.DataFrame) -> None:
        """Keep the grown graph and record claims (``links``) on aliases already linked to someone else."""
        new = conflicts_from(graph, links)
        if not new.empty:
            self.conflicts = merge_conflicts(self.conflicts, new)
            save_table(self.conflicts, conflicts_path(self.paths.identity_graph))
        if len(graph) != len(self.graph) or not graph.equals(self.graph):
            save_table(graph, self.paths.identity_graph)
        self.graph = graph

    def finish(self) -> Path | None:
        """Build Data Docs for the run's validations (once, not per batch); the index page."""
        if self._gate is None:
            return None
        t = time.perf_counter()
        docs = self._gate.build_docs()
        self._lap("data docs", t)
        return docs


def ingest(settings: Settings, progress: Any | None = None, *, with_docs: bool = True,
           gate: "GateSession | None" = None) -> IngestSummary:
    """Ingest every new file in the channel folders; files already in the ledger are skipped.

    ``with_docs=False`` keeps GX in memory (no Data Docs); ``gate`` reuses a caller's GX session.
    """
    run = IngestRun(settings, gate=gate, with_docs=with_docs)
    todo = pending_files(settings, run.paths)
    summary = IngestSummary()
    with step(progress, "ingest + validate", total=len(todo)) as advance:
        for item in todo:
            record = run.batch(item)
            summary.batches.append(record)
            if record.message:
                summary.messages.append(f"{record.file}: {record.message}" if not record.message.startswith(
                    record.file) else record.message)
            advance(1)
    summary.data_docs = run.finish()
    summary.timings = {k: round(v, 3) for k, v in run.timings.items()}
    return summary
