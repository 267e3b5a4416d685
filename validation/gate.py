"""The data-quality gate: Great Expectations checkpoints decide every row and every batch.

Three suites, each run by its own checkpoint, once per commit group of files (not once per file: a
checkpoint run has a fixed cost of tens of milliseconds, and GX hashes every frame it is given):

- ``persona_canonical_rows``: row-level expectations on the canonical events of the group. A failing
  row is quarantined with the failed expectation (found through GX's ``unexpected_index_list`` on a
  clean ``RangeIndex``); the others go on. GX sees a narrow, typed projection (the checked columns,
  low-cardinality text as categoricals), never the wide frame of Python strings.
- ``persona_canonical_batches``: the batch-level expectations (column set, not empty, unique event ids,
  a plausible purchase median) as a profile table with one row per batch (:mod:`validation.profiles`);
  a failing row quarantines that batch whole, so nothing of it reaches the feature store.
- ``persona_raw_files``: the raw shape of each file, one row per file (:mod:`validation.raw_suite`).

Five row checks that the canonical mapping already guarantees (event id, type, channel and timestamp
present; a known event type) are enforced by a vectorised pre-screen under the same expectation names
instead of by GX (:data:`PRESCREENED`); they only ever fire for frames built by hand.

Great Expectations is imported lazily (it takes seconds), only when a session is created.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from base.schema import EVENT_TYPES, MONETARY_EVENTS
from base.config import ChannelConfig, TimestampBounds
from validation.profiles import BATCH_CHECKS, MAX_AMOUNT, ProfileCheck, batch_profile, profile_expectations, profile_frame
from validation.quarantine import QUARANTINE_COLUMNS, quarantine_frame

if TYPE_CHECKING:
    from great_expectations.checkpoint import Checkpoint
    from great_expectations.checkpoint.checkpoint import CheckpointResult
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.datasource.fluent import PandasDatasource
    from great_expectations.expectations import Expectation

DATASOURCE = "persona_events"
BATCH_DEFINITION = "whole_batch"
ROWS_SUITE = "persona_canonical_rows"
BATCHES_SUITE = "persona_canonical_batches"
RAW_SUITE = "persona_raw_files"

MAX_QUANTITY = 1_000.0

ROW, BATCH = "row", "batch"

NOT_NULL, IN_SET, BETWEEN = ("expect_column_values_to_not_be_null", "expect_column_values_to_be_in_set",
                             "expect_column_values_to_be_between")
ROW_ORDER: tuple[tuple[str, str], ...] = (
    *((NOT_NULL, c) for c in ("event_id", "user_id", "event_type", "channel", "timestamp")),
    (IN_SET, "event_type"), (BETWEEN, "timestamp"), (BETWEEN, "amount"), (NOT_NULL, "amount"),
    (IN_SET, "currency"), (BETWEEN, "quantity"),
)
"""Every row-level check in the order reasons list them (pre-screened and GX checks alike)."""
PRESCREENED: tuple[tuple[str, str], ...] = (
    *((NOT_NULL, c) for c in ("event_id", "event_type", "channel", "timestamp")), (IN_SET, "event_type"),
)
"""Row checks enforced by the vectorised pre-screen (the canonical mapping rejects such rows earlier)."""
GX_COLUMNS: tuple[str, ...] = ("user_id", "event_type", "timestamp", "amount", "currency", "quantity")
"""The columns the GX row suite reads (its frame holds only these)."""
CATEGORICAL = ("event_type", "currency")


@dataclass(frozen=True)
class GateResult:
    """Outcome of the gate for one batch."""

    accepted: pd.DataFrame
    quarantined: pd.DataFrame
    batch_failed: bool
    success: bool
    failures: list[str]
    statistics: dict


@dataclass(frozen=True)
class Bounds:
    """The bounds a ``between`` check applied, each with the text a quarantine reason quotes."""

    low: Any
    high: Any
    low_text: str
    high_text: str

    def broken(self, values: pd.Series) -> pd.Series:
        """Per value, which bound it broke (as text; the upper one unless it lies below the lower)."""
        below = (values < self.low).to_numpy(dtype=bool)
        return pd.Series(np.where(below, f"below the minimum {self.low_text}", f"above the maximum {self.high_text}"),
                         index=values.index, dtype=object)


def timestamp_bounds(timestamps: pd.Series, cfg: TimestampBounds, now: pd.Timestamp,
                     stored: pd.Timestamp | None = None) -> Bounds:
    """Plausible event times for one group of events, relative to the data: at most now + the future
    tolerance, at least the newest plausible event (of the group, or ``stored`` in the clean store when
    newer) minus ``max_span_days`` (and ``earliest`` when configured). No era is built in: a 1997 export
    passes, a 1970 epoch mix-up does not."""
    high = now + pd.Timedelta(hours=cfg.max_future_hours)
    ts = pd.to_datetime(timestamps, utc=True)
    plausible = ts.loc[ts <= high]
    newest = plausible.max() if len(plausible) else None
    if stored is not None and stored <= high and (newest is None or stored > newest):
        newest = stored
    newest = high if newest is None or pd.isna(newest) else newest
    low = newest - pd.Timedelta(days=cfg.max_span_days)
    low_text = (f"{low:%Y-%m-%d %H:%M:%S}Z (the newest event {newest:%Y-%m-%d %H:%M:%S}Z minus "
                f"validation.timestamps.max_span_days={cfg.max_span_days})")
    if cfg.earliest is not None and pd.Timestamp(cfg.earliest, tz="UTC") > low:
        low = pd.Timestamp(cfg.earliest, tz="UTC")
        low_text = f"{low:%Y-%m-%d}Z (validation.timestamps.earliest)"
    high_text = (f"{high:%Y-%m-%d %H:%M:%S}Z (now plus validation.timestamps.max_future_hours="
                 f"{cfg.max_future_hours:g})")
    return Bounds(low, high, low_text, high_text)


def value_bounds(base_currency: str) -> dict[tuple[str, str], Bounds]:
    """The fixed ``between`` bounds of the row suite (amount in the base currency, quantity)."""
    return {
        (BETWEEN, "amount"): Bounds(0.0, MAX_AMOUNT, "0", f"{MAX_AMOUNT:g} {base_currency}"),
        (BETWEEN, "quantity"): Bounds(0.0, MAX_QUANTITY, "0", f"{MAX_QUANTITY:g}"),
    }


@dataclass(frozen=True)
class Failure:
    """One failed expectation, parsed from a GX validation result."""

    expectation: str
    column: str
    level: str
    rows: np.ndarray  # positions in the validated frame (row level only)
    count: int
    detail: str
    condition: str = ""
    bounds: Bounds | None = None
    """For a ``between`` check: the bounds it applied (quarantine reasons name the one a row broke)."""

    @property
    def label(self) -> str:
        """``expectation(column)`` or ``expectation(column where condition)``: the name people see."""
        where = f" where {self.condition}" if self.condition else ""
        return f"{self.expectation}({self.column}{where})" if self.column or where else self.expectation

    def describe(self) -> str:
        """Human-readable one-liner, e.g. ``expect_...(event_type): 3 rows``."""
        if self.level == ROW:
            return f"{self.label}: {self.count} rows"
        return f"{self.label}: {self.detail}"


# --------------------------------------------------------------------------- expectations


def _row_expectations() -> list[Expectation]:
    """Row-level expectations GX evaluates: a failing row is quarantined, the others go on."""
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    e = gx.expectations
    row = {"level": ROW}
    return [
        e.ExpectColumnValuesToNotBeNull(column="user_id", meta=row),
        e.ExpectColumnValuesToBeBetween(
            column="timestamp",
            min_value={"$PARAMETER": "min_timestamp"},
            max_value={"$PARAMETER": "max_timestamp"},
            meta=row,
        ),
        e.ExpectColumnValuesToBeBetween(column="amount", min_value=0.0, max_value=MAX_AMOUNT, meta=row),
        e.ExpectColumnValuesToNotBeNull(
            column="amount", row_condition=Column("event_type").is_in(list(MONETARY_EVENTS)),
            meta={**row, "note": "purchase/refund rows must carry an amount"},
        ),
        e.ExpectColumnValuesToBeInSet(column="currency", value_set={"$PARAMETER": "currencies"}, meta=row),
        e.ExpectColumnValuesToBeBetween(column="quantity", min_value=0.0, max_value=MAX_QUANTITY, meta=row),
    ]


def _prescreen(events: pd.DataFrame) -> list[Failure]:
    """The :data:`PRESCREENED` checks, vectorised (named as the GX expectations they stand for)."""
    out = []
    for expectation, column in PRESCREENED:
        if column not in events:
            continue
        values = events[column]
        if expectation == NOT_NULL:
            bad = values.isna().to_numpy()
        else:
            bad = (values.notna() & ~values.isin(EVENT_TYPES)).to_numpy()
        rows = np.flatnonzero(bad)
        if len(rows):
            out.append(Failure(expectation=expectation, column=column, level=ROW, rows=rows, count=len(rows),
                                detail=""))
    return out


def _gx_rows_frame(events: pd.DataFrame) -> pd.DataFrame:
    """The narrow frame the GX row suite validates: checked columns only, on a clean ``RangeIndex``."""
    frame = _positional(events.loc[:, list(GX_COLUMNS)])
    return frame.assign(**{c: frame[c].astype("category") for c in CATEGORICAL})


def _result_format() -> dict[str, Any]:
    """Checkpoint result format: COMPLETE, because only it returns *every* failing row index.

    SUMMARY/BASIC cap ``unexpected_index_list`` at ``partial_unexpected_count`` (20). The
    unexpected-index *query* is switched off: for pandas it is a ``df.filter(items=[...])``
    string listing every index again.
    """
    return {"result_format": "COMPLETE", "return_unexpected_index_query": False, "partial_unexpected_count": 20}


def _expectation_parameters(base_currency: str, times: Bounds | None) -> dict[str, Any]:
    """Values for the ``$PARAMETER`` placeholders of the suites (``times``: the timestamp bounds)."""
    parameters: dict[str, Any] = {"currencies": [base_currency]}
    if times is not None:
        parameters.update(min_timestamp=times.low, max_timestamp=times.high)
    return parameters


# --------------------------------------------------------------------------- GX objects


def _context(context_root: Path | None) -> AbstractDataContext:
    """A file-backed context under ``context_root`` or an in-memory one; no analytics, no progress bars."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    if context_root is None:
        config = DataContextConfig(
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        )
        return gx.get_context(mode="ephemeral", project_config=config)
    context_root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", context_root_dir=context_root)  # GX project lives right here
    _drop_empty_config_variables(context_root)
    variables = context.variables
    if variables.analytics_enabled is not False or not _progress_bars_off(variables.progress_bars):
        variables.analytics_enabled = False
        variables.progress_bars = ProgressBarsConfig(globally=False)
        variables.save()
    return context


def _drop_empty_config_variables(context_root: Path) -> None:
    """Remove GX's comment-only ``config_variables.yml`` template: GX re-reads and re-parses that file on
    every access to a context variable (hundreds per checkpoint run); without it the lookup is free."""
    path = context_root / "uncommitted" / "config_variables.yml"
    if path.is_file() and all(not line.strip() or line.lstrip().startswith("#")
                              for line in path.read_text(encoding="utf-8").splitlines()):
        path.unlink()


def _progress_bars_off(config: Any) -> bool:
    """Whether a context's ``progress_bars`` setting disables them."""
    if config is None:
        return False
    globally = config.get("globally") if isinstance(config, dict) else getattr(config, "globally", True)
    return globally is False


def _batch_definition(context: AbstractDataContext, asset_name: str) -> BatchDefinition:
    """Get or create datasource → dataframe asset → whole-dataframe batch definition."""
    try:
        datasource = cast("PandasDatasource", context.data_sources.get(DATASOURCE))
    except KeyError:
        datasource = context.data_sources.add_pandas(DATASOURCE)
    if asset_name in datasource.get_asset_names():
        asset = datasource.get_asset(asset_name)
    else:
        asset = datasource.add_dataframe_asset(asset_name)
    try:
        return asset.get_batch_definition(BATCH_DEFINITION)
    except KeyError:
        return asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)


def _suite_checkpoint(
    context: AbstractDataContext, *, name: str, expectations: list[Expectation], asset_name: str,
    result_format: dict[str, Any],
) -> Checkpoint:
    """Add or update one suite, its validation definition and a checkpoint of the same name."""
    import great_expectations as gx

    suite = context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=expectations))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=_batch_definition(context, asset_name), suite=suite)
    )
    checkpoint = gx.Checkpoint(name=name, validation_definitions=[definition], actions=[], result_format=result_format)
    return context.checkpoints.add_or_update(checkpoint)


# --------------------------------------------------------------------------- results


def _parse_failures(result: CheckpointResult, n_rows: int) -> tuple[list[Failure], dict]:
    """Failed expectations of a checkpoint run, plus summed statistics over its validations."""
    failures: list[Failure] = []
    stats: dict[str, float | None] = {}
    for validation in result.run_results.values():
        for key, value in validation.statistics.items():
            if key != "success_percent":
                stats[key] = (stats.get(key) or 0) + (value or 0)
        failures.extend(_failure(r, n_rows) for r in validation.results if not r.success)
    failures.sort(key=lambda f: f.level != BATCH)  # batch-level first, stable otherwise
    evaluated = stats.get("evaluated_expectations") or 0
    successful = stats.get("successful_expectations") or 0
    stats["success_percent"] = 100.0 * successful / evaluated if evaluated else None
    return failures, stats


def _failure(er: Any, n_rows: int) -> Failure:
    """Turn one failed ``ExpectationValidationResult`` into a :class:`Failure`.

    A row-level expectation that raised, or whose index list does not match its count, is
    treated as a batch failure (fail safe: the gate cannot tell which rows are bad).
    """
    config = er.expectation_config
    column = str(config.kwargs.get("column") or "")
    condition = _condition_text(config.kwargs.get("row_condition"))
    level = (config.meta or {}).get("level", BATCH)
    result = er.result or {}
    named = {"expectation": config.type, "column": column, "condition": condition}
    empty = np.empty(0, dtype=np.int64)
    error = _exception_message(er.exception_info or {})
    if error is not None:
        return Failure(**named, level=BATCH, rows=empty, count=0, detail=f"error: {error}")
    if level == ROW:
        rows = np.asarray(result.get("unexpected_index_list") or [], dtype=np.int64)
        count = int(result.get("unexpected_count") or 0)
        if len(rows) == count and count > 0 and rows.min() >= 0 and rows.max() < n_rows:
            return Failure(**named, level=ROW, rows=rows, count=count, detail="")
        detail = f"{count} unexpected rows but {len(rows)} row indexes returned"
        return Failure(**named, level=BATCH, rows=empty, count=count, detail=detail)
    return Failure(**named, level=BATCH, rows=empty, count=0, detail=_observed(result))


def _condition_text(row_condition: Any) -> str:
    """Readable form of an expectation's ``row_condition`` (stored as a dict in results)."""
    if not row_condition:
        return ""
    from great_expectations.expectations.row_conditions import deserialize_row_condition

    try:
        return repr(deserialize_row_condition(row_condition)) if isinstance(row_condition, dict) else str(row_condition)
    except (TypeError, ValueError):
        return str(row_condition)


def _exception_message(info: dict) -> str | None:
    """First line of the error GX caught, if any.

    ``exception_info`` is either flat (``raised_exception``, ``exception_message``) or, when a
    metric failed, keyed by metric id with one such dict per metric.
    """
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for entry in entries:
        if entry.get("raised_exception"):
            lines = str(entry.get("exception_message") or "unknown error").splitlines()
            return lines[0] if lines else "unknown error"
    return None


def _observed(result: dict) -> str:
    """What a failed non-row expectation saw."""
    if "unexpected_count" in result:
        return f"{result['unexpected_count']} rows"
    observed = result.get("observed_value")
    return f"observed {observed.item() if isinstance(observed, np.generic) else observed!r}"


def _append(target: pd.Series, rows: np.ndarray, text: pd.Series | str, sep: str) -> None:
    """Append ``text`` to ``target`` at positions ``rows``, separated from earlier text by ``sep``."""
    current = target.iloc[rows]
    joiner = pd.Series(np.where(current.to_numpy() != "", sep, ""), index=current.index, dtype=object)
    target.iloc[rows] = current + joiner + text


def failed_rows(n_rows: int, failures: list[Failure]) -> np.ndarray:
    """Boolean mask of the rows (positions 0..n-1) that failed a row-level check."""
    bad = np.zeros(n_rows, dtype=bool)
    for f in failures:
        if f.level == ROW:
            bad[f.rows] = True
    return bad


def row_reasons(events: pd.DataFrame, failures: list[Failure]) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Per row position: joined failed expectation names, columns and reasons ("" when none)."""
    blank = pd.Series("", index=pd.RangeIndex(len(events)), dtype=object)
    checks, columns, reasons = blank.copy(), blank.copy(), blank.copy()
    for f in failures:
        if f.level != ROW:
            continue
        values = events[f.column].iloc[f.rows]  # row-level failures name an existing column
        values = values.astype(object).where(values.notna(), None).astype(str)  # a missing value reads "None"
        values.index = checks.index[f.rows]
        _append(checks, f.rows, f.expectation, "; ")
        _append(columns, f.rows, f.column, ",")
        text = f.label + ": got " + values
        if f.bounds is not None:
            broken = f.bounds.broken(events[f.column].iloc[f.rows])
            broken.index = values.index
            text = text + ", " + broken
        _append(reasons, f.rows, text, "; ")
    return checks, columns, reasons


def assemble(events: pd.DataFrame, reasons: tuple[pd.Series, pd.Series, pd.Series], batch: list[Failure],
             batch_id: str) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """Split ``events`` into accepted rows and quarantine records, given per-row reasons (positions
    0..n-1, "" = passed) and the batch-level failures (any: every row is quarantined)."""
    checks, columns, reasons = reasons
    if batch:
        prefix = "batch failed: " + "; ".join(dict.fromkeys(f.describe() for f in batch))
        reason = prefix + ("; " + reasons).where(reasons != "", "")
        check = "; ".join(dict.fromkeys(f.expectation for f in batch))
        column = ",".join(dict.fromkeys(f.column for f in batch if f.column))
        records = quarantine_frame(events, batch_id=batch_id, check=check, column=column,
                                   reason=pd.Series(reason.to_numpy(), index=events.index))
        return events.iloc[0:0], records.loc[:, list(QUARANTINE_COLUMNS)], True
    bad = (reasons != "").to_numpy()
    if not bad.any():
        return events, quarantine_frame(events.iloc[0:0], batch_id=batch_id, check="", column=None, reason=""), False
    rows = events.iloc[bad]
    records = quarantine_frame(rows, batch_id=batch_id, check="", column=None,
                               reason=pd.Series(reasons[bad].to_numpy(), index=rows.index))
    records["check"] = checks[bad].to_numpy()
    records["column"] = columns[bad].to_numpy()
    return events.iloc[~bad], records.loc[:, list(QUARANTINE_COLUMNS)], False


def _profile_failures(frame: pd.DataFrame, checks: tuple[ProfileCheck, ...],
                      failures: list[Failure]) -> list[list[Failure]]:
    """Per profile row, the batch-level failures it stands for (in the order of ``checks``)."""
    by_field = {c.field: c for c in checks}
    out: list[list[Failure]] = [[] for _ in range(len(frame))]
    for f in failures:
        check = by_field.get(f.column)
        if f.level != ROW or check is None:  # the profile suite itself failed: every profiled batch fails
            for found in out:
                found.append(f if f.level == BATCH else Failure(**{**f.__dict__, "level": BATCH}))
            continue
        for i in f.rows:
            row = frame.iloc[int(i)]
            out[int(i)].append(Failure(expectation=check.expectation, column=check.column(row), level=BATCH,
                                        rows=np.empty(0, dtype=np.int64), count=0, detail=check.detail(row),
                                        condition=check.condition))
    order = {c.field: i for i, c in enumerate(checks)}
    rank = {c.expectation: order[c.field] for c in reversed(checks)}
    return [sorted(found, key=lambda f: rank.get(f.expectation, -1)) for found in out]


# --------------------------------------------------------------------------- entry point


def _positional(events: pd.DataFrame) -> pd.DataFrame:
    """``events`` on an unnamed ``RangeIndex`` (GX then reports row positions); no data copy."""
    clean = pd.RangeIndex(len(events))
    if isinstance(events.index, pd.RangeIndex) and events.index.equals(clean) and events.index.name is None:
        return events
    frame = events.copy(deep=False)
    frame.index = clean
    return frame


class GateSession:
    """One GX context whose suites and checkpoints are built once and reused by every group of a run.

    ``stored`` is the newest event of the clean store: timestamp bounds are relative to it or to the
    group's newest plausible event, whichever is later.
    ``context_root`` selects a file-backed context (validation results kept, Data Docs built by
    :meth:`build_docs`, results of older runs than the last ``keep_runs`` pruned); ``None`` keeps
    everything in memory. ``seconds`` adds up the time spent in GX (context set-up, validations, Data
    Docs) so callers can report the gate's share honestly.
    """

    def __init__(self, *, base_currency: str = "EUR", now: pd.Timestamp | None = None,
                 context_root: Path | None = None, keep_runs: int | None = None,
                 timestamps: TimestampBounds | None = None, stored: pd.Timestamp | None = None) -> None:
        started = time.perf_counter()
        now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
        self.now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
        self.base_currency = base_currency
        self.timestamps = timestamps or TimestampBounds()
        self.stored = stored
        """The newest event already in the clean store (a reference for the timestamp bounds), if any."""
        self.context_root = context_root
        self.keep_runs = keep_runs
        self.run_time = datetime.now(timezone.utc)
        """One run time for every validation of the session: results are pruned per session (ingest run)."""
        self.context = _context(context_root)
        self._checkpoints: dict[str, Checkpoint] = {}
        self._results: list[Any] = []
        self.seconds = time.perf_counter() - started

    def _checkpoint(self, name: str) -> Checkpoint:
        from validation.raw_suite import RAW_CHECKS

        if name not in self._checkpoints:
            expectations, result_format = {
                ROWS_SUITE: (_row_expectations, _result_format()),
                BATCHES_SUITE: (lambda: profile_expectations(BATCH_CHECKS), _result_format()),
                RAW_SUITE: (lambda: profile_expectations(RAW_CHECKS), _result_format()),
            }[name]
            self._checkpoints[name] = _suite_checkpoint(self.context, name=name, expectations=expectations(),
                                                        asset_name=name, result_format=result_format)
        return self._checkpoints[name]

    def _run(self, name: str, frame: pd.DataFrame, run_name: str,
             times: Bounds | None = None) -> tuple[list[Failure], dict]:
        from great_expectations.core.run_identifier import RunIdentifier

        started = time.perf_counter()
        try:
            result = self._checkpoint(name).run(
                batch_parameters={"dataframe": frame},
                expectation_parameters=_expectation_parameters(self.base_currency, times),
                run_id=RunIdentifier(run_name=run_name, run_time=self.run_time),  # batch/group id in Data Docs
            )
            self._results.extend(result.run_results.keys())
            return _parse_failures(result, len(frame))
        finally:
            self.seconds += time.perf_counter() - started

    def check_rows(self, events: pd.DataFrame, *, run_name: str) -> tuple[list[Failure], dict]:
        """Row-level failures of canonical events (positions 0..n-1): the pre-screen, then the GX suite.

        Columns the checks need but ``events`` lacks are left to the batch-level column-set check.
        """
        if events.empty:
            return [], {}
        failures = _prescreen(events)
        stats: dict = {"evaluated_expectations": len(PRESCREENED), "successful_expectations":
                       len(PRESCREENED) - len(failures), "unsuccessful_expectations": len(failures)}
        if all(c in events for c in GX_COLUMNS):
            times = timestamp_bounds(events["timestamp"], self.timestamps, self.now, self.stored)
            found, gx_stats = self._run(ROWS_SUITE, _gx_rows_frame(events), run_name, times)
            bounds = {**value_bounds(self.base_currency), (BETWEEN, "timestamp"): times}
            failures += [replace(f, bounds=bounds.get((f.expectation, f.column))) if f.level == ROW else f
                         for f in found]
            for key in ("evaluated_expectations", "successful_expectations", "unsuccessful_expectations"):
                stats[key] += gx_stats.get(key) or 0
        order = {key: i for i, key in enumerate(ROW_ORDER)}
        failures.sort(key=lambda f: (f.level != BATCH, order.get((f.expectation, f.column), len(order))))
        return failures, stats

    def check_profiles(self, name: str, profiles: list[dict[str, Any]], *, run_name: str) -> list[list[Failure]]:
        """Validate a profile table (``BATCHES_SUITE`` or ``RAW_SUITE``); the failures of each row."""
        from validation.raw_suite import RAW_CHECKS

        if not profiles:
            return []
        checks = BATCH_CHECKS if name == BATCHES_SUITE else RAW_CHECKS
        frame = profile_frame(profiles, checks)
        failures, _ = self._run(name, frame, run_name)
        return _profile_failures(frame, checks, failures)

    def check_raw(self, raw: pd.DataFrame, *, channel: str, cfg: ChannelConfig, batch_id: str) -> list[str]:
        """Validate one file's raw shape with the channel's checks; its batch-level failures ([] = pass)."""
        from validation.raw_suite import raw_profile

        found = self.check_profiles(RAW_SUITE, [raw_profile(raw, cfg)], run_name=batch_id)[0]
        return [f.describe() for f in found]

    def check_events(self, events: pd.DataFrame, *, batch_id: str) -> GateResult:
        """Validate one batch of canonical events; split accepted / quarantined rows."""
        frame = _positional(events)
        rows, stats = self.check_rows(frame, run_name=batch_id)
        batch = self.check_profiles(BATCHES_SUITE, [batch_profile(frame)], run_name=batch_id)[0]
        stats["evaluated_expectations"] = stats.get("evaluated_expectations", 0) + len(BATCH_CHECKS)
        stats["unsuccessful_expectations"] = stats.get("unsuccessful_expectations", 0) + len(batch)
        stats["successful_expectations"] = stats["evaluated_expectations"] - stats["unsuccessful_expectations"]
        accepted, quarantined, batch_failed = assemble(events, row_reasons(frame, rows), batch, batch_id)
        stats.update(rows=len(events), accepted=len(accepted), quarantined=len(quarantined))
        failures = batch + rows
        return GateResult(accepted=accepted, quarantined=quarantined, batch_failed=batch_failed,
                          success=not failures, failures=[f.describe() for f in failures], statistics=stats)

    def build_docs(self) -> Path | None:
        """Prune results older than the last ``keep_runs`` runs, then render Data Docs (HTML) for this
        session's validations; the site's index page, or None in memory."""
        if self.context_root is None:
            return None
        started = time.perf_counter()
        try:
            if self.keep_runs is not None:
                from validation.retention import prune_results

                prune_results(self.context_root, self.keep_runs)
            self.context.build_data_docs(resource_identifiers=self._results or None)
            return docs_index(self.context_root)
        finally:
            self.seconds += time.perf_counter() - started


def docs_index(context_root: Path) -> Path:
    """The Data Docs index page of a file-backed GX context."""
    return context_root / "uncommitted" / "data_docs" / "local_site" / "index.html"


def run_gate(
    events: pd.DataFrame,
    *,
    batch_id: str,
    base_currency: str = "EUR",
    now: pd.Timestamp | None = None,
    context_root: Path | None = None,
    timestamps: TimestampBounds | None = None,
) -> GateResult:
    """Validate one batch of canonical events with a GX checkpoint; split accepted / quarantined.

    A one-batch :class:`GateSession`: ``context_root`` selects a file-backed GX context (results
    kept, Data Docs built); ``None`` uses an in-memory one. ``now`` (default: current UTC time)
    bounds future timestamps.
    """
    session = GateSession(base_currency=base_currency, now=now, context_root=context_root, timestamps=timestamps)
    result = session.check_events(events, batch_id=batch_id)
    session.build_docs()
    return result
