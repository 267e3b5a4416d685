"""Where the studio keeps its files (under ``<data>/studio``) and how it writes them (atomically)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from base.config import Settings
from base.durable import replace_durably


def studio_dir(settings: Settings) -> Path:
    """The studio's folder: aggregates, audiences, their sync state and delivery log, rule versions."""
    return Path(settings.data_dir) / "studio"


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        return replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, value: Any) -> Path:
    """A JSON file, atomically."""
    return write_atomic(path, json.dumps(value, indent=1, default=str, sort_keys=True).encode())


def read_json(path: Path, default: Any) -> Any:
    """A JSON file, or ``default`` when it does not exist yet."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line (flushed to disk) to a log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_lines(path: Path, last: int | None = None) -> list[dict[str, Any]]:
    """The records of a JSON-lines log, oldest first (a torn last line is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out[-last:] if last else out
