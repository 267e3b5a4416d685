"""Configuration: ``persona.yaml`` → env-var expansion → strict pydantic models.

Every error is raised as :class:`ConfigError` and names the file and the key.
"""

from __future__ import annotations

import getpass
import os
import re
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from base.paths import DataPaths
from base.pseudonym import PseudonymKeyError, check_key

DEFAULT_CONFIG = "persona.yaml"
PROJECT_FEATURE_REPO = Path(__file__).resolve().parent.parent / "feature_repo"
"""The project's feature definitions: used when a configuration names no ``feature_repo`` and has none beside it."""
PROJECT_SEGMENTS = PROJECT_FEATURE_REPO.parent / "segments.yaml"
"""The project's segment rules: used when a configuration has no rules (``segments``/``segments_file``)."""
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
    ambiguous: Literal["earliest", "latest", "quarantine"] = Field(
        "quarantine", description="a local time that occurs twice (DST ends): the first or second instant, or quarantine")
    nonexistent: Literal["shift_forward", "quarantine"] = Field(
        "shift_forward", description="a local time skipped when DST starts: the first valid instant after, or quarantine")


class ChannelConfig(Strict):
    """One export/channel: where its files are, how they look, how they map to canonical events.

    Without an ``event_id`` column the event id is a stable hash of the ``natural_key`` fields
    (all mapped fields when none are named): a transactions-only export needs no id column.
    """

    path: str = Field(..., description="glob relative to the data directory")
    format: Literal["csv", "jsonl", "parquet"]
    delimiter: str = Field(",", description="CSV delimiter; 'whitespace' for runs of blanks")
    columns: dict[str, str] = Field(..., description="canonical field -> source column")
    timestamp: TimestampSpec = TimestampSpec()
    currency: str | None = Field(None, description="currency of amounts when no currency column")
    event_type: str | None = Field(None, description="fixed event type when no event column")
    event_types: dict[str, str] = Field(default_factory=dict, description="source value -> canonical")
    natural_key: list[str] = Field(default_factory=list, description="canonical fields that together identify one event (the event id is built from them)")
    pii: dict[str, str] = Field(default_factory=dict, description="source column -> 'email'|'phone', hashed")
    key_on_line: bool = Field(False, description="without an event_id column: the event id also covers the "
                              "line's place in its file (content hash + row), so genuinely repeated lines are all "
                              "kept while the same file re-delivered under another name is still one delivery")
    optional_columns: list[str] = Field(default_factory=list, description="canonical fields whose source column "
                                        "a file may lack (read as empty), e.g. a log that leaves out empty fields")

    @field_validator("columns")
    @classmethod
    def _needs_time(cls, v: dict[str, str]) -> dict[str, str]:
        if "timestamp" not in v:
            raise ValueError("columns must map 'timestamp'")
        return v

    def required_fields(self) -> set[str]:
        """Canonical fields whose source column must be present in every file of the channel."""
        return {"timestamp", "event_id", "event_type", "amount", "user_id"} & set(self.columns) - set(self.optional_columns)

    @model_validator(mode="after")
    def _key_fields_mapped(self) -> "ChannelConfig":
        unmapped = [k for k in self.natural_key if k not in self.columns and k != "event_type"]
        if unmapped:
            raise ValueError(f"natural_key names fields not in columns: {unmapped}")
        if self.key_on_line and "event_id" in self.columns:
            raise ValueError("key_on_line is for channels without an event_id column")
        return self


class OutlierConfig(Strict):
    """Outlier rule on ``amount``: fixed caps per event type and/or a robust z-score per event type."""

    caps: dict[str, float] = Field(default_factory=dict, description="event type -> highest plausible amount")
    robust_z: float | None = Field(None, gt=0, description="flag |0.6745 (x - median) / MAD| above this")
    min_rows: int = Field(20, ge=3, description="rows of an event type in a batch needed for the z-score")
    action: Literal["flag", "quarantine"] = Field("flag", description="keep flagged rows (is_outlier) or quarantine them")


class ReaderLimits(Strict):
    """Bounds a file must keep to be read (a file or row that breaks one is quarantined with the bound named)."""

    max_line_bytes: int = Field(1 << 20, ge=1024, description="longest line (row); a longer one is quarantined "
                                "as a row before any parser sees it")
    max_field_bytes: int = Field(1 << 18, ge=64, description="longest value of one field; a row with a longer "
                                 "one is quarantined, the rest of the file is read")
    max_nesting: int = Field(32, ge=2, description="deepest JSON nesting of a line; a deeper line is quarantined "
                             "before the JSON parser sees it")
    max_decompressed_bytes: int = Field(1 << 30, ge=1 << 20, description="most bytes a compressed file may "
                                        "expand to; beyond it the file is quarantined whole")
    max_compression_ratio: float = Field(200.0, gt=1, description="most expansion of a compressed file "
                                         "(decompressed / compressed bytes); beyond it the file is quarantined whole")
    max_rows_per_file: int = Field(20_000_000, ge=1, description="most lines in one file; a longer file is "
                                   "quarantined whole (split it)")
    read_seconds: float = Field(120.0, gt=0, description="longest a reader may take on one file (it runs in a "
                                "worker process); beyond it the worker is killed and the file quarantined whole")
    read_memory_bytes: int = Field(8 << 30, ge=1 << 30, description="address space of the reader's worker process "
                                   "(RLIMIT_AS); a file that needs more is quarantined whole")


class TimestampBounds(Strict):
    """Plausible event times: no built-in era, bounds relative to the data (and to now for the future).

    A row is implausible when it is later than now + ``max_future_hours``, or older than the newest
    plausible event of its commit group minus ``max_span_days`` (an epoch in the wrong unit lands in
    1970 or far in the future), or older than ``earliest`` when set.
    """

    max_span_days: int = Field(3650, ge=1, description="events older than the group's newest plausible event "
                                                        "minus this many days are implausible")
    max_future_hours: float = Field(24.0, ge=0, description="events later than now plus this are implausible")
    earliest: date | None = Field(None, description="optional fixed floor (UTC day); none by default")


class ValidationConfig(Strict):
    """How the data-quality gate runs and what it keeps."""

    group_rows: int = Field(2_000_000, ge=1, description="files are validated, written and committed together "
                            "until they hold this many rows (one GX checkpoint and one file per day per group)")
    keep_runs: int = Field(20, ge=1, description="GX validation results (and their Data Docs pages) of this "
                           "many latest ingest runs are kept; older ones are pruned")
    limits: ReaderLimits = ReaderLimits()
    lock_wait_seconds: float = Field(300.0, ge=0, description="a writer (ingest, release, run, update, ...) "
                                     "waits this long for another writer's lock, then exits with code 75")
    timestamps: TimestampBounds = Field(default_factory=TimestampBounds,
                                          description="plausible event times, relative to the data")


class SampleConfig(Strict):
    """Sample data generator settings."""

    users: int = Field(5000, gt=0)
    days: int = Field(120, ge=30)
    seed: int = 7
    end_date: date = Field(date(2026, 11, 1), description="first day after the history")
    switch_share: float = Field(0.15, ge=0, le=1, description="share of users changing persona")
    mess_rate: float = Field(0.01, ge=0, le=0.2, description="rate of duplicates/malformed rows")
    generate: bool = Field(False, description="`persona run` writes the sample into an empty inbox (the demo "
                                              "configuration does; a configuration of real channels should not)")
    mode: Literal["personas", "btyd"] = Field(
        "personas", description="personas: purchases driven by hidden personas; btyd: purchases follow "
                                "BG/NBD and order values Gamma-Gamma (persona/sample_btyd.py)")


class FeatureConfig(Strict):
    """Feature computation settings."""

    categories: list[str] = Field(
        ["electronics", "fashion", "home", "beauty", "sports", "grocery"],
        description="category values with an affinity feature each and the category target's classes; "
                    "[] = the data has no categories (no affinity features, no category model)"
    )
    snapshot_every_days: int = Field(1, ge=1)


class TrainingConfig(Strict):
    """Label, split and LightGBM settings (the horizon serves daily, weekly or 90-day businesses alike)."""

    horizon_days: int = Field(30, ge=1, description="label window after each cutoff, in days")
    train_cutoffs: int = Field(6, ge=1, description="number of rolling-origin training cutoffs")
    cutoff_step_days: int = Field(7, ge=1)
    num_boost_round: int = Field(200, ge=10, description="most boosting rounds (early stopping may use fewer)")
    early_stopping_rounds: int = Field(20, ge=0, description="0 disables early stopping on the newest training cutoff")
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(31, ge=2)
    min_data_in_leaf: int = Field(20, ge=1)
    num_threads: int = Field(1, ge=1, description="LightGBM threads (1: OpenMP spin-waits hurt on shared cores)")
    fit_workers: int = Field(0, ge=0, description="models fitted (and evaluation rows predicted) at once, each "
                                                  "in a thread with num_threads LightGBM threads; 0 = one per "
                                                  "core. Any value gives the same models bit for bit")
    target_params: dict[str, dict[str, int | float]] = Field(
        default_factory=dict, description="LightGBM parameters for one target (a key of training/targets.py), "
                                          "over the ones above")
    targets: list[str] | None = Field(None, description="targets to train (keys of training/targets.py); "
                                                        "default: every target the data supports")
    refit_on_newest: bool = Field(True, description="after the evaluation, refit on every labelled cutoff "
                                                    "including the evaluation window and register that fit")
    cutoff_spread: Literal["recent", "whole_history"] = Field(
        "recent", description="recent: cutoffs every cutoff_step_days before the newest; whole_history: "
                              "the step grows so the training cutoffs span the whole history")
    stacking: bool = Field(False, description="BG/NBD + Gamma-Gamma predictions (fitted at each cutoff on "
                                              "data before it) as model features (training/stacking.py)")
    btyd_offset: bool = Field(False, description="with stacking: the spend and churn models boost from the "
                                                 "BG/NBD + Gamma-Gamma prediction (LightGBM init_score: log "
                                                 "expected spend, logit P(no purchase)); the trees learn "
                                                 "corrections to it (training/stacking.py)")
    calibrate: bool = Field(False, description="level calibration of amounts and Platt scaling of "
                                               "probabilities, fitted on the newest training cutoff "
                                               "(training/calibration.py)")
    search_seconds: float = Field(0.0, ge=0, description="time budget of the hyperparameter search per "
                                                         "target (Optuna); 0 = no search")
    sample_share: float = Field(1.0, gt=0, le=1, description="share of users (a stable hash of the id, the same "
                                                             "at every cutoff) whose rows at the training and refit "
                                                             "cutoffs are retrieved and fitted; the evaluation cutoff "
                                                             "keeps every user (on every engine, the Spark profile included)")

    @model_validator(mode="after")
    def _offset_with_stacking(self) -> "TrainingConfig":
        if self.btyd_offset and not self.stacking:
            raise ValueError("btyd_offset needs stacking: true (the offset is a stacked feature)")
        if self.btyd_offset and (self.calibrate or self.search_seconds):
            raise ValueError("btyd_offset is not combined with calibrate or search_seconds yet (their fits "
                             "would leave the offset out)")
        return self


class Condition(Strict):
    """One comparison in a segment rule."""

    field: str
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    value: float


class SegmentRule(Strict):
    """A named persona: assigned when all conditions hold (first matching rule wins)."""

    name: str = Field(..., min_length=1)
    description: str = ""
    all: list[Condition] = Field(default_factory=list)


def load_segment_file(path: Path) -> list[SegmentRule]:
    """Segment rules from a YAML file (``segments: [...]``); errors name the file, rule and key."""
    raw = read_yaml(path)
    unknown = set(raw) - {"segments"}
    if unknown or not isinstance(raw.get("segments"), list):
        raise ConfigError(f"{path}: expected a top-level 'segments:' list of rules"
                          + (f" (unknown keys: {', '.join(sorted(unknown))})" if unknown else ""))
    return segment_rules(raw["segments"], str(path))


def segment_rules(items: list[Any], where: str) -> list[SegmentRule]:
    """Validated segment rules from their plain form (a file's ``segments:`` list, a studio form); errors
    start with ``where`` and name the rule and key."""
    rules = []
    for i, item in enumerate(items):
        label = item.get("name", "?") if isinstance(item, dict) else "?"
        try:
            rules.append(SegmentRule.model_validate(item))
        except ValidationError as e:
            raise ConfigError(f"{where}: invalid segment rule segments[{i}] ({label}):\n{_format_validation(e)}") from e
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: segment names must be unique; repeated: {', '.join(dupes)}")
    if not rules or rules[-1].all:
        raise ConfigError(f"{where}: the last segment rule must be a catch-all (empty 'all:')")
    return rules


REQUEST_CEILING = 1000
"""The most user ids or events one request may carry whatever the configuration (the API schema's bound)."""
PROFILE_ENV = "PERSONA_PROFILE"
MODEL_SOURCE_ENV = "PERSONA_MODEL_SOURCE"
USER_ENV = "PERSONA_USER"
Profile = Literal["default", "production"]
ENGINE_ENV = "PERSONA_ENGINE"


def env_choice(name: str, allowed: tuple[str, ...]) -> Any:
    """An environment switch whose value must be one of ``allowed`` (the first when unset or empty)."""
    value = os.environ.get(name, "") or allowed[0]
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: expected {' or '.join(map(repr, allowed))}")
    return value


class ServingConfig(Strict):
    """Serving settings."""

    host: str = "127.0.0.1"
    port: int = Field(3000, ge=0, le=65535)
    top_drivers: int = Field(3, ge=1, le=20)
    top_categories: int = Field(3, ge=1)
    max_batch: int = Field(REQUEST_CEILING, ge=1, le=REQUEST_CEILING, description="most user ids one POST /persona may carry")
    max_events: int = Field(REQUEST_CEILING, ge=1, le=REQUEST_CEILING, description="most events one POST /events may carry")
    api_key_env: str = Field("PERSONA_API_KEY", description="environment variable that holds the API key")
    require_key_for_persona: bool = Field(False, description="POST /persona needs the API key too")
    event_log: str = Field("raw/api", description="folder (under data_dir) of the durable API event log; "
                                                  "the `api` channel ingests it")
    model_poll_seconds: float = Field(15.0, gt=0, description="how often the service checks the champion aliases")
    offline_push_seconds: float = Field(5.0, gt=0, description="real-time activity is pushed offline in batches this often")
    max_event_age_days: int = Field(366, ge=1, description="older events are rejected as implausible")
    max_future_seconds: int = Field(300, ge=0, description="events further in the future are rejected")
    max_amount: float = Field(1_000_000.0, gt=0, description="larger amounts are rejected as implausible")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="largest request body; larger ones get a 413 "
                                                                     "before they are read")
    max_property_bytes: int = Field(2048, ge=1, description="largest value of an event's properties (UTF-8 bytes)")
    max_property_depth: int = Field(1, ge=1, le=16, description="deepest nesting of an event's properties")
    dedup_retention_days: float = Field(7.0, gt=0, description="how long event ids are remembered online so a re-sent "
                                                               "event is not folded twice (the next snapshot is exact)")
    model_retry_seconds: float = Field(5.0, gt=0, description="first wait before a champion that failed to load is "
                                                              "tried again (doubling up to model_retry_max_seconds)")
    model_retry_max_seconds: float = Field(300.0, gt=0, description="longest wait between two load attempts")
    read_records: bool = Field(True, description="POST /persona answers from the stored records (score on write); "
                                                 "false scores every request (for comparison)")


class DriftConfig(Strict):
    """Drift: population stability index (PSI) of each feature and model output, champion's training
    snapshots (reference) vs the newest snapshot."""

    reference: Literal["training_end", "training_cutoffs"] = Field(
        "training_end", description="the snapshot at the end of the champion's training data, or its training cutoffs")
    bins: int = Field(10, ge=2, le=50, description="quantile bins of the reference (missing values get their own)")
    warn: float = Field(0.1, gt=0, description="PSI at or above this is a moderate shift (reported)")
    alert: float = Field(0.25, gt=0, description="PSI at or above this is drift")
    retrain_features: int = Field(1, ge=1, description="this many drifted features trigger a retrain")
    retrain_on_outputs: bool = Field(True, description="a drifted model output (spend, churn) triggers a retrain")
    ignore: list[str] = Field(default_factory=list, description="features not checked (e.g. ones that grow by design)")
    max_rows: int = Field(50_000, ge=100, description="rows sampled from each side")


class HistoryConfig(Strict):
    """When a re-scored persona counts as changed (and is appended to the persona history)."""

    tolerance: dict[str, float] = Field(
        default_factory=dict, description="target key -> how far its prediction must move to count as a change "
                                          "(over the target's default in training/targets.py)")


class UpdateConfig(Strict):
    """The update loop (`persona update` / `persona watch`)."""

    retrain_every_days: int = Field(7, ge=1, description="retrain when the newest data is this many days past the "
                                                         "champion's training data")
    drift_cooldown_days: int = Field(2, ge=0, description="after a retrain, drift triggers the next one only once "
                                                          "this many newer days arrived")
    drift: DriftConfig = DriftConfig()
    history: HistoryConfig = HistoryConfig()
    report_top_users: int = Field(20, ge=1, description="rows in the report's table of most-changed users")


class RetentionConfig(Strict):
    """How long each store keeps personal data, in days (``None``: kept until erased); applied by ``persona update``."""

    raw: int | None = Field(None, ge=1, description="inbox files (channel drops) already ingested, by modification time")
    event_log: int | None = Field(None, ge=1, description="files of the service's event log already ingested")
    quarantine: int | None = Field(None, ge=1, description="quarantine records, by the time their batch was processed")
    history: int | None = Field(None, ge=1, description="persona history rows, by their time (each user's latest row is kept)")


class PrivacyConfig(Strict):
    """Personal data: which event ``properties`` keys are personal, and retention."""

    personal_properties: dict[str, Literal["hash", "drop"]] = Field(
        default_factory=lambda: {"email": "hash", "phone": "hash", "name": "drop", "first_name": "drop",
                                 "last_name": "drop", "address": "drop", "ip": "drop"},
        description="properties key (any case) -> 'hash' (keyed pseudonym) or 'drop', applied at the door "
                    "(file channels and POST /events)")
    pseudonymised_ids: list[Literal["anonymous_id", "device_id", "session_id"]] = Field(
        default_factory=lambda: ["anonymous_id", "device_id", "session_id"],
        description="canonical identifier fields replaced by their keyed token (pii.<kind>.<hex>) at the door "
                    "(file channels and POST /events): consistent, so stitching and sessions work on tokens")
    retention_days: RetentionConfig = RetentionConfig()
    audit_caller_env: str = Field("PERSONA_USER", description="who an erasure is recorded as (else the login name)")


class SparkConfig(Strict):
    """The Spark profile (``PERSONA_ENGINE=spark``): where Spark runs and where it finds the data."""

    master: str = Field("local[2]", description="spark.master: local[N] on one machine, or a cluster's URL "
                                                "(spark://host:7077, yarn, k8s://...)")
    app_name: str = "persona"
    shuffle_partitions: int = Field(4, ge=1, description="spark.sql.shuffle.partitions (a few locally; "
                                                         "2-3 x the executor cores on a cluster)")
    driver_memory: str = Field("2g", description="spark.driver.memory")
    data_url: str = Field("", description="the data directory as Spark sees it (s3a://bucket/persona, "
                                          "hdfs://...); empty: the local data_dir")
    conf: dict[str, str] = Field(default_factory=dict, description="more Spark settings (executors, "
                                                                   "object-store credentials providers, ...)")
    log_level: str = Field("WARN", description="Spark's log level")

    @model_validator(mode="before")
    @classmethod
    def _no_training_sample(cls, data: object) -> object:
        """``spark.training_sample`` was the Spark profile's own copy of ``training.sample_share``."""
        if isinstance(data, dict) and "training_sample" in data:
            raise ValueError("spark.training_sample is no longer a setting: write the share as "
                             "training.sample_share (the same stable hash of the user id, on every engine)")
        return data


class StudioConfig(Strict):
    """The persona studio: how audience syncs deliver (the audiences themselves are made in the studio)."""

    sync_attempts: int = Field(3, ge=1, le=10, description="tries per delivery before it is logged as failed")
    sync_timeout_seconds: float = Field(5.0, gt=0, le=120, description="time allowed per webhook request")
    sync_backoff_seconds: float = Field(0.5, ge=0, le=60, description="wait before the first retry (doubles after)")


class Settings(Strict):
    """The whole ``persona.yaml``."""

    data_dir: Path
    base_currency: str = "EUR"
    fx_rates: dict[str, float] = Field(default_factory=lambda: {"EUR": 1.0})
    hash_salt: str = Field("persona", description="secret key of the keyed pseudonyms (HMAC-SHA256); "
                                                  "$PERSONA_HASH_SALT, required in production")
    sample: SampleConfig = SampleConfig()
    channels: dict[str, ChannelConfig]
    outliers: OutlierConfig = OutlierConfig()
    validation: ValidationConfig = ValidationConfig()
    features: FeatureConfig = FeatureConfig()
    training: TrainingConfig = TrainingConfig()
    segments: list[SegmentRule] = Field(default_factory=list, description="inline rules (or use segments_file)")
    segments_file: Path | None = Field(None, description="YAML file of segment rules business staff edit")
    smoothing_alpha: float = Field(0.5, gt=0, le=1)
    update: UpdateConfig = UpdateConfig()
    serving: ServingConfig = ServingConfig()
    feature_repo: Path = Path("feature_repo")
    mlflow_config: Path = Path("mlflow.yaml")
    config_path: Path | None = None
    mlflow: "MlflowSettings" = Field(default_factory=lambda: MlflowSettings(),
                                     description="mlflow.yaml as read (see the ``ml`` property for the URIs in use)")
    profile: Profile = Field("default", description="the stores in use: embedded default or production "
                                                    "($PERSONA_PROFILE when loaded from a file)")
    model_source: Literal["registry", "bento"] = Field(
        "registry", description="where the service takes its models: the registry's champions (followed live) or "
                                "the ones packaged in a bento ($PERSONA_MODEL_SOURCE, set by bentofile.yaml)")
    privacy: PrivacyConfig = PrivacyConfig()
    spark: SparkConfig = SparkConfig()
    engine: Literal["default", "spark"] = Field(
        "default", description="what builds features, retrieves training sets, materializes and batch-scores: "
                               "the embedded default or Spark ($PERSONA_ENGINE)")
    studio: StudioConfig = StudioConfig()

    @property
    def ml(self) -> "MlflowSettings":
        """The MLflow settings with their URIs resolved against this data directory and profile."""
        return self.mlflow.resolved(self.data_dir, self.profile)

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


def _expand_values(node: Any, extra: dict[str, str] | None, where: str, path: Path) -> Any:
    """Expand ``${VAR}`` in every string value (after parsing: values never change the YAML's shape)."""
    if isinstance(node, dict):
        return {k: _expand_values(v, extra, f"{where}.{k}" if where else str(k), path) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_values(v, extra, f"{where}[{i}]", path) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        try:
            return expand_env(node, extra)
        except KeyError as e:
            raise ConfigError(f"{path}: {where}: environment variable {e.args[0]} is not set and has no default") from e
    return node


def read_yaml(path: Path, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Read a YAML mapping, then expand environment variables in its string values; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read configuration: {e.strerror or e}") from e
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return _expand_values(raw, extra, "", path)


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

    segments_file = absolute(settings.segments_file) if settings.segments_file else None
    if segments_file is None and not settings.segments:  # none configured: the project's editable rules
        segments_file = base / "segments.yaml" if (base / "segments.yaml").is_file() else PROJECT_SEGMENTS
    segments = load_segment_file(segments_file) if segments_file else settings.segments
    mlflow_config = absolute(settings.mlflow_config)
    feature_repo = absolute(settings.feature_repo)
    if "feature_repo" not in raw and not feature_repo.is_dir():  # a user's own configuration elsewhere
        feature_repo = PROJECT_FEATURE_REPO
    profile = env_choice(PROFILE_ENV, ("default", "production"))
    try:
        check_key(settings.hash_salt, profile)
    except PseudonymKeyError as e:
        raise ConfigError(f"{cfg_path}: hash_salt: {e}") from e
    return settings.model_copy(
        update={
            "mlflow": load_mlflow_file(mlflow_config, required="mlflow_config" in raw),
            "profile": profile,
            "model_source": env_choice(MODEL_SOURCE_ENV, ("registry", "bento")),
            "engine": env_choice(ENGINE_ENV, ("default", "spark")),
            "segments": segments,
            "segments_file": segments_file,
            "data_dir": absolute(Path(settings.data_dir)),
            "feature_repo": feature_repo,
            "mlflow_config": mlflow_config,
            "config_path": cfg_path,
        }
    )


class GateConfig(Strict):
    """Promotion gate: when a challenger may replace the champion.

    Per-target entries (keys of ``training/targets.py``) override the target's own defaults.
    """

    primary_metric: dict[str, str] = Field(
        default_factory=dict, description="metric compared per target, over the target's default "
                                          "(its direction comes from the metric)")
    min_relative_improvement: float = Field(0.0, ge=0, description="challenger must improve the primary metric by this share")
    segment_tolerance: float = Field(0.05, ge=0, description="largest relative per-segment regression allowed")
    min_segment_rows: int = Field(30, ge=1, description="segments smaller than this are not judged")
    must_beat_baselines: bool = True
    baseline_metrics: dict[str, list[str]] = Field(
        default_factory=dict,
        description="reported metrics besides the primary one on which the model may not trail any baseline "
                    "by more than baseline_tolerance (with must_beat_baselines), over the target's default")
    baseline_tolerance: float = Field(0.02, ge=0, description="largest relative shortfall against a baseline "
                                      "allowed on a baseline_metrics metric (the primary metric must strictly win)")
    bootstrap_champion: bool = Field(
        True, description="the first version of a model becomes champion even if it misses its baselines "
                          "(the service needs one; the shortfall is recorded on the version)")


class MlflowSettings(Strict):
    """The whole ``mlflow.yaml`` with defaults resolved against the data directory."""

    tracking_uri: str = ""
    registry_uri: str = ""
    artifact_location: str = ""
    experiment: str = "persona"
    models: dict[str, str] = Field(
        default_factory=dict, description="registered model name per target (default persona-<target>)")
    production_tracking_uri: str = Field("postgresql+psycopg://postgres@127.0.0.1:5432/test",
                                         description="tracking/registry store when PERSONA_PROFILE=production")
    decided_by: str = Field(default_factory=lambda: os.environ.get(USER_ENV) or getpass.getuser(),
                            description="who lifecycle decisions are recorded as ($PERSONA_USER, else the login name)")
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    gate: GateConfig = GateConfig()

    @field_validator("tracking_uri", "registry_uri", "artifact_location", mode="before")
    @classmethod
    def _none_to_empty(cls, v: Any) -> Any:
        return "" if v is None else v

    def model_name(self, target: str) -> str:
        """The registered model name of a target."""
        return self.models.get(target, f"persona-{target}")

    def resolved(self, data_dir: Path, profile: "Profile") -> "MlflowSettings":
        """Empty URIs become the embedded SQLite store under ``data_dir`` (PostgreSQL in production)."""
        paths = DataPaths(data_dir)
        default = self.production_tracking_uri if profile == "production" else f"sqlite:///{paths.mlflow_db}"
        tracking = self.tracking_uri or default
        return self.model_copy(update={
            "tracking_uri": tracking,
            "registry_uri": self.registry_uri or tracking,
            "artifact_location": self.artifact_location or paths.mlflow_artifacts.as_uri(),
        })


def load_mlflow_file(path: Path, required: bool = True) -> MlflowSettings:
    """``mlflow.yaml`` as written (URIs unresolved); errors name the file and the key. When the file is
    not ``required`` (persona.yaml does not name one) and absent, the defaults apply."""
    raw = read_yaml(path) if required or path.exists() else {}
    try:
        return MlflowSettings(**raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: invalid configuration:\n{_format_validation(e)}") from e


Settings.model_rebuild()
