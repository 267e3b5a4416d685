"""Forget a person everywhere (production profile: Redis online store, Feast registry and MLflow on
PostgreSQL): a person with a known e-mail, phone, device and anonymous id is planted through every
file channel and the API, the pipeline and an update run, ``persona forget`` erases them, and a scan
of every file under the data directory, the MLflow artifact store, Redis and PostgreSQL finds none of
their identifiers, raw or hashed. The service then answers them as a cold start, and the old export
delivered again brings nothing back."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from base.config import Settings
from base.pseudonym import pseudonym
from tests.conftest import settings_in
from tests.privacy.scan import (
    forms,
    scan_contacts,
    scan_files,
    scan_postgres,
    scan_redis,
)

pytestmark = pytest.mark.privacy
KEY = "privacy-test-key-0123456789"
AUTH = {"X-API-Key": KEY}
SERVER = "postgres@127.0.0.1:5432/test"
USER = "u990001"
PERSON = {"email": "Erin.Planted7@Example.org", "phone": "+44-20-5559876", "device": "d-feedface00c0ffee",
          "anonymous": "a-feedbeef0c0f", "user": USER, "session": "s-planted01", "name": "Erin Planted"}
LOCAL_PHONE = "0161 5550123"
"""A phone without a ``+``: found only because the channel maps its column as PII."""
SHOP = {"event_id": "ref", "user_id": "customer", "anonymous_id": "visitor", "event_type": "what",
        "timestamp": "at", "category": "cat", "properties": "extra"}
"""Two more channels: a CSV export with JSON text in a properties column, a Parquet feed with a struct."""


def _extra_channels(settings: Settings) -> dict:
    from base.config import ChannelConfig

    common = {"columns": SHOP, "timestamp": {"unit": "iso8601", "timezone": "UTC"},
              "event_types": {"view": "product_view", "buy": "purchase"}, "pii": {"tel": "phone"},
              "optional_columns": ["anonymous_id", "category", "properties"]}
    return {**settings.channels, "shop": ChannelConfig(path="raw/shop/*.csv", format="csv", **common),
            "feed": ChannelConfig(path="raw/feed/*.parquet", format="parquet", **common)}


def _plant_formats(data_dir: Path) -> list[Path]:
    """The person in a CSV properties column (JSON text) and a Parquet struct column, and rows of others."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = PERSON
    props = {"email": p["email"], "name": p["name"], "phone": p["phone"], "plan": "gold"}
    quoted = json.dumps(props).replace('"', '""')
    csv_lines = [f'sh-pl-{i},{USER},{p["anonymous"] if i == 0 else ""},view,2026-10-20T1{i}:00:00Z,home,'
                 f'{LOCAL_PHONE},"{quoted}"' for i in range(3)]
    others = [f"sh-o-{i},u00000{i + 1},,view,2026-10-20T1{i}:30:00Z,home,,\"{{\"\"plan\"\":\"\"basic\"\"}}\""
              for i in range(3)]
    shop = data_dir / "raw" / "shop" / "planted.csv"
    shop.parent.mkdir(parents=True, exist_ok=True)
    shop.write_text("ref,customer,visitor,what,at,cat,tel,extra\n" + "\n".join(csv_lines + others) + "\n")
    feed = data_dir / "raw" / "feed" / "planted.parquet"
    feed.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "ref": ["fd-pl-1", "fd-pl-2", "fd-o-1"], "customer": [USER, None, "u000002"],
        "visitor": [p["anonymous"], p["anonymous"], None], "what": ["buy", "view", "view"],
        "at": ["2026-10-20T17:00:00Z", "2026-10-20T17:05:00Z", "2026-10-20T17:10:00Z"],
        "cat": ["home", "home", "toys"], "tel": [LOCAL_PHONE, LOCAL_PHONE, None],
        "extra": [props, props, {"email": None, "name": None, "phone": None, "plan": "basic"}]}), feed)
    return [shop, feed]


WHEN = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)


def _plant(data_dir: Path) -> list[Path]:
    """One export per file channel holding the person (and a row of theirs the gate quarantines)."""
    ms, s = int(WHEN.timestamp() * 1000), int(WHEN.timestamp())
    p = PERSON
    files = {
        "web/planted.jsonl": "".join(json.dumps(r) + "\n" for r in [
            {"event_id": "ev-planted-1", "anonymous_id": p["anonymous"], "user_id": None, "event": "product_view",
             "ts": "2026-10-20T09:00:00+02:00", "product_id": "ELE-00001", "category": "electronics",
             "session_id": "s-planted01", "device": "mobile"},
            {"event_id": "ev-planted-2", "anonymous_id": p["anonymous"], "user_id": USER, "event": "identify",
             "ts": "2026-10-20T09:05:00+02:00", "product_id": None, "category": None, "session_id": "s-planted01",
             "device": "mobile"}]),
        "app/planted.csv": "uuid,customer_ref,device_id,action,epoch_ms,item_sku,item_category,platform,session\n"
                           f"pl-app-1,{USER},{p['device']},signin,{ms},,,ios,as-planted\n"
                           f"pl-app-2,,{p['device']},item_view,{ms + 60_000},HOM-00002,home,ios,as-planted\n",
        "orders/planted.csv": "order_id;customer_id;email;status;order_date;total;currency;qty;category;sku\n"
                              f"OPL1;{USER};{p['email']};completed;2026-10-20 14:00:00;49.90;EUR;1;home;HOM-00002\n"
                              f"OPL2;{USER};{p['email']};completed;2026-10-20 15:00:00;12,50;EUR;1;home;HOM-00003\n",
        "social/planted.jsonl": json.dumps({"interaction_id": "sp-planted-1", "member_id": USER, "kind": "like",
                                            "created_at": s, "network": json.dumps({"email": p["email"],
                                                                                    "name": "Erin Planted"})}) + "\n",
        "crm/planted.txt": "ticket customer opened topic phone\n"
                           f"TPL1 {USER} 2026-10-20T16:00:00Z delivery {p['phone']}\n",
    }
    out = []
    for rel, text in files.items():
        path = data_dir / "raw" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        out.append(path)
    return out


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The production profile on fresh PostgreSQL schemas and a fresh Feast project (removed after)."""
    import psycopg
    import redis

    tag = uuid.uuid4().hex[:10]
    schema, project = f"privacy_{tag}", f"privacy_{tag}"
    url = f"postgresql+psycopg://{SERVER}?options=-csearch_path%3D{schema}"
    with psycopg.connect(f"postgresql://{SERVER}", autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    artifacts = tmp_path_factory.mktemp("privacy-artifacts")
    env = {"PERSONA_PROFILE": "production", "PERSONA_MLFLOW_TRACKING_URI": url,
           "PERSONA_MLFLOW_ARTIFACTS": artifacts.as_uri(),
           "PERSONA_FEAST_PROJECT": project}  # Feast's registry: feature_store.production.yaml's, own project
    try:
        with pytest.MonkeyPatch.context() as mp:  # this module's environment only, restored after it
            for k, v in env.items():
                mp.setenv(k, v)
            yield {"schema": schema, "project": project, "artifacts": str(artifacts)}
    finally:
        client = redis.Redis(host="127.0.0.1", port=6379)
        stale = list(client.scan_iter(match=b"*" + project.encode(), count=1000))
        if stale:
            client.delete(*stale)
        with psycopg.connect(f"postgresql://{SERVER}", autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="module")
def world(production: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Sample + planted person → pipeline → service with the person's API events → update."""
    from persona.pipeline import ensure_sample, run_all
    from persona.update import run_update
    from serving.process import free_port, start_service

    base = settings_in(tmp_path_factory.mktemp("privacy") / "data", users=150, days=45)
    no_retrain = base.update.model_copy(update={"retrain_every_days": 1000, "drift": base.update.drift.model_copy(
        update={"retrain_features": 1000, "retrain_on_outputs": False})})
    settings = base.model_copy(update={"update": no_retrain, "training": base.training.model_copy(update={
        "horizon_days": 14, "train_cutoffs": 2, "num_boost_round": 30, "early_stopping_rounds": 0})})
    assert settings.profile == "production"
    settings = settings.model_copy(update={"channels": _extra_channels(settings)})
    ensure_sample(settings)
    export = tmp_path_factory.mktemp("export")
    for path in _plant(settings.data_dir) + _plant_formats(settings.data_dir):  # the original export, as delivered
        shutil.copy(path, export / f"{path.parent.name}-{path.name}")
    run_all(settings)
    svc = start_service(settings, port=free_port(), env={"PERSONA_API_KEY": KEY})
    try:
        now = datetime.now(UTC) - timedelta(minutes=5)
        events = [{"user_id": USER, "event_type": "purchase", "timestamp": now.isoformat(), "amount": 20.0,
                   "currency": "EUR", "category": "home", "device_id": PERSON["device"],
                   "properties": {"email": PERSON["email"], "phone": PERSON["phone"], "name": "Erin"}},
                  {"anonymous_id": PERSON["anonymous"], "event_type": "page_view",
                   "timestamp": (now + timedelta(seconds=1)).isoformat()}]
        resp = httpx.post(f"{svc.url}/events", json={"events": events}, headers=AUTH, timeout=60)
        assert resp.status_code == 200 and resp.json()["accepted"] == 2, resp.text
        api_log = sorted((settings.data_dir / "raw" / "api").glob("*.jsonl"))
        for path in api_log:
            shutil.copy(path, export / f"api-{path.name}")
        httpx.post(f"{svc.url}/admin/reload-models", json={}, headers=AUTH, timeout=60)
        update = run_update(settings)
        yield {"settings": settings, "service": svc, "export": export, "update": update, **production}
    finally:
        svc.stop()


def _identifiers(settings: Settings) -> dict[str, str]:
    return forms(PERSON, settings.hash_salt) | {"local phone": LOCAL_PHONE,
                                               "local phone pseudonym": pseudonym(LOCAL_PHONE, settings.hash_salt,
                                                                                  "phone") or ""}


def _roots(world: dict) -> list[Path]:
    return [world["settings"].data_dir, Path(world["artifacts"])]


def _scan(world: dict, skip_privacy: bool = False) -> dict[str, object]:
    ids = _identifiers(world["settings"])
    return {"files": scan_files(_roots(world), ids),
            "redis": scan_redis(ids, world["project"]),
            "postgres": scan_postgres(ids, f"postgresql://{SERVER}", [world["schema"]])}


def test_the_person_is_stored_before_forgetting_and_raw_contacts_never_are(world: dict) -> None:
    settings = world["settings"]
    scan = _scan(world)
    found = scan["files"]
    assert "user" in scan["redis"]  # the Redis online store holds the person before forgetting
    # the scan sees the person (so 0 hits later means something): events, features, online store, history
    assert {"user", "anonymous pseudonym", "device pseudonym", "session pseudonym", "email pseudonym",
            "phone pseudonym", "local phone pseudonym"} <= set(found), found.keys()
    assert any("/events/" in f for f in found["user"]) and any("/history/" in f for f in found["user"])
    assert any("/raw/feed/" in f for f in found["email pseudonym"])  # the Parquet struct's e-mail, hashed
    assert any("/raw/shop/" in f for f in found["email pseudonym"])  # the CSV properties' e-mail, hashed
    # raw e-mail, phone, name, anonymous, device and session ids are nowhere at rest (inbox and quarantine
    # included), nor their plain hashes: pseudonymised or dropped at the door
    for name in ("email", "email lower", "phone", "phone digits", "email sha256", "phone sha256", "anonymous",
                 "device", "session", "name", "anonymous sha256", "device sha256", "local phone"):
        assert name not in found, (name, found.get(name))
    assert (settings.data_dir / "quarantine").exists()
    assert scan_contacts([settings.data_dir]) == {}  # no raw e-mail or phone of anyone in the demo's data


@pytest.fixture(scope="module")
def forgotten(world: dict) -> tuple:
    """``persona forget`` run twice (the second finds nothing left: idempotent)."""
    from typer.testing import CliRunner

    from persona.cli import app

    settings = world["settings"]
    env = {"PERSONA_CONFIG": str(settings.config_path), "PERSONA_DATA_DIR": str(settings.data_dir),
           "PERSONA_USER": "dpo@example.test"}
    return tuple(CliRunner().invoke(app, ["forget", USER], env=env) for _ in range(2))


def test_forget_erases_every_store_and_the_service_answers_cold_start(world: dict, forgotten: tuple) -> None:
    settings = world["settings"]
    result, again = forgotten
    assert result.exit_code == 0, result.output
    assert "clean events: rows" in result.output and "online store (Redis): keys" in result.output
    scan = _scan(world)
    assert scan == {"files": {}, "redis": {}, "postgres": {}}
    audit = [json.loads(line) for line in (settings.data_dir / "privacy" / "audit.jsonl").read_text().splitlines()]
    first, second = audit[-2:]  # the erasure, then the same request again (nothing left to erase)
    assert first["caller"] == "dpo@example.test" and first["counts"]["clean events: rows"] > 0
    assert first["counts"]["online store (Redis): keys"] > 0 and first["counts"]["persona history: rows"] > 0
    assert second["counts"] == {}
    assert USER not in json.dumps(audit)
    assert again.exit_code == 0 and "nothing left to erase" in again.output, again.output
    resp = httpx.post(f"{world['service'].url}/persona", json={"user_ids": [USER]}, timeout=60)
    assert resp.status_code == 200 and resp.json()["personas"][0]["cold_start"] is True, resp.text
    refused = httpx.post(f"{world['service'].url}/events", headers=AUTH, timeout=60, json={"events": [
        {"user_id": USER, "event_type": "page_view", "timestamp": datetime.now(UTC).isoformat()}]})
    assert refused.json()["accepted"] == 0 and "erased" in refused.json()["rejected"][0]["reason"]


def test_old_export_delivered_again_brings_nothing_back(world: dict, forgotten: tuple) -> None:
    from persona.pipeline import ingest_inbox

    settings = world["settings"]
    for path in world["export"].iterdir():  # under new names: the ledger has not seen these files
        channel = path.name.split("-", 1)[0]
        target = settings.data_dir / "raw" / channel / f"again-{path.name.split('-', 1)[1]}"
        shutil.copy(path, target)
    ingest_inbox(settings)
    assert _scan(world) == {"files": {}, "redis": {}, "postgres": {}}


def test_delete_endpoint_needs_the_key_and_forgets(world: dict, forgotten: tuple) -> None:
    import pandas as pd

    settings, url = world["settings"], world["service"].url
    events = pd.concat(pd.read_parquet(p, columns=["user_id"]) for p in (settings.data_dir / "events").rglob("*.parquet"))
    other = min(u for u in events["user_id"].dropna().unique() if u.startswith("u0"))
    assert httpx.delete(f"{url}/users/{other}", timeout=60).status_code == 401
    resp = httpx.delete(f"{url}/users/{other}", headers=AUTH, timeout=120)
    assert resp.status_code == 200 and resp.json()["counts"]["clean events: rows"] > 0, resp.text
    assert other not in resp.text
    persona = httpx.post(f"{url}/persona", json={"user_ids": [other]}, timeout=60).json()["personas"][0]
    assert persona["cold_start"] is True
    assert scan_files([settings.data_dir / "events"], {"user": other}) == {}
