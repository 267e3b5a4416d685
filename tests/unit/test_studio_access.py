"""The studio keeps its keys between requests and still sees a rotated key at once (studio/access.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from base.config import Settings
from tests.conftest import PROJECT


@pytest.fixture
def studio_settings(settings: Settings, tmp_path: Path) -> Settings:
    """Settings whose segment rules are a copy of the project's."""
    rules = tmp_path / "segments.yaml"
    shutil.copy(PROJECT / "segments.yaml", rules)
    return settings.model_copy(update={"segments_file": rules})


def test_a_rotated_key_takes_effect_at_once_and_an_unchanged_file_is_not_read_again(
        studio_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    from base import access_keys
    from base.access_keys import add_client, revoke_client, rotate_client
    from base.paths import DataPaths
    from studio.app import build_app
    from studio.context import Hooks

    path = DataPaths(studio_settings.data_dir).access_keys
    old = add_client(path, "analyst", ["viewer"])
    reads = []
    real_read = access_keys._read
    monkeypatch.setattr(access_keys, "_read", lambda p: reads.append(p) or real_read(p))
    client = TestClient(build_app(Hooks(settings=lambda: studio_settings)))

    def status(key: str) -> int:
        return client.get("/rules", headers={"X-API-Key": key}, follow_redirects=False).status_code

    assert [status(old) for _ in range(5)] == [200] * 5
    assert len(reads) == 1  # loaded once: five requests, one read of the unchanged file

    new = rotate_client(path, "analyst")
    read_before = len(reads)
    assert status(new) == 200 and status(old) == 303 and status(new) == 200  # the old one is sent to sign in
    assert len(reads) == read_before + 1  # re-read once after the rotation, not per request

    revoke_client(path, "analyst")
    assert status(new) == 303
