"""Shared fixtures: settings pointed at a temporary data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from base.config import Settings, load_settings

PROJECT = Path(__file__).resolve().parent.parent

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("PERSONA_HASH_SALT", "tests-only-pseudonym-key-0f3c9a")  # production refuses the public default


def python_script(code: str, folder: Path, name: str = "child.py") -> list[str]:
    """A command running ``code`` from a file in ``folder`` (not ``python -c``: with the Spark extra installed,
    Great Expectations imports PySpark, whose connect module exits 0 in a process whose ``__main__`` has no file)."""
    import sys

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(code, encoding="utf-8")
    return [sys.executable, str(path)]


def settings_in(data_dir: Path, **sample: int) -> Settings:
    """The project's persona.yaml with its data directory (and optionally sample size) replaced."""
    s = load_settings(PROJECT / "persona.yaml")
    update: dict = {"data_dir": data_dir}
    if sample:
        update["sample"] = s.sample.model_copy(update=sample)
    return s.model_copy(update=update)


ISOLATED_PREFIXES = ("PERSONA_PROFILE", "PERSONA_MLFLOW_", "PERSONA_FEAST_", "PERSONA_CONFIG", "PERSONA_DATA_DIR",
                     "PERSONA_REDIS", "PERSONA_API_KEY", "PERSONA_MODEL_POLL_SECONDS",
                     "PERSONA_REQUIRE_KEY_FOR_PERSONA", "PERSONA_SCORE_CACHE_SIZE", "PERSONA_MODEL_RETRY_SECONDS", "PERSONA_READ_RECORDS",
                     "PERSONA_ENGINE", "PERSONA_SEGMENTS_FILE")


def pytest_configure(config: pytest.Config) -> None:
    """A pytest-xdist worker (``make test``) runs in execnet's ``python -c`` bootstrap: its ``__main__`` has
    neither a file nor a spec, which PySpark's connect package (imported by Great Expectations, with the
    Spark extra installed) takes for its doctest runner: it ``sys.exit(0)``s the import, and every test that
    validates a batch errors with ``SystemExit: 0``. The worker's ``__main__`` gets pytest's own module spec,
    as in ``python -m pytest`` (what multiprocessing's spawn would re-import is then that guarded module)."""
    import importlib.util
    import sys

    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__spec__", None) is None and not hasattr(main, "__file__"):
        main.__spec__ = importlib.util.find_spec("pytest.__main__")


HEAVY_FIRST = ("tests/soak/", "tests/spark/", "tests/privacy/", "tests/integration/", "tests/faults/", "tests/data/",
               "tests/model/", "tests/property/", "tests/unit/")
"""Folders in the order their tests are handed out: those that build whole pipelines, start services or a
JVM first, so that on two pytest-xdist workers (``make test``) a long module never starts last while the other
worker idles; the many short unit tests fill in at the end. Within a folder the order stays the collection's."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Heaviest folders first (see :data:`HEAVY_FIRST`; the order of tests in a module is unchanged)."""
    def rank(item: pytest.Item) -> int:
        return next((i for i, folder in enumerate(HEAVY_FIRST) if item.nodeid.startswith(folder)), len(HEAVY_FIRST))

    items.sort(key=rank)  # stable


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment() -> None:
    """Tests never pick up a developer's profile, stores or data directory from the shell."""
    for name in [n for n in os.environ if n.startswith(ISOLATED_PREFIXES)]:
        del os.environ[name]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a fresh, empty data directory."""
    return settings_in(tmp_path / "data")
