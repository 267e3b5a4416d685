"""The Spark profile in local mode: one Spark session for the whole test session, one built sample."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from base.config import Settings, SparkConfig
from persona.pipeline import build_features, ingest_inbox
from persona.sample_data import generate_sample_data
from tests.conftest import settings_in

LOCAL = SparkConfig(master="local[2]", shuffle_partitions=2, driver_memory="1g", log_level="ERROR",
                    conf={"spark.sql.adaptive.enabled": "false"})
"""Small data: two shuffle partitions, no adaptive re-planning between stages."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder carries the ``spark`` marker (``pytest -m spark`` runs them)."""
    for item in items:
        if "tests/spark/" in str(item.fspath):
            item.add_marker(pytest.mark.spark)


@pytest.fixture(scope="session")
def spark_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A sample history ingested and featurized by the default builder (the reference)."""
    s = settings_in(tmp_path_factory.mktemp("spark") / "data", users=120, days=60)
    s = s.model_copy(update={"spark": LOCAL, "engine": "spark"})
    generate_sample_data(s)
    ingest_inbox(s)
    build_features(s.model_copy(update={"engine": "default"}))
    return s


@pytest.fixture(scope="session")
def spark(spark_settings: Settings) -> Iterator[object]:
    """The test session's Spark session (stopped at the end)."""
    from features.spark_session import spark_session, stop_spark

    session = spark_session(spark_settings.spark)
    yield session
    stop_spark()
