"""Configuration: env expansion, strict validation, errors that name the file and key."""

from pathlib import Path

import pytest

from base.config import ConfigError, expand_env, load_settings
from tests.conftest import PROJECT


def test_default_config_loads_with_paths_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSONA_DATA_DIR", raising=False)
    s = load_settings(PROJECT / "persona.yaml")
    assert s.data_dir == PROJECT / "data"
    assert s.feature_repo == PROJECT / "feature_repo"
    assert {"web", "app", "orders", "social", "crm"} <= set(s.channels)
    assert s.segments[-1].all == []  # a catch-all rule ends the list


def test_env_var_overrides_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path))
    assert load_settings(PROJECT / "persona.yaml").data_dir == tmp_path
    ml = (load_settings(PROJECT / "persona.yaml")).ml
    assert ml.tracking_uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"


def test_expand_env_default_and_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_X", raising=False)
    assert expand_env("a ${NOPE_X:-b} c") == "a b c"
    with pytest.raises(KeyError):
        expand_env("${NOPE_X}")


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "persona.yaml"
    p.write_text(text)
    return p


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    base = (PROJECT / "persona.yaml").read_text()
    p = _write(tmp_path, base.replace("smoothing_alpha: 0.5", "smoothing_alpha: 0.5\nsmothing: 1"))
    with pytest.raises(ConfigError) as e:
        load_settings(p)
    assert str(p) in str(e.value) and "smothing" in str(e.value)


def test_bad_value_names_nested_key(tmp_path: Path) -> None:
    base = (PROJECT / "persona.yaml").read_text()
    p = _write(tmp_path, base.replace("horizon_days: 30", "horizon_days: -3"))
    with pytest.raises(ConfigError, match=r"training\.horizon_days"):
        load_settings(p)


def test_unset_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSONA_UNSET_VAR", raising=False)
    p = _write(tmp_path, "data_dir: ${PERSONA_UNSET_VAR}\nchannels: {}\n")
    with pytest.raises(ConfigError, match="PERSONA_UNSET_VAR"):
        load_settings(p)


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_settings(_write(tmp_path, "data_dir: [unclosed\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")


def test_env_values_never_change_the_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONA_HASH_SALT", "abc #def: [x")
    monkeypatch.setenv("PERSONA_DATA_DIR", str(tmp_path))
    s = load_settings(PROJECT / "persona.yaml")
    assert s.hash_salt == "abc #def: [x"


def test_unset_variable_error_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSONA_UNSET_VAR", raising=False)
    p = _write(tmp_path, "data_dir: x\nserving:\n  host: ${PERSONA_UNSET_VAR}\nchannels: {}\n# ${ALSO_UNSET} in a comment\n")
    with pytest.raises(ConfigError, match=r"serving\.host: environment variable PERSONA_UNSET_VAR"):
        load_settings(p)
