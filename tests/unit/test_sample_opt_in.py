"""The sample is generated only when the configuration asks for it: the demo persona.yaml does, a user's
configuration of real channels does not (no synthetic users mixed into real data)."""

from __future__ import annotations

from pathlib import Path

from base.config import load_settings
from persona.pipeline import ensure_sample
from tests.conftest import settings_in


def test_own_configuration_gets_no_sample(tmp_path: Path) -> None:
    (tmp_path / "persona.yaml").write_text(
        "data_dir: data\nchannels:\n  shop: {path: raw/shop/*.csv, format: csv, columns: {timestamp: date}}\n")
    settings = load_settings(tmp_path / "persona.yaml")
    assert settings.sample.generate is False
    assert ensure_sample(settings) is None
    assert not (tmp_path / "data").exists()


def test_the_demo_configuration_asks_for_the_sample(tmp_path: Path) -> None:
    settings = settings_in(tmp_path / "data", users=30, days=30)
    assert settings.sample.generate is True
    assert ensure_sample(settings) > 0 and any((tmp_path / "data" / "raw").rglob("*.*"))
    assert ensure_sample(settings) is None  # not twice
