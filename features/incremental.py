"""What changed since the last feature build: the clean store's day partitions and the config."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from persona.config import FeatureConfig

WINDOW_DAYS = 90
"""The longest feature window: a day's events change snapshots up to this many days later."""


def event_partitions(events_root: Path) -> dict[str, list[str]]:
    """Each day partition of the clean store with the names of its files."""
    if not events_root.exists():
        return {}
    out: dict[str, list[str]] = {}
    for folder in sorted(events_root.glob("date=*")):
        files = sorted(f.name for f in folder.glob("*.parquet"))
        if files:
            out[folder.name[5:]] = files
    return out


def config_digest(cfg: FeatureConfig) -> str:
    """A digest of the feature configuration (a change forces a full rebuild)."""
    return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:16]


def load_state(path: Path) -> dict[str, Any] | None:
    """The state saved by the last build (None when there is none or it is unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def save_state(path: Path, partitions: dict[str, list[str]], cfg: FeatureConfig) -> None:
    """Record what this build saw, atomically (written last: a crash before it means a redo)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps({"partitions": partitions, "config": config_digest(cfg)}))
    os.replace(tmp, path)


def plan_rebuild(state: dict[str, Any] | None, partitions: dict[str, list[str]],
                 cfg: FeatureConfig) -> tuple[str, pd.Timestamp | None]:
    """("full", None) without usable state, ("none", None) when nothing changed, else ("from", t):
    recompute snapshots at or after ``t``."""
    if state is None or state.get("config") != config_digest(cfg):
        return "full", None
    before: dict[str, list[str]] = state.get("partitions", {})
    changed = sorted(day for day in set(before) | set(partitions) if before.get(day) != partitions.get(day))
    if not changed:
        return "none", None
    # a day's events first appear in the snapshot taken at the midnight that ends it
    return "from", pd.Timestamp(changed[0], tz="UTC") + pd.Timedelta(days=1)
