"""Ingest throughput: ~1 million sample events (five dirty channel exports) through read →
canonicalise → stitch → dedupe, and what the Great Expectations gate adds, in one run.

Everything is written to a temporary directory (never ``data/``). Figures, not pass/fail.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

TARGET_EVENTS = 1_000_000
ROWS_PER_USER = 563_677 / 5000 / 120
"""Rows per user and day of the sample generator (measured at 5,000 users over 120 days)."""


def main(argv: list[str] | None = None, days: int = 120) -> None:
    """Generate the sample (``argv[0]`` events, default 1M), ingest it once with the gate, print timings."""
    events = int(argv[0]) if argv else TARGET_EVENTS
    from ingestion.ingest import ingest
    from persona.config import load_settings
    from persona.paths import DataPaths
    from persona.sample_data import generate_sample_data

    root = Path(tempfile.mkdtemp(prefix="persona-bench-ingest-"))
    try:
        base = load_settings(Path(__file__).resolve().parent.parent / "persona.yaml")
        users = max(100, round(events / (ROWS_PER_USER * days)))
        settings = base.model_copy(update={"data_dir": root / "data"})
        t = time.perf_counter()
        generate_sample_data(settings, users=users, days=days)
        generated = time.perf_counter() - t

        t = time.perf_counter()
        from validation.gate import GateSession

        gate = GateSession(base_currency=settings.base_currency, context_root=DataPaths(settings.data_dir).gx)
        setup = time.perf_counter() - t
        t = time.perf_counter()
        summary = ingest(settings, gate=gate)
        wall = time.perf_counter() - t
        _report(summary, users, generated, setup, wall)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _report(summary, users: int, generated: float, setup: float, wall: float) -> None:  # type: ignore[no-untyped-def]
    """Print the figures."""
    rows = summary.total("rows_read")
    tm = summary.timings
    core = tm["read"] + tm["canonicalise"] + tm["stitch+dedupe"]
    gate = tm["gate"] + tm["gate raw"]
    gx_total = gate + tm["data docs"] + setup
    print(f"sample: {rows:,} rows in {len(summary.batches)} files ({users} users), generated in {generated:.1f}s")
    print(f"{'stage':<34}{'seconds':>9}{'rows/s':>12}")
    for name in ("read", "canonicalise", "stitch+dedupe"):
        print(f"{name:<34}{tm[name]:>9.2f}{rows / tm[name]:>12,.0f}")
    print(f"{'= read+canonicalise+dedupe+stitch':<34}{core:>9.2f}{rows / core:>12,.0f}")
    print(f"{'GX raw-shape suites':<34}{tm['gate raw']:>9.2f}{rows / tm['gate raw']:>12,.0f}")
    print(f"{'GX canonical-events suite':<34}{tm['gate']:>9.2f}{rows / tm['gate']:>12,.0f}")
    print(f"{'= GX gate per batch':<34}{gate:>9.2f}{rows / gate:>12,.0f}")
    print(f"{'GX set-up (import + context)':<34}{setup:>9.2f}")
    print(f"{'GX Data Docs (once per run)':<34}{tm['data docs']:>9.2f}")
    print(f"{'write clean store + quarantine':<34}{tm['write']:>9.2f}")
    print(f"{'ingest wall time (excl. set-up)':<34}{wall:>9.2f}{rows / wall:>12,.0f}")
    print(f"gate share of ingest (gate / (core + gate)):        {gate / (core + gate):.0%}")
    print(f"all GX time / whole run (set-up + gate + docs):      {gx_total / (wall + setup):.0%}")
    print(f"accepted {summary.total('accepted'):,}, quarantined {summary.total('quarantined'):,}, "
          f"duplicates {summary.total('duplicates'):,}, outliers flagged {summary.total('outliers'):,}")


if __name__ == "__main__":
    main(sys.argv[1:])
