"""The production profile: MLflow tracking and registry on PostgreSQL (127.0.0.1:5432, database test),
each test run in its own schema, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from base.config import MlflowSettings
from tests.conftest import settings_in
from tests.model.conftest import CATEGORIES, FAST, FEATURES, RULES, synthetic_set
from training.registry import alias_version
from training.train import train_all

SERVER = "postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_ml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[MlflowSettings, str]]:
    """MlflowSettings from the production profile, pointed at a fresh schema of the test database."""
    import psycopg

    schema = f"mlflow_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"postgresql://{SERVER}", autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    monkeypatch.setenv("PERSONA_PROFILE", "production")
    monkeypatch.setenv("PERSONA_MLFLOW_TRACKING_URI", f"postgresql+psycopg://{SERVER}?options=-csearch_path%3D{schema}")
    monkeypatch.setenv("PERSONA_MLFLOW_ARTIFACTS", (tmp_path / "artifacts").as_uri())
    try:
        yield settings_in(tmp_path / "data").ml, schema
    finally:
        with psycopg.connect(f"postgresql://{SERVER}", autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_production_profile_defaults_to_postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONA_PROFILE", "production")
    monkeypatch.delenv("PERSONA_MLFLOW_TRACKING_URI", raising=False)
    ml = settings_in(tmp_path / "data").ml
    assert ml.tracking_uri.startswith("postgresql") and ml.registry_uri == ml.tracking_uri
    monkeypatch.setenv("PERSONA_PROFILE", "default")
    assert settings_in(tmp_path / "data").ml.tracking_uri.startswith("sqlite:///")


def test_runs_aliases_and_decisions_live_in_postgres(postgres_ml: tuple[MlflowSettings, str]) -> None:
    import psycopg

    ml, schema = postgres_ml
    assert ml.tracking_uri.startswith("postgresql+psycopg://")
    data, split = synthetic_set(users=300, seed=1)
    summary = train_all(data, FEATURES, split, FAST, ml, rules=RULES, categories=CATEGORIES)
    assert all(m.alias == "champion" for m in summary.models)
    assert alias_version(ml, "spend").version == "1"
    with psycopg.connect(f"postgresql://{SERVER}") as conn:
        aliases = conn.execute(f'SELECT name, alias, version FROM "{schema}".registered_model_aliases').fetchall()
        tags = conn.execute(f'SELECT key FROM "{schema}".model_version_tags WHERE name = %s', ("persona-spend",)).fetchall()
        runs = conn.execute(f'SELECT count(*) FROM "{schema}".runs').fetchone()
    assert ("persona-spend", "champion", 1) in aliases
    assert any(k.startswith("decision.") for (k,) in tags)
    assert runs[0] == 3
