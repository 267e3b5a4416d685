"""The door scrubs personal data in every inbox format: the channel's PII columns and personal
``properties`` keys of CSV (a column holding JSON text), whitespace-separated text, JSON lines and Parquet
(a JSON-text, struct or map column); nothing raw reaches the inbox, the clean store or the quarantine."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from base.config import ChannelConfig, Settings
from base.pseudonym import pseudonym, suppression_token
from ingestion.privacy import scrub_file
from tests.privacy.scan import scan_files

pytestmark = pytest.mark.privacy

EMAIL, PHONE, NAME = "Quinn.Door@Example.net", "0170 5550199", "Quinn Doorperson"
"""A phone without ``+``: only the channel's PII mapping finds it (free text is not searched for it)."""


def _channel(fmt: str, **extra: object) -> ChannelConfig:
    columns = {"event_id": "id", "user_id": "customer", "timestamp": "ts", "properties": "props"}
    return ChannelConfig(path=f"raw/{fmt}/*.{fmt}", format=fmt, columns=columns, timestamp={"unit": "iso8601"},
                         event_type="page_view", pii={"mail": "email", "tel": "phone"}, **extra)


def _props(i: int) -> dict:
    return {"email": EMAIL, "Name": NAME, "plan": "gold", "nested": {"phone": PHONE, "ip": "10.1.2.3"}, "n": i}


def _forms(settings: Settings) -> dict[str, str]:
    """The person's personal data as it must never be stored (raw, normalised, plain SHA-256)."""
    return {"email": EMAIL, "email lower": EMAIL.lower(), "phone": PHONE, "phone digits": "01705550199",
            "name": NAME, "ip": "10.1.2.3", "email sha256": hashlib.sha256(EMAIL.lower().encode()).hexdigest()}


def test_csv_properties_json_text_and_pii_columns_are_scrubbed(settings: Settings, tmp_path: Path) -> None:
    cfg = _channel("csv")
    path = tmp_path / "a.csv"
    props = json.dumps(_props(1)).replace('"', '""')
    path.write_text(f'id,customer,ts,mail,tel,props\ne1,u1,2026-10-01T10:00:00Z,{EMAIL},{PHONE},"{props}"\n'
                    'e2,u2,2026-10-01T10:00:00Z,,,"{""plan"":""basic""}"\n')
    before_plain = path.read_text().splitlines()[2]
    assert scrub_file(path, cfg, settings, frozenset())[0]
    text = path.read_text()
    assert not scan_files([tmp_path], _forms(settings)), text
    key = settings.hash_salt
    assert f"pii.phone.{pseudonym(PHONE, key, 'phone')}" in text and f"pii.email.{pseudonym(EMAIL, key, 'email')}" in text
    assert "gold" in text and text.splitlines()[2] == before_plain  # a line without personal data keeps its bytes
    assert scrub_file(path, cfg, settings, frozenset()) == (False, 0)  # scrubbing again changes nothing


def test_whitespace_text_pii_column_is_tokenised(settings: Settings, tmp_path: Path) -> None:
    cfg = _channel("csv", delimiter="whitespace").model_copy(update={"columns": {
        "event_id": "id", "user_id": "customer", "timestamp": "ts"}})
    path = tmp_path / "a.txt"
    path.write_text("id customer ts tel\nT1  u1 2026-10-01T10:00:00Z 0170-5550199\n")
    assert scrub_file(path, cfg, settings, frozenset())[0]
    assert "5550199" not in path.read_text() and path.read_text().startswith("id customer ts tel\nT1  u1 ")


@pytest.mark.parametrize("shape", ["json text", "struct", "map"])
def test_parquet_properties_and_pii_columns_are_scrubbed(shape: str, settings: Settings, tmp_path: Path) -> None:
    cfg = _channel("parquet")
    if shape == "json text":
        props = pa.array([json.dumps(_props(1)), json.dumps({"plan": "basic"})])
    elif shape == "struct":
        props = pa.array([_props(1), {"plan": "basic", "Name": None, "email": None, "nested": None, "n": 2}])
    else:
        props = pa.array([[("email", EMAIL), ("Name", NAME), ("plan", "gold")], [("plan", "basic")]],
                         type=pa.map_(pa.string(), pa.string()))
    table = pa.table({"id": ["e1", "e2"], "customer": ["u1", "u2"], "ts": ["2026-10-01T10:00:00Z"] * 2,
                      "mail": [EMAIL, None], "tel": [PHONE, None], "note": [f"call {EMAIL}", "x"], "props": props})
    path = tmp_path / "a.parquet"
    pq.write_table(table, path)
    assert scrub_file(path, cfg, settings, frozenset())[0]
    assert not scan_files([tmp_path], _forms(settings))
    out = pq.read_table(path).to_pylist()
    assert "gold" in out[0]["props"] and out[0]["mail"] == f"pii.email.{pseudonym(EMAIL, settings.hash_salt, 'email')}"
    assert scrub_file(path, cfg, settings, frozenset()) == (False, 0)
    tokens = frozenset({suppression_token("u1", settings.hash_salt)})
    assert scrub_file(path, cfg, settings, tokens) == (True, 1)  # a forgotten person's rows leave at the door
    assert pq.read_table(path)["customer"].to_pylist() == ["u2"]


def test_ingest_of_csv_and_parquet_channels_stores_no_raw_personal_data(settings: Settings) -> None:
    from persona.pipeline import ingest_inbox

    channels = {"shop": _channel("csv"), "feed": _channel("parquet")}
    settings = settings.model_copy(update={"channels": channels})
    raw = settings.data_dir / "raw"
    (raw / "csv").mkdir(parents=True)
    (raw / "parquet").mkdir(parents=True)
    props = json.dumps(_props(1)).replace('"', '""')
    good = "".join(f'e{i},u1,2026-10-01T10:0{i}:00Z,{EMAIL},{PHONE},"{props}"\n' for i in range(9))
    (raw / "csv" / "a.csv").write_text(f'id,customer,ts,mail,tel,props\n{good}'
                                       f'e9,u1,not-a-time,{EMAIL},{PHONE},"{props}"\n')  # quarantined
    times = [f"2026-10-01T11:0{i}:00Z" for i in range(9)] + ["bad"]
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(10)], "customer": ["u1"] * 10, "ts": times,
                             "mail": [EMAIL] * 10, "tel": [PHONE] * 10, "props": [_props(i) for i in range(10)]}),
                   raw / "parquet" / "a.parquet")
    summary = ingest_inbox(settings)
    assert summary.total("accepted") == 18, [(b.file, b.status, b.message) for b in summary.batches]
    assert summary.total("quarantined") == 2 and (settings.data_dir / "quarantine").exists()
    assert not scan_files([settings.data_dir], _forms(settings))
    import pandas as pd

    events = pd.concat(pd.read_parquet(p) for p in (settings.data_dir / "events").rglob("*.parquet"))
    key = settings.hash_salt
    assert set(events["email_hash"]) == {pseudonym(EMAIL, key, "email")}
    assert set(events["phone_hash"]) == {pseudonym(PHONE, key, "phone")}
    assert all('"plan":"gold"' in p.replace(" ", "") for p in events["properties"])


def test_json_lines_ids_are_tokenised_without_reparsing_other_lines(settings: Settings, tmp_path: Path) -> None:
    from base.pseudonym import token

    cfg = ChannelConfig(path="raw/web/*.jsonl", format="jsonl", timestamp={"unit": "iso8601"},
                        columns={"event_id": "id", "anonymous_id": "anon", "device_id": "dev", "timestamp": "ts",
                                 "event_type": "ev", "properties": "props"})
    path = tmp_path / "a.jsonl"
    rows = ['{"id": "e1", "anon": "V\\u00e9-1", "ev": "x", "ts": "t", "props": {"plan": "gold"}}',
            '{"id":"e2","anon":null,"dev":123456,"ev":"x","ts":"t"}',
            '{"id":"e3","anon":"","ev":"x","ts":"t","props":{"email":"a@b.org","ip":"1.2.3.4"}}']
    path.write_text("\n".join(rows) + "\n")
    assert scrub_file(path, cfg, settings, frozenset())[0]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    key = settings.hash_salt
    assert lines[0]["anon"] == token("V\u00e9-1", key, "anonymous") and lines[0]["props"] == {"plan": "gold"}
    assert lines[1]["dev"] == token("123456", key, "device") and lines[1]["anon"] is None
    assert lines[2]["anon"] == "" and "ip" not in lines[2]["props"] and "@" not in path.read_text()
    assert path.read_text().splitlines()[0].startswith('{"id": "e1", "anon": "pii.anonymous.')  # bytes kept around
    assert scrub_file(path, cfg, settings, frozenset()) == (False, 0)


def test_a_large_inbox_is_scrubbed_in_two_processes_with_the_same_files_and_digests(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ingestion.privacy as door
    from base.paths import DataPaths
    from ingestion.ingest import pending_files
    from persona.sample_data import generate_sample_data
    from tests.conftest import settings_in

    got = {}
    for mode, threshold in (("serial", 10**15), ("parallel", 0)):
        s = settings_in(tmp_path / mode / "data", users=60, days=20)
        generate_sample_data(s)
        monkeypatch.setattr(door, "PARALLEL_SCRUB_BYTES", threshold)
        pending = pending_files(s, DataPaths(s.data_dir))
        admitted = door.admit_files(s, pending)
        assert {i.digest for i in admitted} != {i.digest for i in pending}  # the sample's raw personal data was scrubbed
        files = {p.relative_to(s.data_dir): p.read_bytes() for p in sorted((s.data_dir / "raw").rglob("*")) if p.is_file()}
        got[mode] = ([(i.path.relative_to(s.data_dir), i.digest) for i in admitted], files)
    assert len(got["serial"][0]) > 2 and got["parallel"] == got["serial"]


def test_json_lines_door_parses_only_what_can_change_and_equals_parsing_every_line(
        settings: Settings, tmp_path: Path) -> None:
    """The door finds the lines to parse with one search (numeric ids; a properties field naming a
    personal key in any case or holding an escape): the result equals scrubbing every line parsed, and
    the lines it skips keep their bytes."""
    from base.pseudonym import scrub_text
    from ingestion.privacy import _column_roles, _personal, _scrub_json_line, _tokenise_json_strings

    cfg = ChannelConfig(path="raw/web/*.jsonl", format="jsonl", timestamp={"unit": "iso8601"},
                        columns={"event_id": "id", "anonymous_id": "anon", "device_id": "dev", "timestamp": "ts",
                                 "event_type": "ev", "properties": "props"})
    rows = ['{"id": "e1", "anon": "a-1", "ev": "x", "ts": "t", "props": {"plan": "gold", "n": 1.50}}',
            '{"id":"e2","anon":null,"dev":123456,"ev":"x","ts":"t"}',
            '{"id":"e3","ev":"x","ts":"t","props":{"EMAIL":"a@b.org","nested":{"Phone":"0170 5550199"}}}',
            '{"id":"e4","ev":"x","ts":"t","props":{"\\u0065mail":"hidden@b.org","x":1}}',
            '{"id":"e5","ev":"x","ts":"t","props":{"plan":"silver"}, "dev": -7}',
            '{"id":"e6","ev":"x","ts":"t","props":{"Name":"x"}',
            '{"id":"e7","ev":"x","ts":"t","props":"{\\"name\\": \\"Quinn\\"}"}',
            '{"id":"e8","ev":"x","ts":"t","props":{"name_of_plan":"gold","address_book":1}}',
            '{"id":"e9","anon":"x\\"y\\\\z","ev":"x","ts":"t"}']
    text = "\n".join(rows) + "\n"
    path = tmp_path / "a.jsonl"
    path.write_text(text)
    scrub_file(path, cfg, settings, frozenset())
    roles, personal, memo = _column_roles(cfg, settings), _personal(settings), {}
    tokenised = _tokenise_json_strings(scrub_text(text, settings.hash_salt), {k: r for k, r in roles.items() if r != "properties"}, settings, memo)
    reference = "".join(_scrub_json_line(line, roles, settings, personal, memo) or line
                        for line in tokenised.splitlines(keepends=True))
    got = path.read_text()
    assert got == reference
    out = got.splitlines()
    assert out[0] == tokenised.splitlines()[0] and out[7] == tokenised.splitlines()[7]  # bytes kept
    assert "a@b.org" not in got and "hidden@b.org" not in got and "0170" not in got and "Quinn" not in got
    assert json.loads(out[1])["dev"].startswith("pii.device.") and json.loads(out[4])["dev"].startswith("pii.device.")
    from base.pseudonym import token

    assert json.loads(out[8])["anon"] == token('x"y\\z', settings.hash_salt, "anonymous")  # escapes decoded
    assert out[5] == rows[5].replace('"Name":"x"', '"Name":"[personal value removed]"')  # not one object: kept
    # for the reader to reject, without the personal value (the quarantine keeps the line's text)


def test_an_unreadable_json_line_is_rejected_without_its_personal_values(settings: Settings, tmp_path: Path) -> None:
    """A truncated or spliced JSON line cannot be parsed, so its properties cannot be scrubbed key by key:
    the door replaces the value after each personal key; the reader still rejects the line, naming it, and
    the rejected text (what the quarantine keeps) holds no personal value."""
    from ingestion.readers import read_channel_file

    cfg = _channel("jsonl")
    good = json.dumps({"id": "e1", "customer": "u1", "ts": "2026-07-01T10:00:00+00:00", "props": _props(1)})
    cut = json.dumps({"id": "e2", "customer": "u2", "ts": "2026-07-01T11:00:00+00:00",
                      "props": {"plan": "gold", "Name": NAME, "address": {"street": "Doorway 1"}, "nested": {"ip": "10.1.2.3"}}})
    spliced = cut[:-40] + json.dumps({"id": "e3", "customer": "u3", "ts": "2026-07-01T12:00:00+00:00",
                                      "props": {"NAME": NAME}})  # a truncated line spliced into the next
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join([good, cut[:-12], spliced, good.replace('"e1"', '"e4"')]) + "\n")
    assert scrub_file(path, cfg, settings, frozenset())[0]
    text = path.read_text()
    assert NAME not in text and "Doorway" not in text and "Quinn" not in text
    assert text.count("[personal value removed]") >= 3
    batch = read_channel_file(path, cfg)
    assert batch.error is None and batch.table.num_rows == 2  # the two readable lines
    assert sorted(r[0] for r in batch.rejects) == [2, 3]  # the two unreadable ones, by line
    assert all(NAME not in r[2] and "Doorway" not in r[2] for r in batch.rejects)
    assert scrub_file(path, cfg, settings, frozenset()) == (False, 0)  # scrubbing again changes nothing


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_csv_door_splits_plain_lines_itself_and_equals_the_csv_module(delimiter: str, settings: Settings,
                                                                      tmp_path: Path) -> None:
    """Lines without quotes are split and joined by the door itself, quoted ones by the csv module: the
    file equals what the csv module makes of every line (each PII field replaced by its token)."""
    import csv
    import io

    from base.pseudonym import token

    d = delimiter
    cfg = ChannelConfig(path="raw/x/*.csv", format="csv", delimiter=d, timestamp={"unit": "iso8601"},
                        columns={"event_id": "id", "timestamp": "ts", "user_id": "customer"},
                        pii={"mail": "email", "tel": "phone"})
    rows = [["id", "ts", "customer", "mail", "tel", "note"],
            ["e1", "t", "c1", "Quinn.Door@Example.net", "0170 5550199", "plain"],
            ["e2", "t", "c2", "", "0170 5550198", f'has{d}delimiter'],
            ["e3", "t", "c3", "other@example.org", "", 'says "hi"'],
            ["e4", "t", "c4", " ", "0170 5550197", ""]]
    buf = io.StringIO()
    csv.writer(buf, delimiter=d, lineterminator="\n").writerows(rows)
    path = tmp_path / "a.csv"
    path.write_text(buf.getvalue())
    assert scrub_file(path, cfg, settings, frozenset())[0]
    key = settings.hash_salt
    expected = io.StringIO()
    writer = csv.writer(expected, delimiter=d, lineterminator="\n")
    writer.writerow(rows[0])
    for r in rows[1:]:
        writer.writerow([*r[:3], *(token(v, key, kind) if v.strip() else v for v, kind in
                                   ((r[3], "email"), (r[4], "phone"))), r[5]])
    assert path.read_text() == expected.getvalue()
    assert '"' in path.read_text().splitlines()[2] and "0170" not in path.read_text()
