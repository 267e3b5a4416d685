"""Size limits before parsing: an oversized body gets a 413 before it is read, counts and property
sizes over the configured bounds a 400 naming the setting (serving.max_batch / max_events are the
limits used, not the schema's ceiling)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from serving.limits import BodyLimitMiddleware

    raw = yaml.safe_load((PROJECT / "persona.yaml").read_text())
    raw["serving"] |= {"max_batch": 3, "max_events": 2, "max_body_bytes": 2048, "max_property_bytes": 16}
    cfg = tmp_path / "persona.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    for name in ("segments.yaml", "mlflow.yaml"):  # siblings the configuration names
        (tmp_path / name).write_text((PROJECT / name).read_text())
    monkeypatch.setenv("PERSONA_CONFIG", str(cfg))
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path / "data"))
    seen: list[bytes] = []

    async def echo(request: Request) -> JSONResponse:
        seen.append(await request.body())
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route(p, echo, methods=["POST"]) for p in ("/persona", "/events")])
    test = TestClient(BodyLimitMiddleware(app))
    test.seen = seen  # type: ignore[attr-defined]
    return test


def test_an_oversized_body_is_refused_before_it_is_read(client) -> None:  # noqa: ANN001
    big = b'{"user_ids": ["' + b"x" * 5000 + b'"]}'
    resp = client.post("/persona", content=big, headers={"content-type": "application/json"})
    assert resp.status_code == 413 and "serving.max_body_bytes" in resp.json()["error"]

    def chunks():  # noqa: ANN202 - sent without a Content-Length (chunked)
        for _ in range(10):
            yield b"x" * 500

    streamed = client.post("/persona", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "over 2048 bytes" in streamed.json()["error"]
    assert client.seen == []  # nothing reached the service


def test_counts_over_the_configured_bounds_name_the_setting(client) -> None:  # noqa: ANN001
    over = client.post("/persona", json={"user_ids": ["a", "b", "c", "d"]})
    assert over.status_code == 400 and over.json()["error"] == "user_ids: 4 in one request; at most 3 (serving.max_batch in persona.yaml)"
    events = [{"user_id": "u", "event_type": "page_view", "timestamp": "2026-01-01T00:00:00Z"}] * 3
    many = client.post("/events", json={"events": events})
    assert many.status_code == 400 and "serving.max_events" in many.json()["error"]
    ok = client.post("/persona", json={"user_ids": ["a", "b", "c"]})
    assert ok.status_code == 200 and client.seen[-1] == b'{"user_ids":["a","b","c"]}'  # the body reaches the service whole


@pytest.mark.parametrize(("props", "words"), [
    ({"note": "y" * 17}, "events[0].properties.note: 17 bytes; at most 16 (serving.max_property_bytes"),
    ({"deep": {"a": 1}}, "events[0].properties: nested 2 levels deep; at most 1 (serving.max_property_depth"),
])
def test_property_size_and_depth(client, props: dict, words: str) -> None:  # noqa: ANN001
    event = {"user_id": "u", "event_type": "page_view", "timestamp": "2026-01-01T00:00:00Z", "properties": props}
    resp = client.post("/events", json={"events": [event]})
    assert resp.status_code == 400 and words in resp.json()["error"]
    fine = client.post("/events", json={"events": [event | {"properties": {"note": "short"}}]})
    assert fine.status_code == 200
