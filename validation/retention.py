"""Retention of stored Great Expectations validation results: keep the results (and their Data Docs
pages) of the latest ingest runs only, so the GX store does not grow without bound."""

from __future__ import annotations

import shutil
from pathlib import Path


def _run_folders(root: Path) -> list[Path]:
    """``<suite>/<run name>/<run time>`` folders under a validations root (results or Data Docs pages)."""
    return [p for p in root.glob("*/*/*") if p.is_dir()] if root.is_dir() else []


def prune_results(context_root: Path, keep_runs: int) -> int:
    """Delete validation results and Data Docs pages of all but the ``keep_runs`` latest run times.

    Every validation of one ingest run shares one run time (:class:`validation.gate.GateSession`), so
    a run time is an ingest run. Returns how many result folders were removed.
    """
    results = context_root / "uncommitted" / "validations"
    pages = context_root / "uncommitted" / "data_docs" / "local_site" / "validations"
    folders = _run_folders(results) + _run_folders(pages)
    times = sorted({p.name for p in folders}, reverse=True)
    stale = set(times[keep_runs:])
    removed = 0
    for folder in folders:
        if folder.name in stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed += folder.is_relative_to(results)
    for root in (results, pages):  # empty <suite>/<run name> folders left behind
        for parent in sorted((p for p in root.glob("*/*") if p.is_dir()), reverse=True) if root.is_dir() else []:
            if not any(parent.iterdir()):
                parent.rmdir()
    return removed
