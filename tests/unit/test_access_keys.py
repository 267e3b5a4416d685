"""Scoped client keys: stored hashed, checked by scope, rotated and revoked without a restart, and the
service's middleware refusing by scope (401 for a missing or wrong key, 403 for a missing scope)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from base.access_keys import (
    ENV_CLIENT,
    AccessKeyError,
    AccessKeys,
    add_client,
    list_clients,
    revoke_client,
    rotate_client,
)
from tests.conftest import PROJECT


def test_keys_are_hashed_scoped_and_live(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "access_keys.json"
    keys = AccessKeys.load(path)
    assert keys.check("anything", "events") is None and not keys.configured
    shop = add_client(path, "shop", ["events"])
    studio = add_client(path, "studio", ["editor"])
    assert shop not in path.read_text() and studio not in path.read_text()  # nothing in clear
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert keys.check(shop, "events") == "shop"  # picked up without re-loading
    assert keys.check(shop, "persona") is None and keys.check(shop, "admin") is None
    assert keys.check(studio, "viewer") == "studio" and keys.check(studio, "editor") == "studio"
    assert keys.check(studio, "events") is None
    assert keys.check(None, "events") is None and keys.check("", "events") is None
    new = rotate_client(path, "shop")
    assert keys.check(shop, "events") is None and keys.check(new, "events") == "shop"  # the old key stops at once
    revoke_client(path, "studio")
    assert keys.check(studio, "viewer") is None
    assert [(c.name, c.scopes) for c in list_clients(path)] == [("shop", ("events",))]
    assert list_clients(path)[0].rotated is not None


def test_the_environment_key_is_an_admin_key(tmp_path: Path) -> None:
    keys = AccessKeys.load(tmp_path / "none.json", admin_key="old-single-key")
    assert keys.configured
    assert all(keys.check("old-single-key", s) == ENV_CLIENT for s in ("events", "persona", "admin", "viewer", "editor"))
    assert keys.check("other", "events") is None


@pytest.mark.parametrize(("call", "words"), [
    (lambda p: add_client(p, "a b", ["events"]), "invalid client name"),
    (lambda p: add_client(p, "x", ["root"]), "unknown scope 'root'"),
    (lambda p: add_client(p, "x", []), "at least one scope"),
    (lambda p: rotate_client(p, "ghost"), "no client named 'ghost'"),
    (lambda p: revoke_client(p, "ghost"), "no client named 'ghost'"),
])
def test_bad_key_commands_name_the_problem(tmp_path: Path, call, words: str) -> None:  # noqa: ANN001
    with pytest.raises(AccessKeyError, match=words):
        call(tmp_path / "k.json")


def test_a_second_add_of_a_name_is_refused_and_a_broken_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    add_client(path, "shop", ["events"])
    with pytest.raises(AccessKeyError, match="already has a key"):
        add_client(path, "shop", ["admin"])
    path.write_text('{"clients": {"x": {"hash": "h", "scopes": ["god"]}}}')
    with pytest.raises(AccessKeyError, match=r"k.json: client 'x': unknown scope 'god'"):
        AccessKeys.load(path)


def test_the_cli_prints_a_key_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    from persona.cli import app

    env = {"PERSONA_DATA_DIR": str(tmp_path / "data")}
    cfg = ["--config", str(PROJECT / "persona.yaml")]
    runner = CliRunner()
    added = runner.invoke(app, ["keys", "add", "shop", "--scope", "events", "--scope", "persona", *cfg], env=env)
    assert added.exit_code == 0, added.output
    key = added.output.strip().splitlines()[-1]
    stored = (tmp_path / "data" / "secrets" / "access_keys.json").read_text()
    assert key.startswith("pk_") and key not in stored
    listed = runner.invoke(app, ["keys", "list", *cfg], env=env)
    assert "shop\tevents,persona" in listed.output and key not in listed.output
    rotated = runner.invoke(app, ["keys", "rotate", "shop", *cfg], env=env)
    assert rotated.exit_code == 0 and key not in rotated.output
    bad = runner.invoke(app, ["keys", "add", "x", "--scope", "root", *cfg], env=env)
    assert bad.exit_code == 1 and "unknown scope 'root'" in bad.output
    assert runner.invoke(app, ["keys", "revoke", "shop", *cfg], env=env).exit_code == 0


def test_the_middleware_refuses_by_scope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from serving.auth import ApiKeyMiddleware

    async def ok(request):  # noqa: ANN001, ANN202
        return JSONResponse({"ok": True})

    data = tmp_path / "data"
    monkeypatch.setenv("PERSONA_DATA_DIR", str(data))
    monkeypatch.setenv("PERSONA_CONFIG", str(PROJECT / "persona.yaml"))
    monkeypatch.delenv("PERSONA_API_KEY", raising=False)
    app = Starlette(routes=[Route(p, ok, methods=["POST", "GET"]) for p in ("/events", "/persona", "/report/", "/admin/x")])
    client = TestClient(ApiKeyMiddleware(app))
    nokeys = client.post("/events", json={})
    assert nokeys.status_code == 401 and "persona keys add" in nokeys.json()["error"]
    path = data / "secrets" / "access_keys.json"
    shop = add_client(path, "shop", ["events"])
    viewer = add_client(path, "analyst", ["viewer"])
    assert client.post("/events", json={}, headers={"x-api-key": shop}).status_code == 200
    assert client.post("/events", json={}, headers={"authorization": f"Bearer {shop}"}).status_code == 200
    refused = client.get("/report/", headers={"x-api-key": shop})
    assert refused.status_code == 403 and "lacks the scope 'viewer'" in refused.json()["error"]
    assert client.get("/report/").status_code == 401  # the report (per-user rows) needs a key
    assert client.get("/report/", headers={"x-api-key": viewer}).status_code == 200
    assert client.post("/admin/x", json={}, headers={"x-api-key": viewer}).status_code == 403
    assert client.post("/events", json={}, headers={"x-api-key": "pk_wrong"}).json()["error"] == "wrong API key"
    assert client.post("/persona", json={}).status_code == 200  # open by default (require_key_for_persona)
    new = rotate_client(path, "shop")  # a rotation reaches the running middleware
    assert client.post("/events", json={}, headers={"x-api-key": shop}).status_code == 401
    assert client.post("/events", json={}, headers={"x-api-key": new}).status_code == 200
