"""Fault suite (issue 13): poison files mixed with good ones, a corrupted ledger line, the service
killed right after answering and the client re-sending, a file re-delivered under a new name. Each
scenario ends with the books balanced and the store checked against an independent count."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess

import pytest

from base.config import Settings
from base.paths import DataPaths
from ingestion.ingest import ingest
from ingestion.ledger import LedgerCorrupt
from tests.conftest import python_script, PROJECT
from tests.faults.books import audit, data_lines, stored_ids

pytestmark = pytest.mark.faults

TS = "2026-10-15T10:00:00Z"
EPOCH_MS = 1792058400000  # 2026-10-15 10:00 UTC
APP_HEADER = "uuid,customer_ref,device_id,action,epoch_ms,item_sku,item_category,platform,session"


def _web_line(i: str, user: str = "u1") -> bytes:
    return json.dumps({"event_id": i, "user_id": user, "event": "pageview", "ts": TS, "device": "desktop"}).encode()


def _app_line(i: str) -> str:
    return f"{i},u2,d-1,screen_view,{EPOCH_MS},,,ios,s-1"


def _poison_inbox(s: Settings) -> tuple[dict[str, int], set[str], set[str]]:
    """Good and poison files; returns (rows in per readable file, expected stored ids, files that must be
    quarantined whole)."""
    web, app = s.data_dir / "raw" / "web", s.data_dir / "raw" / "app"
    web.mkdir(parents=True)
    app.mkdir(parents=True)
    ids: set[str] = set()

    def good_web(prefix: str, n: int) -> list[bytes]:
        ids.update(f"web:{prefix}{k}" for k in range(n))
        return [_web_line(f"{prefix}{k}") for k in range(n)]

    def good_app(prefix: str, n: int) -> list[str]:
        ids.update(f"app:{prefix}{k}" for k in range(n))
        return [_app_line(f"{prefix}{k}") for k in range(n)]

    (web / "good.jsonl").write_bytes(b"\n".join(good_web("g", 20)) + b"\n")
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    (web / "deep.jsonl").write_bytes(b"\n".join([*good_web("d", 5), deep]) + b"\n")
    (web / "brackets.jsonl").write_bytes(b"\n".join([*good_web("b", 5), b"[" * 100_000]) + b"\n")
    (web / "bomb.jsonl.gz").write_bytes(gzip.compress(b'{"a":1}\n' * (2 << 20), compresslevel=9))
    whole = gzip.compress(b"\n".join(_web_line(f"t{k}") for k in range(5)) + b"\n")
    (web / "truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (web / "garbage.jsonl").write_bytes(bytes(range(256)) * 16)
    (web / "empty.jsonl").write_bytes(b"")
    (web / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\n".join(good_web("m", 5)) + b"\n")
    (web / "crlf.jsonl").write_bytes(b"\r\n".join(good_web("c", 5)) + b"\r\n")
    (web / "latin1.jsonl").write_bytes(b"\n".join([*good_web("l", 4), _web_line("l-bad", "Jos\u00e9").replace(
        b"Jos\\u00e9", "José".encode("latin-1"))]) + b"\n")
    (app / "good.csv").write_text("\n".join([APP_HEADER, *good_app("ag", 20)]) + "\n")
    rows = good_app("ah", 200)
    rows.insert(120, f"huge-1,u2,d-1,screen_view,{EPOCH_MS},{'x' * (2 << 20)},,ios,s-1")
    (app / "huge.csv").write_text("\n".join([APP_HEADER, *rows]) + "\n")
    (app / "header_only.csv").write_text(APP_HEADER + "\n")
    (app / "bom.csv").write_bytes(b"\xef\xbb\xbf" + "\n".join([APP_HEADER, *good_app("am", 5)]).encode() + b"\n")
    (app / "crlf.csv").write_bytes("\r\n".join([APP_HEADER, *good_app("ac", 5)]).encode() + b"\r\n")
    whole_files = {"raw/web/bomb.jsonl.gz", "raw/web/truncated.jsonl.gz", "raw/web/empty.jsonl"}
    readable = {f"raw/{p.parent.name}/{p.name}": data_lines(p, header=p.suffix == ".csv")
                for p in [*web.iterdir(), *app.iterdir()] if f"raw/{p.parent.name}/{p.name}" not in whole_files}
    return readable, ids, whole_files


def _settings(settings: Settings) -> Settings:
    channels = {"web": settings.channels["web"].model_copy(update={"path": "raw/web/*.jsonl*"}),
                "app": settings.channels["app"]}
    return settings.model_copy(update={"channels": channels})


def test_poison_files_are_quarantined_and_the_rest_of_the_group_commits(settings: Settings) -> None:
    s = _settings(settings)
    readable, expected, whole = _poison_inbox(s)
    summary = ingest(s, with_docs=False)
    by_file = {b.file: b for b in summary.batches}
    assert set(by_file) == set(readable) | whole
    assert len({b.group for b in summary.batches}) == 1  # one commit group: the poison did not stop it
    for name in whole:
        assert by_file[name].status == "batch_quarantined" and name.split("/")[-1] in by_file[name].message
    assert "max_compression_ratio" in by_file["raw/web/bomb.jsonl.gz"].message
    assert "truncated" in by_file["raw/web/truncated.jsonl.gz"].message
    for name, rows in readable.items():
        assert by_file[name].rows_read == rows, name
    assert (by_file["raw/app/huge.csv"].accepted, by_file["raw/app/huge.csv"].quarantined) == (200, 1)
    assert by_file["raw/web/deep.jsonl"].quarantined == 1 and by_file["raw/web/latin1.jsonl"].quarantined == 1
    books = audit(s, expected, "poison files mixed with good files", sum(readable.values()),
                  note="deep nesting, 100k brackets, 2 MB field, garbage, Latin-1, BOM, CRLF, header only; "
                       "gzip bomb, truncated gzip, 0 bytes quarantined whole")
    assert (books.lost, books.duplicated) == (0, 0) and books.accounted == books.rows_in
    assert stored_ids(s) == expected


def test_a_corrupted_ledger_line_stops_the_run_and_loses_nothing(settings: Settings) -> None:
    s = _settings(settings)
    web = s.data_dir / "raw" / "web"
    web.mkdir(parents=True)
    ids = set()
    for k in range(3):
        (web / f"{k}.jsonl").write_bytes(b"\n".join(_web_line(f"f{k}-{n}") for n in range(10)) + b"\n")
        ids |= {f"web:f{k}-{n}" for n in range(10)}
        ingest(s, with_docs=False)
    ledger = DataPaths(s.data_dir).ledger
    good = ledger.read_bytes()
    ledger.write_bytes(good.replace(b'"batch_id"', b'"batch_id\x00', 1))  # line 1 damaged on disk
    (web / "3.jsonl").write_bytes(b"\n".join(_web_line(f"f3-{n}") for n in range(10)) + b"\n")
    ids |= {f"web:f3-{n}" for n in range(10)}
    with pytest.raises(LedgerCorrupt, match="line 1"):
        ingest(s, with_docs=False)
    assert len(stored_ids(s)) == 30  # before the fix: the batch of line 1 was deleted by this run
    ledger.write_bytes(good)  # repaired from a backup
    ingest(s, with_docs=False)
    books = audit(s, ids, "corrupted ledger line (run stops, then repaired)", 40, note="LedgerCorrupt names line 1")
    assert (books.lost, books.duplicated) == (0, 0) and books.accounted == 40


SERVICE = """
import sys, json
from datetime import datetime, timezone
from pathlib import Path
from tests.conftest import settings_in
from serving.event_log import EventLog
from serving.events import check_events, log_records
s = settings_in(Path(sys.argv[1]))
posted = json.loads(sys.stdin.readline())
batch = check_events(posted, s, datetime(2026, 11, 30, 12, tzinfo=timezone.utc))
EventLog(Path(sys.argv[1]) / "raw" / "api").append(log_records(batch.events))  # what LiveEvents.take does first
print("200", flush=True)
if sys.argv[2] == "hang":
    sys.stdin.readline()
"""


def _posted() -> list[dict]:
    out: list[dict] = []
    for k in range(50):
        kind = ("page_view", "add_to_cart", "purchase", "search", "product_view")[k % 5]
        event = {"event_type": kind, "timestamp": f"2026-11-29T10:{k:02d}:00Z", "quantity": k % 3 + 1}
        event |= {"anonymous_id": f"v{k}"} if k % 2 else {"user_id": f"u{k % 7}"}
        if kind == "purchase":
            event |= {"amount": 10.0 + k, "currency": "EUR"}
        if k % 4 == 0:
            event["event_id"] = f"sent-{k}"
        out.append(event)
    return out


def test_service_killed_after_answering_then_the_client_resends(settings: Settings) -> None:
    from datetime import datetime, timezone

    from serving.events import check_events

    posted = _posted()
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    killed = subprocess.Popen([*python_script(SERVICE, settings.data_dir.parent, "service_child.py"), str(settings.data_dir), "hang"], cwd=PROJECT, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert killed.stdin is not None and killed.stdout is not None
    killed.stdin.write((json.dumps(posted) + "\n").encode())
    killed.stdin.flush()
    assert killed.stdout.readline().strip() == b"200"
    killed.send_signal(signal.SIGKILL)  # right after answering
    killed.wait()
    again = [*posted, {"user_id": "u1", "event_type": "page_view", "timestamp": "2026-11-29T11:00:00Z"}]
    resent = subprocess.run([*python_script(SERVICE, settings.data_dir.parent, "service_child.py"), str(settings.data_dir), "exit"], cwd=PROJECT, env=env,
                            input=(json.dumps(again) + "\n").encode(), capture_output=True, check=True)
    assert resent.stdout.strip() == b"200"  # the client re-sends the batch (and its next event) to a new worker
    expected = {f"api:{e.event_id}" for e in check_events(again, settings,
                                                          datetime(2026, 11, 30, 12, tzinfo=timezone.utc)).events}
    assert len(expected) == 51
    summary = ingest(settings, with_docs=False)
    assert sum(b.duplicates for b in summary.batches) == 50
    books = audit(settings, expected, "service killed after 200, client re-sends", 101,
                  note="50 events (page views, anonymous, carts without ids) sent twice, then 1 more")
    assert (books.lost, books.duplicated) == (0, 0) and books.accounted == 101


def test_a_file_redelivered_under_a_new_name(settings: Settings) -> None:
    s = _settings(settings)
    web = s.data_dir / "raw" / "web"
    web.mkdir(parents=True)
    body = b"\n".join(_web_line(f"r{n}") for n in range(30)) + b"\n"
    (web / "export.jsonl").write_bytes(body)
    ingest(s, with_docs=False)
    (web / "export (copy).jsonl").write_bytes(body)  # the same delivery again
    (web / "export-resent.jsonl").write_bytes(body + _web_line("r30") + b"\n")  # again, one row more
    summary = ingest(s, with_docs=False)
    [batch] = summary.batches
    assert batch.file == "raw/web/export-resent.jsonl" and (batch.accepted, batch.duplicates) == (1, 30)
    books = audit(s, {f"web:r{n}" for n in range(31)}, "file re-delivered under a new name", 61,
                  note="identical copy skipped by content hash; a copy with one row more adds 1")
    assert (books.lost, books.duplicated) == (0, 0) and books.accounted == 61


def _limits(s: Settings, **update: object) -> Settings:
    validation = s.validation.model_copy(update={"limits": s.validation.limits.model_copy(update=update)})
    return s.model_copy(update={"validation": validation})


def test_a_reader_that_hangs_crashes_or_runs_out_of_memory_costs_one_file(settings: Settings) -> None:
    """The reader runs in a worker process: a file that makes it spin inside C (catastrophic regex
    backtracking), segfault (pyarrow on 100,000-deep JSON with the nesting pre-check turned off; a null
    pointer) or exhaust its address space is quarantined whole naming the bound, the worker is replaced,
    and the good files of the same group commit. Released under the fixed reader and limits, those files
    give up every readable row: nothing is lost."""
    from ingestion.release import quarantine_overview, release_batch

    s = _settings(settings)
    web = s.data_dir / "raw" / "web"
    web.mkdir(parents=True)
    ids: set[str] = set()

    def good(prefix: str, n: int) -> list[bytes]:
        ids.update(f"web:{prefix}{k}" for k in range(n))
        return [_web_line(f"{prefix}{k}") for k in range(n)]

    (web / "a-good.jsonl").write_bytes(b"\n".join(good("a", 20)) + b"\n")
    (web / "backtrack.jsonl").write_bytes(b"\n".join([b"a" * 64 + b"b", *good("r", 5)]) + b"\n")
    (web / "deep.jsonl").write_bytes(b"\n".join([*good("d", 5), b'{"a":' * 100_000 + b"1" + b"}" * 100_000]) + b"\n")
    (web / "segfault.jsonl").write_bytes(b"\n".join(good("s", 5)) + b"\n")
    (web / "hog.jsonl").write_bytes(b"\n".join(good("h", 5)) + b"\n")
    (web / "z-good.jsonl").write_bytes(b"\n".join(good("z", 20)) + b"\n")
    rows_in = sum(data_lines(p, header=False) for p in web.iterdir())
    hostile = _limits(s, read_seconds=4.0, read_memory_bytes=2 << 30, max_nesting=1_000_000)
    summary = ingest(hostile, with_docs=False, reader="tests.faults.hostile_reader:read")
    by_file = {b.file.split("/")[-1]: b for b in summary.batches}
    assert len({b.group for b in summary.batches}) == 1  # one commit group: the bad files did not stop it
    assert (by_file["a-good.jsonl"].accepted, by_file["z-good.jsonl"].accepted) == (20, 20)
    expected_reason = {"backtrack.jsonl": "reader took more than 4 s", "deep.jsonl": "reader crashed with signal 11",
                       "segfault.jsonl": "reader crashed with signal 11", "hog.jsonl": "read_memory_bytes=2147483648"}
    for name, reason in expected_reason.items():
        record = by_file[name]
        assert record.status == "batch_quarantined" and record.rows_read == 0, record
        assert reason in record.message and name in record.message, record.message
    listed = quarantine_overview(s).set_index("file")  # files quarantined whole are listed with the reason
    for name, reason in expected_reason.items():
        assert listed.loc[f"raw/web/{name}", "checks"] == "whole_file"
        assert reason in listed.loc[f"raw/web/{name}", "reason"]
    for name in expected_reason:  # the fix: the real reader, the default limits
        record, ran = release_batch(s, by_file[name].batch_id)
        assert ran and record.rows_read == data_lines(web / name, header=False)
    books = audit(s, ids, "reader hangs (regex backtracking in C), segfaults (pyarrow deep JSON; null pointer), "
                          "runs out of memory, with good files", rows_in, originals_only=False,
                  note="4 files quarantined whole naming the bound, the group committed, then released: "
                       "accounted = good files + releases")
    assert (books.lost, books.duplicated) == (0, 0) and books.accounted == books.rows_in
    assert stored_ids(s) == ids
