"""The plain ``feast`` CLI, run as a subprocess from the feature repo with no PERSONA_* environment, sees the
same registry and files as ``persona``: the embedded default and the production profile (PostgreSQL registry,
Redis). The repo is a copy of feature_repo/ next to its own ``data/`` folder (the layout of a checkout), so
nothing is written into the working tree's data directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from base.config import Settings
from features.compute import compute_snapshots, write_snapshots
from features.store import open_store
from persona.pipeline import register_features
from tests.conftest import PROJECT, settings_in

FEAST = str(Path(sys.executable).parent / "feast")
VIEWS = ("user_behaviour", "user_lifetime", "user_activity", "user_persona", "user_recency_now", "user_time")
T0 = pd.Timestamp("2026-08-01", tz="UTC")


def _checkout(root: Path) -> Settings:
    """``root/feature_repo`` (a copy of the project's) and ``root/data`` with a few days of snapshots."""
    shutil.copytree(PROJECT / "feature_repo", root / "feature_repo", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("persona.yaml", "segments.yaml", "mlflow.yaml"):  # the repo follows the checkout's configuration
        shutil.copy(PROJECT / name, root / name)
    s = settings_in(root / "data").model_copy(update={"feature_repo": root / "feature_repo"})
    rng = np.random.default_rng(3)
    n = 600
    events = pd.DataFrame({
        "user_id": [f"u{i:06d}" for i in rng.integers(0, 20, n)],
        "timestamp": T0 + pd.to_timedelta(rng.integers(0, 10 * 86400, n), unit="s"),
        "event_type": rng.choice(["page_view", "purchase", "add_to_cart"], n), "amount": rng.gamma(2, 20, n),
        "channel": "web", "category": rng.choice(s.features.categories, n),
        "session_id": [f"s{i}" for i in rng.integers(0, 90, n)], "device": "mobile",
    })
    write_snapshots(compute_snapshots(events, s.features), s.data_dir / "features" / "user_behaviour")
    return s


def feast(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``feast ARGS`` from the repo folder, with no PERSONA_*/FEAST_* variables (plus ``env``); its output."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PERSONA_", "FEAST_"))}
    done = subprocess.run([FEAST, *args], cwd=repo, env=clean | (env or {}), capture_output=True, text=True, check=False,
                          timeout=300)
    assert done.returncode == 0, f"feast {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def changes(plan: str) -> list[str]:
    """The object lines of a ``feast plan`` output (Created/Updated/Deleted ...)."""
    return [line for line in plan.splitlines() if line.startswith(("Created", "Updated", "Deleted"))]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return _checkout(tmp_path_factory.mktemp("checkout"))


def test_feast_plan_from_the_repo_names_the_views(checkout: Settings) -> None:
    plan = feast(checkout.feature_repo, "plan")
    for view in VIEWS:
        assert any(line.endswith(f"view {view}") for line in changes(plan)), plan
    assert "Created feature service persona_v1" in plan
    assert not (checkout.data_dir / "feast" / "registry.db").exists() or "Created project persona" in plan


def test_feast_sees_what_persona_applied(checkout: Settings) -> None:
    register_features(checkout, open_store(checkout))
    listed = feast(checkout.feature_repo, "feature-views", "list")
    assert {line.split()[0] for line in listed.splitlines()[1:] if line.strip()} == set(VIEWS)
    plan = feast(checkout.feature_repo, "plan")
    # Same registry, same source paths, same online tables: nothing to create, delete or change but the
    # feature services, which Feast 0.67's own plan reports as updated after every apply (its sources' meta times).
    assert set(changes(plan)) <= {"Updated feature service persona_v1", "Updated feature service persona_v2"}, plan
    assert "No changes to infrastructure" in plan


@pytest.fixture
def production(tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    """A checkout whose project is unique on the shared PostgreSQL registry and Redis; removed afterwards."""
    s = _checkout(tmp_path)
    project = f"persona_cli_{uuid.uuid4().hex[:8]}"
    for name in ("persona_repo.py", "feature_store.production.yaml"):  # the repo names its project in both
        file = s.feature_repo / name
        file.write_text(file.read_text().replace('name="persona"', f'name="{project}"')
                        .replace("project: persona", f"project: {project}"))
    store = open_store(s, profile="production")
    try:
        yield s, project
    finally:
        store._get_provider().teardown_infra(project, store.list_feature_views(), store.list_entities())
        store.registry.delete_project(project, commit=True)


def test_feast_with_the_production_settings_reads_postgres_and_redis(production: tuple[Settings, str]) -> None:
    s, project = production
    store = open_store(s, profile="production")
    assert store.project == project and type(store.registry).__name__ == "SqlRegistry"
    register_features(s, store)
    env = {"PERSONA_PROFILE": "production", "FEAST_FS_YAML_FILE_PATH": "feature_store.production.yaml"}
    listed = feast(s.feature_repo, "feature-views", "list", env=env)
    assert {line.split()[0] for line in listed.splitlines()[1:] if line.strip()} == set(VIEWS)
