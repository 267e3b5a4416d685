"""The code passes ruff's checks for errors and likely bugs (``[tool.ruff]`` in pyproject.toml): an unused
import, an undefined name or a mutable default argument fails here, naming the file and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).with_name("ruff")


def test_ruff_finds_nothing() -> None:
    """``ruff check`` over the whole project exits 0."""
    done = subprocess.run([str(RUFF), "check", "--no-cache", "."], cwd=PROJECT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_ruff_catches_an_undefined_name(tmp_path: Path) -> None:
    """The check really bites: a file using an undefined name fails, with its path and the rule."""
    (tmp_path / "pyproject.toml").write_text((PROJECT / "pyproject.toml").read_text())
    (tmp_path / "wrong.py").write_text("def f() -> int:\n    return missing_name\n")
    done = subprocess.run([str(RUFF), "check", "--no-cache", "."], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "wrong.py" in done.stdout and "F821" in done.stdout
