"""Retention (``privacy.retention_days``), applied by ``persona update``: inbox files and the service's
event log once ingested, quarantine records and persona history rows older than their limit go.

Only what the ledger records as ingested leaves the inbox (a file not yet ingested is never lost);
the newest persona of each user stays in the history whatever its age (it is the current persona).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pandas as pd

from base.config import Settings
from base.paths import DataPaths


def _older(path: Path, days: int, now: float) -> bool:
    return now - path.stat().st_mtime > days * 86400


def apply_retention(settings: Settings, now: float | None = None) -> dict[str, int]:
    """Delete what is past its retention; returns counts per store (files, or history rows)."""
    from ingestion.ledger import file_digest, read_ledger

    cfg = settings.privacy.retention_days
    paths = DataPaths(settings.data_dir)
    now = time.time() if now is None else now
    counts: Counter = Counter()
    log_dir = paths.event_log(settings.serving.event_log).resolve()
    if cfg.raw or cfg.event_log:
        ingested = {r.sha256 for r in read_ledger(paths.ledger)}
        for channel in settings.channels.values():
            for path in settings.data_dir.glob(channel.path):
                in_log = path.resolve().is_relative_to(log_dir)
                days = cfg.event_log if in_log else cfg.raw
                if days and path.is_file() and _older(path, days, now) and file_digest(path) in ingested:
                    path.unlink()
                    counts["event log files" if in_log else "inbox files"] += 1
    if cfg.quarantine and paths.quarantine.exists():
        for path in paths.quarantine.glob("*.parquet"):
            if _older(path, cfg.quarantine, now):
                path.unlink()
                counts["quarantine files"] += 1
    if cfg.history:
        counts["history rows"] += _prune_history(settings, pd.Timestamp(now, unit="s", tz="UTC")
                                                 - pd.Timedelta(days=cfg.history))
    return dict(counts)


def _prune_history(settings: Settings, cutoff: pd.Timestamp) -> int:
    """Drop history rows scored before ``cutoff``, except each user's newest row (under the history lock)."""
    from scoring.history import _locked, history_root, latest_personas

    removed = 0
    with _locked(settings):
        latest = latest_personas(settings)
        keep_keys = set(zip(latest["user_id"], pd.to_datetime(latest["scored_at"], utc=True)))
        for path in sorted(history_root(settings).rglob("*.parquet")):
            frame = pd.read_parquet(path)
            scored = pd.to_datetime(frame["scored_at"], utc=True)
            newest = pd.Series([k in keep_keys for k in zip(frame["user_id"], scored)], index=frame.index)
            drop = (scored < cutoff) & ~newest
            if not drop.any():
                continue
            removed += int(drop.sum())
            if drop.all():
                path.unlink()
            else:
                tmp = path.with_name(f".{path.name}.tmp")
                frame.loc[~drop].to_parquet(tmp, index=False)
                tmp.replace(path)
        DataPaths(settings.data_dir).history_cache.unlink(missing_ok=True)  # derived; rebuilt on next read
    return removed
