"""The real-time event path's pure parts: validation, stable ids, canonical rows, the durable log,
the online fold of behaviour features, the API-key check and the persona cache."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from base.config import Settings
from base.schema import EVENT_TYPES
from features.live_behaviour import fold_user
from ingestion.identity import empty_graph, links_from
from serving import event_log
from serving.auth import path_scope, presented_key, protected_paths
from serving.events import canonical_frame, check_events, default_event_id, log_records
from serving.schemas import EventIn, EventType

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _event(**kw: object) -> dict:
    return {"user_id": "u1", "event_type": "page_view", "timestamp": "2026-11-29T11:00:00+00:00"} | kw


def test_event_types_match_the_canonical_schema() -> None:
    assert set(EventType.__args__) == set(EVENT_TYPES)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("event", "field", "words"), [
    (_event(event_type="teleport"), "event_type", "Input should be"),
    (_event(timestamp="2026-11-29T11:00:00"), "timestamp", "timezone"),
    (_event(colour="red"), "colour", "unknown field"),
    ({"event_type": "page_view", "timestamp": "2026-11-29T11:00:00+00:00"}, None, "user_id, anonymous_id"),
    (_event(event_type="purchase"), None, "needs an amount"),
    (_event(event_type="purchase", amount=5), None, "needs a currency"),
    (_event(event_type="purchase", amount=-5, currency="EUR"), "amount", "greater than or equal"),
    (_event(event_type="purchase", amount=5, currency="JPY"), "currency", "unknown currency"),
    (_event(event_type="purchase", amount=5e9, currency="EUR"), "amount", "plausible maximum"),
    (_event(timestamp="1999-01-01T00:00:00+00:00"), "timestamp", "outside"),
    (_event(timestamp="2026-12-29T00:00:00+00:00"), "timestamp", "outside"),
    (["not", "an", "object"], None, "JSON object"),
])
def test_each_bad_event_is_rejected_with_its_field(settings: Settings, event: object, field: str | None,
                                                    words: str) -> None:
    good = _event(event_id="ok-1")
    checked = check_events([good, event], settings, NOW)
    assert [e.event_id for e in checked.events] == ["ok-1"] and checked.positions == [0]
    (rejected,) = checked.rejected
    assert rejected.index == 1 and rejected.field == field and words in rejected.reason


def test_an_event_without_id_gets_a_stable_one(settings: Settings) -> None:
    a = check_events([_event(), _event()], settings, NOW).events
    b = check_events([_event(event_type="search")], settings, NOW).events
    assert a[0].event_id == a[1].event_id == default_event_id(a[0]) and a[0].event_id.startswith("api-")
    assert b[0].event_id != a[0].event_id


def test_canonical_rows_are_utc_base_currency_and_stitched(settings: Settings) -> None:
    events = [EventIn.model_validate(e) for e in (
        {"anonymous_id": "v9", "user_id": "u7", "event_type": "identify", "timestamp": "2026-11-29T10:00:00+01:00",
         "event_id": "e1"},
        {"anonymous_id": "v9", "event_type": "purchase", "amount": 100, "currency": "USD",
         "timestamp": "2026-11-29T10:05:00+01:00", "event_id": "e2"},
        {"anonymous_id": "v3", "event_type": "page_view", "timestamp": "2026-11-29T10:06:00Z", "event_id": "e3"},
    )]
    frame = canonical_frame(events, settings, empty_graph())
    assert list(frame["user_id"]) == ["u7", "u7", "anon:v3"]  # the identify re-keys the visitor's purchase
    assert frame["timestamp"].iloc[1] == pd.Timestamp("2026-11-29T09:05:00Z")
    assert frame["amount"].iloc[1] == pytest.approx(100 * settings.fx_rates["USD"])
    assert frame["currency"].iloc[1] == settings.base_currency and (frame["channel"] == "api").all()


def test_known_graph_links_resolve_visitors(settings: Settings) -> None:
    seen = pd.DataFrame({"event_id": ["x"], "user_id": ["u5"], "anonymous_id": ["v5"], "device_id": [None],
                         "timestamp": [pd.Timestamp("2026-11-01", tz="UTC")]})
    graph = links_from(seen)
    ev = EventIn.model_validate({"anonymous_id": "v5", "event_type": "search", "timestamp": "2026-11-29T10:00:00Z",
                                 "event_id": "e"})
    assert canonical_frame([ev], settings, graph)["user_id"].tolist() == ["u5"]


def test_events_that_name_their_users_skip_the_stitch_with_the_same_rows(settings: Settings) -> None:
    from ingestion.identity import stitch

    seen = pd.DataFrame({"event_id": ["x"], "user_id": ["u5"], "anonymous_id": ["v5"], "device_id": [None],
                         "timestamp": [pd.Timestamp("2026-11-01", tz="UTC")]})
    graph = links_from(seen)
    events = [EventIn.model_validate({"user_id": u, "anonymous_id": a, "event_type": "purchase", "amount": 3, "currency": "EUR",
                                      "timestamp": "2026-11-29T10:00:00Z", "event_id": f"e{i}"})
              for i, (u, a) in enumerate([("u5", None), ("u6", "v5"), ("u7", "v9")])]
    fast = canonical_frame(events, settings, graph)
    pd.testing.assert_frame_equal(fast, stitch(fast, graph)[0])  # what the stitch would have given
    assert fast["user_id"].tolist() == ["u5", "u6", "u7"]
    bridge = EventIn.model_validate({"user_id": "device:d1", "event_type": "search", "timestamp": "2026-11-29T10:00:00Z"})
    assert canonical_frame([bridge], settings, graph)["user_id"].tolist() == ["device:d1"]  # stitched: no link


def test_the_log_holds_exactly_the_batch_and_leaves_no_temporary_file(tmp_path: Path, settings: Settings) -> None:
    events = check_events([_event(event_id="a", properties={"k": 1}), _event(event_id="b")], settings, NOW).events
    path = event_log.append(tmp_path / "api", log_records(events))
    assert path.parent == tmp_path / "api" and path.suffix == ".jsonl"
    assert [r["event_id"] for r in event_log.read_all(tmp_path / "api")] == ["a", "b"]
    assert event_log.read_all(tmp_path / "api")[0]["properties"] == '{"k": 1}'
    assert not list((tmp_path / "api").glob(".*"))


def test_folding_a_purchase_moves_windows_recency_and_ratios() -> None:
    current = {"purchases_7d": 1, "purchases_30d": 2, "purchases_90d": 4, "spend_7d": 10.0, "spend_30d": 30.0,
               "spend_90d": 90.0, "events_7d": 5, "events_30d": 10, "add_to_cart_30d": 4, "share_mobile_30d": 0.5,
               "last_purchase_ts": 1.0, "last_event_ts": 0.0, "first_event_ts": 0.0, "active_days_30d": 3}
    now = NOW.timestamp()
    events = pd.DataFrame({"timestamp": [pd.Timestamp(NOW) - pd.Timedelta(minutes=5)] * 2,
                           "event_type": ["purchase", "page_view"], "amount": [50.0, None],
                           "device": ["mobile", "mobile"], "session_id": ["s", "s"]})
    out = fold_user(current, events, now)
    assert out["purchases_7d"] == 2 and out["purchases_90d"] == 5
    assert out["spend_7d"] == 60.0 and out["spend_90d"] == 140.0 and out["aov_90d"] == 28.0
    assert out["events_7d"] == 7 and out["events_30d"] == 12
    assert out["cart_conversion_30d"] == pytest.approx(3 / 4)
    assert out["share_mobile_30d"] == pytest.approx((0.5 * 10 + 2) / 12)
    bought = (pd.Timestamp(NOW) - pd.Timedelta(minutes=5)).timestamp()  # recency is read from these times
    assert out["last_purchase_ts"] == bought and out["last_event_ts"] == bought
    assert out["active_days_30d"] == 4 and out["first_event_ts"] == 0.0  # tenure counts from the first event
    assert out["spend_30d"] == 80.0 and out["spend_trend"] == pytest.approx(80.0 / (140.0 / 3))


def test_an_event_older_than_a_window_only_counts_in_longer_ones() -> None:
    events = pd.DataFrame({"timestamp": [pd.Timestamp(NOW) - pd.Timedelta(days=10)], "event_type": ["purchase"],
                           "amount": [20.0], "device": [None], "session_id": [None]})
    out = fold_user({}, events, NOW.timestamp())
    assert out["purchases_7d"] == 0 and out["purchases_30d"] == 1 and out["spend_90d"] == 20.0
    assert out["first_event_ts"] == events["timestamp"].iloc[0].timestamp()  # a user first seen through the API


def test_api_key_rules() -> None:
    assert protected_paths(False) == ("/events", "/admin", "/report", "/users")  # /users: erasure (DELETE /users/{id})
    assert "/persona" in protected_paths(True)
    assert [path_scope(p) for p in ("/events", "/admin/reload-models", "/report/", "/persona")] == [
        "events", "admin", "viewer", "persona"]
    assert presented_key([(b"x-api-key", b" k ")]) == "k"
    assert presented_key([(b"authorization", b"Bearer k2")]) == "k2"
    assert presented_key([(b"authorization", b"Basic abc")]) is None


def _echo_app():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def ok(request):
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route(p, ok, methods=["POST", "GET"]) for p in ("/events", "/persona", "/healthz")])


def test_middlewares_refuse_non_json_and_keyless_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    from serving.auth import ApiKeyMiddleware
    from serving.content_type import JsonOnlyMiddleware

    monkeypatch.setenv("PERSONA_API_KEY", "sekret")
    client = TestClient(ApiKeyMiddleware(JsonOnlyMiddleware(_echo_app())))
    form = client.post("/persona", content=b"a=1", headers={"content-type": "multipart/form-data"})
    assert form.status_code == 415 and "multipart/form-data" in form.json()["error"]
    assert client.post("/persona", json={}).status_code == 200  # open unless configured
    assert client.post("/events", json={}).status_code == 401
    assert client.post("/events", json={}, headers={"x-api-key": "sekret"}).status_code == 200
    assert client.get("/healthz").status_code == 200
