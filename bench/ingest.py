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
    from base.config import load_settings
    from base.paths import DataPaths
    from persona.sample_data import generate_sample_data

    root = Path(tempfile.mkdtemp(prefix="persona-bench-ingest-"))
    try:
        base = load_settings(Path(__file__).resolve().parent.parent / "persona.yaml")
        users = max(100, round(events / (ROWS_PER_USER * days)))
        settings = base.model_copy(update={"data_dir": root / "data"})
        t = time.perf_counter()
        generate_sample_data(settings, users=users, days=days)
        generated = time.perf_counter() - t

        read_ratio = _isolation_overhead(settings, root / "small")

        t = time.perf_counter()
        from validation.gate import GateSession

        gate = GateSession(base_currency=settings.base_currency, context_root=DataPaths(settings.data_dir).gx,
                           keep_runs=settings.validation.keep_runs, timestamps=settings.validation.timestamps)
        setup = time.perf_counter() - t
        t = time.perf_counter()
        summary = ingest(settings, gate=gate)
        wall = time.perf_counter() - t
        _report(summary, users, generated, setup, wall)
        print(read_ratio)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _isolation_overhead(settings, small_dir: Path, small_files: int = 300) -> str:  # type: ignore[no-untyped-def]
    """Reading every inbox file in the reader worker (:mod:`ingestion.isolated_reader`) against reading it
    in-process, best of two interleaved passes each; then the same for ``small_files`` files of 20 lines
    (where the per-file round trip would show). The worker's start is timed apart."""
    from ingestion.isolated_reader import IsolatedReader
    from ingestion.readers import read_channel_file

    limits = settings.validation.limits
    big = [(p, cfg) for cfg in settings.channels.values() for p in sorted(settings.data_dir.glob(cfg.path))]
    small_dir.mkdir(parents=True)
    web = next((p, cfg) for p, cfg in big if cfg.format == "jsonl")
    head = web[0].read_bytes().split(b"\n")[:20]
    small = []
    for i in range(small_files):
        path = small_dir / f"s{i}.jsonl"
        path.write_bytes(b"\n".join(head) + b"\n")
        small.append((path, web[1]))

    def rows(batches) -> int:  # type: ignore[no-untyped-def]
        return sum(b.table.num_rows + len(b.rejects) for b in batches)

    out = []
    t = time.perf_counter()
    with IsolatedReader(limits) as worker:
        worker.read(*small[0])
        start = time.perf_counter() - t
        for name, files in (("channel exports", big), (f"{small_files} files of 20 lines", small)):
            best = {"in-process": float("inf"), "worker": float("inf")}
            for _ in range(2):
                for mode, so_far in list(best.items()):
                    t = time.perf_counter()
                    read = ([read_channel_file(p, c, limits) for p, c in files] if mode == "in-process"
                            else list(worker.read_all(files)))
                    best[mode] = min(so_far, time.perf_counter() - t)
                    n = rows(read)
            out.append(f"read {name} ({n:,} rows): in-process {best['in-process']:.2f}s, worker "
                       f"{best['worker']:.2f}s, ratio worker/in-process {best['worker'] / best['in-process']:.2f}")
    return "\n".join([f"reader worker start (subprocess, first file): {start:.2f}s", *out])


def _report(summary, users: int, generated: float, setup: float, wall: float) -> None:  # type: ignore[no-untyped-def]
    """Print the figures: stage times, then the three headline ratios of this one run."""
    rows = summary.total("rows_read")
    tm = summary.timings
    core = tm["read"] + tm["canonicalise"] + tm["stitch+dedupe"]
    gate = tm["gate"] + tm["gate raw"]
    groups = len({b.group or b.batch_id for b in summary.batches})
    print(f"sample: {rows:,} rows in {len(summary.batches)} files ({users} users, {groups} commit groups), "
          f"generated in {generated:.1f}s")
    print(f"{'stage':<38}{'seconds':>9}{'rows/s':>12}")
    for name in ("read", "canonicalise", "stitch+dedupe"):
        print(f"{name:<38}{tm[name]:>9.2f}{rows / tm[name]:>12,.0f}")
    print(f"{'GX raw-shape suite (per group)':<38}{tm['gate raw']:>9.2f}{rows / tm['gate raw']:>12,.0f}")
    print(f"{'GX canonical row + batch suites':<38}{tm['gate']:>9.2f}{rows / tm['gate']:>12,.0f}")
    print(f"{'write clean store + quarantine':<38}{tm['write']:>9.2f}{rows / tm['write']:>12,.0f}")
    print(f"{'GX Data Docs (once per run)':<38}{tm['data docs']:>9.2f}")
    print(f"{'GX set-up (import + context)':<38}{setup:>9.2f}")
    print(f"accepted {summary.total('accepted'):,}, quarantined {summary.total('quarantined'):,}, "
          f"duplicates {summary.total('duplicates'):,}, outliers flagged {summary.total('outliers'):,}")
    print()
    print(f"read+canonicalise+dedupe+stitch:          {rows / core:>10,.0f} events/s  ({core:.2f}s)")
    print(f"end to end with the gate (ingest wall):   {rows / wall:>10,.0f} events/s  ({wall:.2f}s; "
          f"{rows / (wall + setup):,.0f}/s with GX set-up)")
    print(f"GX gate share of the ingest wall time:    {gate / wall:>10.0%}  (gate {gate:.2f}s; "
          f"gate / (core + gate) = {gate / (core + gate):.0%}; with set-up and docs "
          f"{(gate + setup + tm['data docs']) / (wall + setup):.0%})")


if __name__ == "__main__":
    main(sys.argv[1:])
