"""The project's settings pointed at a benchmark's own data directory (shared by the benchmarks)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from base.config import Settings

PROJECT = Path(__file__).resolve().parent.parent


def bench_settings(data_dir: Path, config: Path | None = None, **sample: int) -> "Settings":
    """``persona.yaml`` (or ``config``) with its data directory, and optionally the sample size, replaced."""
    from base.config import load_settings

    s = load_settings(config or PROJECT / "persona.yaml")
    update: dict = {"data_dir": data_dir}
    if sample:
        update["sample"] = s.sample.model_copy(update=sample)
    return s.model_copy(update=update)
