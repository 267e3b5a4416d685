"""The packages are layers along the data flow: the import-linter contracts in pyproject.toml hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold() -> None:
    """A wrong-way import (say, training importing serving), a cycle between sibling modules, or a stage
    importing the sample generator fails here, naming the import."""
    done = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=PROJECT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def test_a_wrong_way_import_is_caught(tmp_path: Path) -> None:
    """The layer contract really bites: a copy of the tree where the base layer imports serving fails."""
    import shutil

    for name in ("base", "validation", "ingestion", "features", "training", "scoring", "studio", "serving", "persona"):
        shutil.copytree(PROJECT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "base" / "wrong_way.py").write_text("from serving.schemas import PersonaResponse\n")
    done = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "base.wrong_way -> serving.schemas" in done.stdout
