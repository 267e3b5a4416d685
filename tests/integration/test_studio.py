"""The persona studio in headless Chromium against a real ``bentoml serve`` on a small pipeline run: every
page renders without console errors, a rule edit shows its preview, saving changes what POST /persona
answers (and a bad rule never reaches the file), an audience sync delivers who entered and left to a
webhook on 127.0.0.1 with a valid signature, retrying after a failure. Screenshots go to a temporary folder,
or to the folder named by ``PERSONA_STUDIO_SHOTS`` (``PERSONA_STUDIO_SHOTS=docs/studio`` refreshes the README's)."""

from __future__ import annotations

import hmac
import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pandas as pd
import pytest

from base.config import Settings, load_segment_file
from persona.pipeline import run_all
from scoring.batch import rescore_all
from scoring.history import append_history, latest_personas
from serving.process import ServiceProcess, free_port, start_service
from studio.aggregates import build
from studio.refresh import after_update
from studio.sync import SIGNATURE_HEADER, sign
from tests.conftest import PROJECT, settings_in
from training.champions import load_champions

pytestmark = pytest.mark.studio
CHROMIUM = "/usr/bin/chromium"
KEY = "studio-test-key-0123456789"
SECRET = "hook-secret-42"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: ``PERSONA_STUDIO_SHOTS`` when set, else a temporary folder."""
    chosen = os.environ.get("PERSONA_STUDIO_SHOTS")
    folder = (PROJECT / chosen) if chosen else tmp_path_factory.mktemp("studio-shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A small pipeline run, personas scored into the history, the studio's aggregates built; the segment
    rules are a copy (the studio edits it)."""
    root = tmp_path_factory.mktemp("studio")
    rules = root / "segments.yaml"
    shutil.copy(PROJECT / "segments.classic.yaml", rules)  # its first rule: churn_risk, spend_90d
    s = settings_in(root / "data", users=300, days=80).model_copy(
        update={"segments_file": rules, "segments": load_segment_file(rules)})
    run_all(s)
    rescore_all(s, load_champions(s.ml))
    build(s)
    return s


@pytest.fixture(scope="module")
def service(settings: Settings) -> Iterator[ServiceProcess]:
    """The service with the studio mounted, reading the copied rules."""
    svc = start_service(settings, port=free_port(), env={
        "PERSONA_API_KEY": KEY, "PERSONA_SEGMENTS_FILE": str(settings.segments_file), "PERSONA_HOOK_SECRET": SECRET})
    for path in ("/studio/", "/studio/static/plotly.js"):  # first use: plotly imported, aggregates loaded
        assert httpx.get(f"{svc.url}{path}", headers={"X-API-Key": KEY}, timeout=120).status_code == 200
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, service: ServiceProcess) -> Iterator[Any]:
    """A signed-in page that records console errors, page errors and requests leaving 127.0.0.1."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(90_000)  # generous: CI machines are shared
    pg = ctx.new_page()
    pg.problems, pg.outside = [], []
    pg.on("console", lambda m: pg.problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.problems.append(str(e)))
    pg.on("request", lambda r: pg.outside.append(r.url) if not r.url.startswith(service.url) else None)
    pg.goto(f"{service.url}/studio/")
    assert "/studio/login" in pg.url  # no key, no studio
    pg.fill("#key", KEY)
    pg.click("#sign-in")
    pg.wait_for_url(f"{service.url}/studio/")
    yield pg
    ctx.close()


def _users(settings: Settings) -> list[str]:
    return sorted(latest_personas(settings)["user_id"])[:40]


def _segments(service: ServiceProcess, users: list[str]) -> dict[str, str]:
    resp = httpx.post(f"{service.url}/persona", json={"user_ids": users}, timeout=30)
    resp.raise_for_status()
    return {p["user_id"]: p["segment"] for p in resp.json()["personas"]}


def test_every_page_renders_without_console_errors(page: Any, service: ServiceProcess, settings: Settings,
                                                   shots: Path) -> None:
    user = _users(settings)[0]
    for name, path, marker in [("overview", "/", "#profiles"), ("person", f"/person?q={user}", "#live"),
                               ("rules", "/rules", "#rules"), ("audiences", "/audiences", "#new-audience"),
                               ("models", "/models", "table.model")]:
        page.goto(f"{service.url}/studio{path}")
        page.wait_for_load_state("load")
        assert page.locator(marker).count() >= 1, (name, page.content()[:500])
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    charts = page.evaluate("() => document.querySelectorAll('.plotly-graph-div').length")
    page.goto(f"{service.url}/studio/")
    drawn = page.evaluate("() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => "
                          "d.querySelectorAll('svg.main-svg').length)")
    assert charts == 0 and len(drawn) >= 3 and all(n > 0 for n in drawn), drawn  # overview: sizes, migration, profiles
    assert not page.problems, page.problems
    assert not page.outside, page.outside  # nothing loaded from anywhere but the service


def test_rule_edit_previews_and_saving_changes_what_post_persona_answers(page: Any, service: ServiceProcess,
                                                                        settings: Settings, shots: Path) -> None:
    users = _users(settings)
    before = _segments(service, users)
    assert set(before.values()) != {"drifting_away"}
    original = Path(settings.segments_file).read_text()
    page.goto(f"{service.url}/studio/rules")
    page.fill("input[name='r0.c0.value']", "abc")  # a bad value: the preview says why, saving refuses
    page.wait_for_selector("#preview .error")
    page.click("#save")
    assert "is not a number" in page.locator(".error").first.inner_text()
    assert Path(settings.segments_file).read_text() == original  # the bad rule never reached the file
    page.goto(f"{service.url}/studio/rules")
    page.fill("input[name='r0.c0.value']", "0")  # drifting_away: churn_risk >= 0 and spend_90d > -1 → everyone known
    page.fill("input[name='r0.c1.value']", "-1")
    page.wait_for_selector("#preview-changed")
    changed = int(page.locator("#preview-changed").inner_text().replace(",", ""))
    assert changed > 0 and page.locator("#preview-sample tr").count() > 1
    page.screenshot(path=str(shots / "rules-preview.png"), full_page=True)
    page.fill("input[name='note']", "everyone is drifting away (test)")
    page.click("#save")
    assert "saved as version 2" in page.locator(".ok").inner_text()
    assert load_segment_file(Path(settings.segments_file))[0].all[1].value == -1
    after = _segments(service, users)
    assert set(after.values()) == {"drifting_away"}, after  # no restart
    assert page.locator("#versions tr").count() == 3  # header, the file as found, the edit
    page.locator("#versions form").last.locator("button").click()  # restore version 1
    assert "restored version 1" in page.locator(".ok").inner_text()
    assert Path(settings.segments_file).read_text() == original
    assert _segments(service, users) == before
    assert not page.problems, page.problems


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict, str, bytes]]] = []
    fail_next = 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((json.loads(body), self.headers.get(SIGNATURE_HEADER, ""), body))
        status = 500 if type(self).fail_next > 0 else 200
        type(self).fail_next -= 1
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Hook]]]:
    """A webhook server on 127.0.0.1 that fails its first request."""
    handler = type("Hook", (_Hook,), {"received": [], "fail_next": 1})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", handler
    server.shutdown()
    server.server_close()


def test_audience_sync_delivers_entered_and_left_and_retries(page: Any, service: ServiceProcess, settings: Settings,
                                                             webhook: tuple[str, type[_Hook]], shots: Path) -> None:
    url, hook = webhook
    current = latest_personas(settings)
    cut = float(current["churn_risk"].median())
    members = set(current.loc[current["churn_risk"] >= cut, "user_id"])
    page.goto(f"{service.url}/studio/audiences")
    page.fill("input[name='name']", "at-risk")
    page.select_option("select[name='c0.field']", "churn_risk")
    page.select_option("select[name='c0.op']", ">=")
    page.fill("input[name='c0.value']", str(cut))
    page.select_option("select[name='destination']", "webhook")
    page.fill("input[name='url']", url)
    page.fill("input[name='secret_env']", "PERSONA_HOOK_SECRET")
    page.click("#create")
    assert "audience at-risk saved" in page.locator(".ok").inner_text()
    page.click("#sync-at-risk")  # delivered by the service: first try refused (500), the retry lands
    assert "delivered" in page.locator(".ok").inner_text()
    assert len(hook.received) == 2 and hook.received[0][0]["delivery_id"] == hook.received[1][0]["delivery_id"]
    first, signature, body = hook.received[1]
    assert hmac.compare_digest(signature, sign(SECRET, body))
    assert set(first["entered"]) == members and first["left"] == []
    assert page.locator("#deliveries tr").count() == 3  # header, failed try, delivered try
    page.screenshot(path=str(shots / "audiences.png"), full_page=True)

    # the next update moves two members out and two others in; its sync sends only them
    out, into = sorted(members)[:2], sorted(set(current["user_id"]) - members)[:2]
    moved = current.loc[current["user_id"].isin(out + into)].copy()
    moved["churn_risk"] = [0.0 if u in out else 0.99 for u in moved["user_id"]]
    moved["feature_timestamp"] = moved["feature_timestamp"] + pd.Timedelta(days=1)
    moved["scored_at"] = pd.Timestamp.now(tz="UTC")
    assert append_history(settings, moved, "batch") == 4
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSONA_HOOK_SECRET", SECRET)
        line = after_update(settings)  # what `persona update` calls at its end
    assert "audience at-risk: delivered (+2 -2)" in line, line
    second = hook.received[-1][0]
    assert sorted(second["entered"]) == sorted(into) and sorted(second["left"]) == sorted(out)
    assert second["previous_as_of"] == first["as_of"]
    assert not page.problems, page.problems


def test_model_actions_need_a_confirmation_and_show_the_gates_answer(page: Any, service: ServiceProcess) -> None:
    page.goto(f"{service.url}/studio/models")
    page.click("#promote-spend")
    assert "promote" in page.locator("main").inner_text() and page.locator("#confirm").count() == 1
    page.click("#confirm")  # only version 1 exists: there is no challenger to promote
    assert "has no 'challenger' version" in page.locator(".error").inner_text()
    page.click("#rollback-spend")
    page.click("#confirm")
    assert "replaced no earlier champion" in page.locator(".error").inner_text()
    refused = httpx.post(f"{service.url}/studio/models/act", data={"target": "spend", "action": "rollback"},
                         headers={"X-API-Key": KEY}, timeout=30)
    assert "needs its confirmation" in refused.text
    assert httpx.post(f"{service.url}/studio/models/act", data={"target": "spend", "action": "rollback",
                                                                 "confirm": "yes"}, timeout=30).status_code == 401
    assert not page.problems, page.problems
