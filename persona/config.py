"""Configuration: ``persona.yaml`` → env-var expansion → strict pydantic models.

Every error is raised as :class:`ConfigError` and names the file and the key.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_CONFIG = "persona.yaml"
CONFIG_ENV = "PERSONA_CONFIG"
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or invalid; the message names file and key."""


class Strict(BaseModel):
    """Base model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TimestampSpec(Strict):
    """How a channel writes its timestamps."""

    unit: Literal["iso8601", "s", "ms", "us", "format"] = "iso8601"
    format: str | None = Field(None, description="strftime format when unit is 'format'")
    timezone: str = Field("UTC", description="zone for timestamps that carry no offset")


class ChannelConfig(Strict):
    """One export/channel: where its files are, how they look, how they map to canonical events."""

    path: str = Field(..., description="glob relative to the data directory")
    format: Literal["csv", "jsonl", "parquet"]
    delimiter: str = Field(",", description="CSV delimiter; 'whitespace' for runs of blanks")
    columns: dict[str, str] = Field(..., description="canonical field -> source column")
    timestamp: TimestampSpec = TimestampSpec()
    currency: str | None = Field(None, description="currency of amounts when no currency column")
    event_type: str | None = Field(None, description="fixed event type when no event column")
    event_types: dict[str, str] = Field(default_factory=dict, description="source value -> canonical")
    natural_key: list[str] = Field(default_factory=list, description="canonical fields that together identify one event (the event id is built from them)")
    identify_event: str | None = Field(None, description="canonical event type that links an anonymous id to a user")
    pii: dict[str, str] = Field(default_factory=dict, description="source column -> 'email'|'phone', hashed")

    @field_validator("columns")
    @classmethod
    def _needs_time(cls, v: dict[str, str]) -> dict[str, str]:
        if "timestamp" not in v:
            raise ValueError("columns must map 'timestamp'")
        return v


class SampleConfig(Strict):
    """Sample data generator settings."""

    users: int = Field(5000, gt=0)
    days: int = Field(120, ge=30)
    seed: int = 7
    end_date: date = Field(date(2026, 11, 1), description="first day after the history")
    switch_share: float = Field(0.15, ge=0, le=1, description="share of users changing persona")
    mess_rate: float = Field(0.01, ge=0, le=0.2, description="rate of duplicates/malformed rows")


class FeatureConfig(Strict):
    """Feature computation settings."""

    categories: list[str] = Field(
        ["electronics", "fashion", "home", "beauty", "sports", "grocery"], min_length=1
    )
    snapshot_every_days: int = Field(1, ge=1)
    ttl_days: int = Field(3650, ge=1)


class TrainingConfig(Strict):
    """Label and split settings."""

    horizon_days: int = Field(30, ge=1)
    train_cutoffs: int = Field(6, ge=1, description="number of rolling-origin training cutoffs")
    cutoff_step_days: int = Field(7, ge=1)
    num_boost_round: int = Field(200, ge=10)
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(31, ge=2)


class Condition(Strict):
    """One comparison in a segment rule."""

    field: str
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    value: float


class SegmentRule(Strict):
    """A named persona: assigned when all conditions hold (first matching rule wins)."""

    name: str
    description: str = ""
    all: list[Condition] = Field(default_factory=list)


PROFILE_ENV = "PERSONA_PROFILE"
Profile = Literal["default", "production"]


def active_profile() -> Profile:
    """The profile chosen by ``$PERSONA_PROFILE`` (``default`` when unset)."""
    value = os.environ.get(PROFILE_ENV, "default") or "default"
    if value not in ("default", "production"):
        raise ConfigError(f"{PROFILE_ENV}={value!r}: expected 'default' or 'production'")
    return value  # type: ignore[return-value]


class ServingConfig(Strict):
    """Serving settings."""

    host: str = "127.0.0.1"
    port: int = Field(3000, ge=0, le=65535)
    top_drivers: int = Field(3, ge=1, le=20)
    top_categories: int = Field(3, ge=1)
    max_batch: int = Field(1000, ge=1)


class Settings(Strict):
    """The whole ``persona.yaml``."""

    data_dir: Path
    base_currency: str = "EUR"
    fx_rates: dict[str, float] = Field(default_factory=lambda: {"EUR": 1.0})
    hash_salt: str = "persona"
    sample: SampleConfig = SampleConfig()
    channels: dict[str, ChannelConfig]
    features: FeatureConfig = FeatureConfig()
    training: TrainingConfig = TrainingConfig()
    segments: list[SegmentRule] = Field(default_factory=list)
    smoothing_alpha: float = Field(0.5, gt=0, le=1)
    serving: ServingConfig = ServingConfig()
    feature_repo: Path = Path("feature_repo")
    mlflow_config: Path = Path("mlflow.yaml")
    config_path: Path | None = None

    @model_validator(mode="after")
    def _currency_known(self) -> "Settings":
        if self.base_currency not in self.fx_rates:
            raise ValueError(f"fx_rates has no rate for base_currency {self.base_currency!r}")
        for name, ch in self.channels.items():
            if ch.currency and ch.currency not in self.fx_rates:
                raise ValueError(f"channels.{name}.currency {ch.currency!r} has no entry in fx_rates")
        return self


def expand_env(text: str, extra: dict[str, str] | None = None) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` from ``extra`` then the environment.

    An unset variable without a default raises ``KeyError``.
    """

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = (extra or {}).get(name, os.environ.get(name))
        if value is None or value == "":
            if default is None:
                raise KeyError(name)
            return default
        return value

    return _ENV_PATTERN.sub(repl, text)


def _format_validation(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {loc}: {e['msg']}")
    return "\n".join(lines)


def read_yaml(path: Path, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Read a YAML mapping with env-var expansion; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read configuration: {e.strerror or e}") from e
    try:
        text = expand_env(text, extra)
    except KeyError as e:
        raise ConfigError(f"{path}: environment variable {e.args[0]} is not set and has no default") from e
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def resolve_config_path(path: str | Path | None = None) -> Path:
    """The config file to use: argument, then ``$PERSONA_CONFIG``, then ``./persona.yaml``."""
    chosen = path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    return Path(chosen).expanduser().resolve()


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load and validate ``persona.yaml``; relative paths are resolved against its folder."""
    cfg_path = resolve_config_path(path)
    raw = read_yaml(cfg_path)
    raw.update(overrides)
    try:
        settings = Settings(**raw)
    except ValidationError as e:
        raise ConfigError(f"{cfg_path}: invalid configuration:\n{_format_validation(e)}") from e
    base = cfg_path.parent

    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    return settings.model_copy(
        update={
            "data_dir": absolute(Path(settings.data_dir)),
            "feature_repo": absolute(settings.feature_repo),
            "mlflow_config": absolute(settings.mlflow_config),
            "config_path": cfg_path,
        }
    )


class MlflowSettings(Strict):
    """The whole ``mlflow.yaml`` with defaults resolved against the data directory."""

    tracking_uri: str = ""
    registry_uri: str = ""
    artifact_location: str = ""
    experiment: str = "persona"
    models: dict[Literal["spend", "churn"], str] = Field(
        default_factory=lambda: {"spend": "persona-spend", "churn": "persona-churn"}
    )
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"

    @field_validator("tracking_uri", "registry_uri", "artifact_location", mode="before")
    @classmethod
    def _none_to_empty(cls, v: Any) -> Any:
        return "" if v is None else v


def load_mlflow_settings(settings: Settings) -> MlflowSettings:
    """Load ``mlflow.yaml`` named by ``settings``; empty URIs become the embedded SQLite default."""
    path = settings.mlflow_config
    raw = read_yaml(path)
    try:
        ml = MlflowSettings(**raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: invalid configuration:\n{_format_validation(e)}") from e
    root = settings.data_dir / "mlflow"
    tracking = ml.tracking_uri or f"sqlite:///{root / 'mlflow.db'}"
    artifacts = ml.artifact_location or (root / "artifacts").as_uri()
    return ml.model_copy(
        update={
            "tracking_uri": tracking,
            "registry_uri": ml.registry_uri or tracking,
            "artifact_location": artifacts,
        }
    )
