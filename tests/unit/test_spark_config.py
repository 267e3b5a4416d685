"""The Spark profile's settings: the training sample is ``training.sample_share`` on every engine; a
persona.yaml that still has the Spark profile's old copy of it is refused with an error naming both."""

from pathlib import Path

import pytest

from base.config import ConfigError, load_settings
from tests.conftest import PROJECT


def test_the_old_spark_training_sample_key_is_named(tmp_path: Path) -> None:
    p = tmp_path / "persona.yaml"
    for name in ("segments.yaml", "mlflow.yaml"):  # what persona.yaml names beside itself
        (tmp_path / name).write_text((PROJECT / name).read_text())
    p.write_text((PROJECT / "persona.yaml").read_text() + "\nspark:\n  master: local[2]\n  training_sample: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_settings(p)
    assert str(p) in str(e.value) and "spark.training_sample" in str(e.value)
    assert "training.sample_share" in str(e.value)
    p.write_text((PROJECT / "persona.yaml").read_text() + "\nspark:\n  master: local[2]\n")
    assert load_settings(p).spark.master == "local[2]" and not hasattr(load_settings(p).spark, "training_sample")
