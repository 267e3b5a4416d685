"""Ingest the inbox: read → canonicalise → stitch → dedupe → gate → clean store, one batch per file."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ingestion.canonical import MissingColumns, canonicalise
from ingestion.event_store import batch_parts, stored_event_ids, write_batch
from ingestion.identity import links_from, load_graph, merge_links, resolve, save_graph
from ingestion.ledger import BatchRecord, append_record, file_digest, read_ledger
from ingestion.readers import read_channel_file
from persona.config import ChannelConfig, Settings
from persona.paths import DataPaths
from persona.progress import step
from validation.quarantine import quarantine_frame, write_quarantine


@dataclass
class IngestSummary:
    """Totals over the batches processed in one run."""

    batches: list[BatchRecord] = field(default_factory=list)
    skipped_files: int = 0
    messages: list[str] = field(default_factory=list)

    def total(self, name: str) -> int:
        """Sum of one counter over the batches."""
        return sum(getattr(b, name) for b in self.batches)


def pending_files(settings: Settings, paths: DataPaths) -> list[tuple[str, ChannelConfig, Path, str]]:
    """Files in the inbox whose content hash is not in the ledger yet: (channel, cfg, path, sha)."""
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
            pending.append((name, cfg, path, digest))
    return pending


def _rejects_to_quarantine(rejects: list[tuple[int, str, str]], source: str, batch_id: str) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"source_file": source, "source_row": [r[0] for r in rejects], "text": [r[2] for r in rejects]}
    )
    return quarantine_frame(frame, batch_id=batch_id, check="readable_row", column=None, reason=pd.Series([r[1] for r in rejects]))


def ingest_file(
    channel: str, cfg: ChannelConfig, path: Path, digest: str, settings: Settings, paths: DataPaths
) -> BatchRecord:
    """Process one file end to end and commit it to the ledger (re-runnable after a crash)."""
    from validation.gate import run_gate

    batch_id = f"{channel}-{digest[:16]}"
    source = str(path.relative_to(settings.data_dir)) if path.is_relative_to(settings.data_dir) else str(path)
    for stale in batch_parts(paths.events, batch_id):  # a crashed earlier attempt
        stale.unlink()
    raw = read_channel_file(path, cfg)
    quarantined: list[pd.DataFrame] = []
    if raw.rejects:
        quarantined.append(_rejects_to_quarantine(raw.rejects, source, batch_id))
    rows_read = len(raw.rows) + len(raw.rejects)
    message = raw.error or ""
    duplicates = 0
    accepted = pd.DataFrame()
    status = "accepted"
    if raw.error is None and not raw.rows.empty:
        try:
            mapped = canonicalise(raw.rows, channel, cfg, settings, source)
        except MissingColumns as e:
            mapped = None
            message = str(e)
            rows = raw.rows.assign(source_file=source)
            quarantined.append(quarantine_frame(rows, batch_id=batch_id, check="required_columns", column=None, reason=message))
        if mapped is not None:
            if not mapped.rejects.empty:
                rej = mapped.rejects.assign(source_file=source)
                quarantined.append(
                    quarantine_frame(rej.drop(columns=["check", "column", "reason"]), batch_id=batch_id,
                                     check="canonical_mapping", column=None, reason=rej["reason"])
                    .assign(column=rej["column"].to_numpy())
                )
            events = mapped.events
            graph = merge_links(load_graph(paths.identity_graph), links_from(events))
            events = resolve(events, graph)
            unique = events.drop_duplicates("event_id", keep="first")
            known = stored_event_ids(paths.events)
            unique = unique.loc[~unique["event_id"].isin(known)]
            duplicates = len(events) - len(unique)
            gate = run_gate(unique.reset_index(drop=True), batch_id=batch_id, base_currency=settings.base_currency,
                            context_root=paths.gx)
            if not gate.quarantined.empty:
                quarantined.append(gate.quarantined)
            accepted = gate.accepted
            if gate.batch_failed:
                status, message = "batch_quarantined", "; ".join(gate.failures)
            save_graph(graph, paths.identity_graph)
    elif raw.error is not None:
        status = "batch_quarantined"
        if raw.rows.empty and not raw.rejects:
            rows_read = 0
    records = pd.concat(quarantined, ignore_index=True) if quarantined else pd.DataFrame()
    write_quarantine(records, paths.quarantine, batch_id)
    write_batch(accepted, paths.events, batch_id)
    if status == "accepted" and len(records):
        status = "partially_quarantined"
    record = BatchRecord(
        batch_id=batch_id, channel=channel, file=source, sha256=digest, rows_read=rows_read,
        accepted=len(accepted), quarantined=len(records), duplicates=duplicates, status=status,
        message=message, processed_at=datetime.now(timezone.utc).isoformat(),
    )
    append_record(paths.ledger, record)
    return record


def ingest(settings: Settings, progress: Any | None = None) -> IngestSummary:
    """Ingest every new file in the channel folders; files already in the ledger are skipped."""
    paths = DataPaths(settings.data_dir)
    todo = pending_files(settings, paths)
    summary = IngestSummary()
    with step(progress, "ingest + validate", total=len(todo)) as advance:
        for channel, cfg, path, digest in todo:
            record = ingest_file(channel, cfg, path, digest, settings, paths)
            summary.batches.append(record)
            if record.message:
                summary.messages.append(f"{record.file}: {record.message}")
            advance(1)
    return summary
