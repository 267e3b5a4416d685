"""The studio's parts without a browser: rule validation, versions and live reload, the preview, audience
definitions, and syncs to a destination that is down or a CSV drop (real files, real history)."""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from base.config import ConfigError, Settings, load_segment_file
from scoring.history import append_history
from studio import rule_versions
from studio.audiences import Audience, save_audience
from studio.pages.rules import parse
from studio.preview import preview
from studio.sync import deliveries, sync_audience
from tests.conftest import PROJECT

KNOWN = {"spend_90d", "purchases_90d", "aov_90d", "product_views_30d", "predicted_spend", "churn_risk"}


@pytest.fixture
def studio_settings(settings: Settings, tmp_path: Path) -> Settings:
    """Settings whose segment rules are a copy of the project's prediction-based rule set (the tests edit
    its first rule, drifting_away: churn_risk >= 0.6 and spend_90d > 0)."""
    rules = tmp_path / "segments.yaml"
    shutil.copy(PROJECT / "segments.classic.yaml", rules)
    return settings.model_copy(update={"segments_file": rules, "segments": load_segment_file(rules)})


def _items(path: Path) -> list[dict]:
    return [r.model_dump() for r in load_segment_file(path)]


@pytest.mark.parametrize(("change", "words"), [
    (lambda items: items[0]["all"].append({"field": "shoe_size", "op": ">", "value": 1}), "unknown field 'shoe_size'"),
    (lambda items: items.pop(), "the last segment rule must be a catch-all"),
    (lambda items: items[1].update(name=items[0]["name"]), "segment names must be unique"),
    (lambda items: items[0]["all"][0].update(op="=>"), "segments[0] (drifting_away)"),
])
def test_a_bad_rule_is_refused_with_its_reason_and_never_written(studio_settings: Settings, change, words: str) -> None:  # noqa: ANN001
    path = Path(studio_settings.segments_file)
    original = path.read_text()
    items = _items(path)
    change(items)
    with pytest.raises(ConfigError, match=re.escape(words)):
        rule_versions.validate(items, KNOWN)
    assert path.read_text() == original and not rule_versions.history(studio_settings)


def test_form_values_that_are_not_numbers_name_the_rule_and_condition() -> None:
    form = {"rules": ["1"], "r0.name": ["big"], "r0.conds": ["1"], "r0.c0.field": ["spend_90d"],
            "r0.c0.op": [">"], "r0.c0.value": ["lots"]}
    with pytest.raises(ConfigError, match=r"rule 1 \(big\), condition 1: value 'lots' is not a number"):
        parse(form)
    form["r0.c0.value"] = ["10"]
    assert parse(form) == [{"name": "big", "description": "", "all": [{"field": "spend_90d", "op": ">", "value": 10.0}]}]


def test_saving_versions_the_file_and_any_version_can_be_restored(studio_settings: Settings) -> None:
    path = Path(studio_settings.segments_file)
    original = path.read_text()
    items = _items(path)
    items[1]["all"][0]["value"] = 999.0
    rules = rule_versions.validate(items, KNOWN)
    v = rule_versions.save(studio_settings, rules, "ana", "raise the bar", rule_versions.digest(original))
    assert v.version == 2 and v.by == "ana" and v.note == "raise the bar"
    assert "+" in v.diff and "999" in v.diff and "150" in v.diff  # the diff shows the old and the new value
    assert load_segment_file(path)[1].all[0].value == 999.0 and path.read_text().startswith("# Named personas")
    with pytest.raises(rule_versions.StaleEdit, match="changed since this form was opened"):
        rule_versions.save(studio_settings, rules, "bob", "", rule_versions.digest(original))  # bob's form is stale
    back = rule_versions.restore(studio_settings, 1, "ana", KNOWN)
    assert back.version == 3 and path.read_text() == original
    assert [h.version for h in rule_versions.history(studio_settings)] == [3, 2, 1]


def test_the_service_watch_reloads_a_saved_file_and_keeps_rules_when_the_file_is_broken(studio_settings: Settings) -> None:
    path = Path(studio_settings.segments_file)
    watch = rule_versions.RulesWatch(path, load_segment_file(path), lambda rules: None)
    assert watch.current()[0].name == "drifting_away"
    items = _items(path)
    items[0]["name"] = "leaving"
    rule_versions.save(studio_settings, rule_versions.validate(items, KNOWN), "ana")
    assert watch.current()[0].name == "leaving" and watch.version != "0"
    path.write_text("segments: [oops")  # a hand edit gone wrong: the rules in use stay
    assert watch.current()[0].name == "leaving"


def test_preview_counts_moves_and_members(studio_settings: Settings) -> None:
    saved = load_segment_file(Path(studio_settings.segments_file))
    n = 200
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": [f"u{i}" for i in range(n)], "churn_risk": rng.random(n),
                          "spend_90d": rng.random(n) * 100, "predicted_spend": rng.random(n) * 300,
                          "purchases_90d": rng.integers(0, 5, n), "aov_90d": rng.random(n) * 80,
                          "product_views_30d": rng.integers(0, 10, n)})
    items = _items(Path(studio_settings.segments_file))
    items[0]["all"][0]["value"] = 0.3  # drifting_away from churn 0.3 instead of 0.6
    p = preview(frame, saved, rule_versions.validate(items, KNOWN), "drifting_away")
    old = int(((frame["churn_risk"] >= 0.6) & (frame["spend_90d"] > 0)).sum())
    new = int(((frame["churn_risk"] >= 0.3) & (frame["spend_90d"] > 0)).sum())
    assert ("drifting_away", old, new) in p.sizes
    assert p.entered_count == new - old and p.left_count == 0 and p.changed == new - old
    assert all(to == "drifting_away" for _, to, _ in p.moves) and len(p.sample) == 10
    assert p.overlap.loc["drifting_away", "casual"] == new  # the catch-all matches everyone


@pytest.mark.parametrize(("fields", "words"), [
    ({"segment": "", "conditions": []}, "choose a segment or add at least one filter"),
    ({"segment": "casual", "conditions": [{"field": "spend_90d", "op": ">", "value": 1}]}, "not a persona field"),
    ({"segment": "casual", "destination": "webhook", "url": "ftp://x", "secret_env": "S"}, "must start with http"),
    ({"segment": "casual", "destination": "csv"}, "csv destination needs a folder"),
    ({"name": "Big Spenders", "segment": "casual"}, "lower-case letters"),
])
def test_audience_definitions_are_validated(fields: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Audience(**{"name": "a", **fields})


def _personas(day: str, churn: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [f"u{i}" for i in range(len(churn))], "segment": "casual", "predicted_spend": 10.0,
                         "churn_risk": churn, "spend_version": "1", "churn_version": "1",
                         "feature_timestamp": pd.Timestamp(day, tz="UTC"), "scored_at": pd.Timestamp.now(tz="UTC")})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_destination_that_is_down_is_logged_and_the_next_sync_sends_everything_since(settings: Settings,
                                                                                       tmp_path: Path,
                                                                                       monkeypatch) -> None:  # noqa: ANN001
    append_history(settings, _personas("2026-11-01", [0.9, 0.8, 0.1, 0.2]), "batch")
    monkeypatch.setenv("HOOK_SECRET", "s")
    down = Audience(name="risky", conditions=[{"field": "churn_risk", "op": ">=", "value": 0.5}],
                    destination="webhook", url=f"http://127.0.0.1:{_closed_port()}/hook", secret_env="HOOK_SECRET")
    save_audience(settings, down)
    waits: list[float] = []
    result = sync_audience(settings, down, sleep=waits.append)
    assert result.status == "failed" and result.attempts == 3 and waits == [0.5, 1.0]
    assert [d["status"] for d in deliveries(settings, "risky")] == ["failed"] * 3
    # the destination becomes a CSV drop; the next sync still sends the first delta (nothing was delivered)
    drop = down.model_copy(update={"destination": "csv", "folder": str(tmp_path / "crm")})
    append_history(settings, _personas("2026-11-02", [0.9, 0.1, 0.7, 0.2]), "batch")
    result = sync_audience(settings, drop)
    assert (result.status, result.entered, result.left) == ("delivered", 2, 0)  # u0 and u2 (u1 left before any delivery)
    files = list((tmp_path / "crm").glob("risky-*.csv"))
    assert len(files) == 1 and sorted(pd.read_csv(files[0])["user_id"]) == ["u0", "u2"]
    append_history(settings, _personas("2026-11-03", [0.1, 0.1, 0.7, 0.9]), "batch")
    result = sync_audience(settings, drop)
    assert (result.status, result.entered, result.left) == ("delivered", 1, 1)
    newest = max((tmp_path / "crm").glob("risky-*.csv"), key=lambda p: p.stat().st_mtime_ns)
    assert pd.read_csv(newest).sort_values("user_id").values.tolist() == [["u0", "left"], ["u3", "entered"]]


def test_roles_include_the_weaker_ones_and_unsigned_calls_change_nothing(studio_settings: Settings, monkeypatch) -> None:  # noqa: ANN001
    from starlette.testclient import TestClient

    from studio.access import Caller
    from studio.app import build_app
    from studio.context import Hooks

    assert Caller("editor", "e").may("viewer") and not Caller("editor", "e").may("admin")
    assert Caller("admin", "a").may("editor") and not Caller("viewer", "v").may("editor")
    monkeypatch.setenv(studio_settings.serving.api_key_env, "right")
    client = TestClient(build_app(Hooks(settings=lambda: studio_settings)))
    original = Path(studio_settings.segments_file).read_text()
    form = {"rules": "1", "r0.name": "everyone", "r0.conds": "0"}
    for headers in ({}, {"X-API-Key": "wrong"}):
        resp = client.post("/rules/save", data=form, headers=headers)
        assert resp.status_code == 401 and "sign in" in resp.text
    assert Path(studio_settings.segments_file).read_text() == original
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")
    assert client.get("/rules", headers={"X-API-Key": "right"}).status_code == 200


def test_person_search_by_email_hashes_it_like_the_clean_store(settings: Settings) -> None:
    from base.paths import DataPaths
    from studio.aggregates import AggregateCache, build
    from studio.pages.person import hash_email

    append_history(settings, _personas("2026-11-01", [0.9, 0.1]), "batch")
    digest = hash_email("  Ana@Example.COM ", settings)
    assert digest and "ana" not in digest and digest == hash_email("ana@example.com", settings)
    part = DataPaths(settings.data_dir).events / "date=2026-10-31"
    part.mkdir(parents=True)
    pd.DataFrame({"user_id": ["u1", "u0"], "email_hash": [digest, None],
                  "timestamp": pd.Timestamp("2026-10-31 10:00", tz="UTC"), "event_type": "purchase",
                  "channel": "crm", "amount": [12.5, None], "currency": "EUR", "category": "home",
                  "product_id": None, "device": None}).to_parquet(part / "crm.parquet", index=False)
    assert build(settings).startswith("studio aggregates for 2 users")
    assert build(settings).startswith("skipped")  # nothing changed since
    agg = AggregateCache().get(settings)
    assert agg is not None and agg.user_of_email(digest) == "u1" and agg.user_of_email("nope") is None
    assert agg.events("u1")["amount"].tolist() == [12.5] and len(agg.timeline("u1")) == 1
    assert agg.person("u1")["segment"] == "casual"
