"""Shared fixtures: settings pointed at a temporary data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from persona.config import Settings, load_settings

PROJECT = Path(__file__).resolve().parent.parent

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


def settings_in(data_dir: Path, **sample: int) -> Settings:
    """The project's persona.yaml with its data directory (and optionally sample size) replaced."""
    s = load_settings(PROJECT / "persona.yaml")
    update: dict = {"data_dir": data_dir}
    if sample:
        update["sample"] = s.sample.model_copy(update=sample)
    return s.model_copy(update=update)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a fresh, empty data directory."""
    return settings_in(tmp_path / "data")
