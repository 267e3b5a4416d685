"""The Spark session of the Spark profile (``PERSONA_ENGINE=spark``): one per process, configured once.

Local mode by default (``spark.master: local[2]``, UI off, few shuffle partitions) so the profile runs
and is tested on one machine; ``persona.yaml``'s ``spark:`` section points it at a cluster. Timestamps
are UTC and written as microseconds (Spark cannot read nanosecond Parquet timestamps), and the Python
workers run this project's interpreter (``spark.engine`` materialization and pandas UDFs unpickle
project code there).
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING

from base.config import ConfigError, SparkConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

BASE_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.parser.quotedRegexColumnNames": "true",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
}
"""Settings every Persona Spark session has (``spark.conf`` in persona.yaml adds to or overrides them)."""


def session_conf(cfg: SparkConfig) -> dict[str, str]:
    """The full Spark configuration for ``cfg``."""
    conf = dict(BASE_CONF)
    conf.update({
        "spark.master": cfg.master,
        "spark.app.name": cfg.app_name,
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.default.parallelism": str(cfg.shuffle_partitions),
        "spark.driver.memory": cfg.driver_memory,
    })
    conf.update(cfg.conf)
    return conf


def check_java() -> None:
    """Refuse with a clear message when no Java runtime is on the PATH (Spark needs Java 17)."""
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise ConfigError("the Spark profile needs a Java 17 runtime: install it with `make spark-deps` "
                          "(Debian package openjdk-17-jre-headless) or set JAVA_HOME")


def spark_session(cfg: SparkConfig) -> "SparkSession":
    """The process's Spark session (created on first use with :func:`session_conf`, reused after)."""
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    check_java()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    conf = SparkConf().setAll(list(session_conf(cfg).items()))
    spark = SparkSession.builder.config(conf=conf).getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    return spark


def stop_spark() -> None:
    """Stop the process's Spark session, if one runs (the JVM goes with it)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
